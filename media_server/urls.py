"""Source URL rules: what a camera URL may be, and how it is shown without its credentials."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("rtsp", "rtsps")
MAX_URL_LENGTH = 2048


def validate_source_url(url: str) -> str:
    """Return the URL if it is an acceptable camera URL; raise ValueError saying why not."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is malformed: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError("url must start with rtsp:// or rtsps://")
    if not parts.hostname:
        raise ValueError("url must name a host")
    if port == 0:
        raise ValueError("url port must be between 1 and 65535")
    return url


def redact_url(url: str) -> str:
    """The URL with any user name and password replaced, safe for responses and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def redact_text(text: str, url: str) -> str:
    """Remove a URL's credentials from free text (FFmpeg errors quote the URL they opened)."""
    parts = urlsplit(url)
    text = text.replace(url, redact_url(url))
    if parts.password:
        text = text.replace(parts.password, "***")
    return text

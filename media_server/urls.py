"""Source URL rules: what a camera URL may be, and how it is shown without its credentials."""

from __future__ import annotations

import re
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
    return parts.scheme.lower() + url[len(parts.scheme) :]  # FFmpeg knows only "rtsp"


#: Query parameters that carry credentials on some cameras (`?user=admin&password=...`).
SECRET_PARAMS = re.compile(
    r"(?i)(^|[?&;])((?:user(?:name)?|pass(?:word|wd)?|pwd|token|auth|secret|key|api_?key|"
    r"access_token|sig(?:nature)?|credentials?)=)([^&;#]*)"
)


def _secrets(url: str) -> list[str]:
    """The secret strings in a URL: its password and any credential-like query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [m.group(3) for part in (parts.path, parts.query) for m in SECRET_PARAMS.finditer(part)]
    found = [value for value in found if value]
    if parts.password:
        found.append(parts.password)
    if parts.username:
        found.append(parts.username)
    return found


def redact_url(url: str) -> str:
    """The URL with user, password and credential-like query values replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]

    def hide(text: str) -> str:
        return SECRET_PARAMS.sub(lambda m: m.group(1) + m.group(2) + "***", text)

    return urlunsplit((parts.scheme, netloc, hide(parts.path), hide(parts.query), parts.fragment))


def redact_text(text: str, url: str) -> str:
    """Remove a URL's credentials from free text (FFmpeg errors quote the URL they opened)."""
    text = text.replace(url, redact_url(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        if len(secret) >= 3:  # a one-letter user name would shred the message
            text = text.replace(secret, "***")
    return text

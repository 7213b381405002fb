"""Camera URLs shown without their credentials: in responses, logs and error messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET_NAMES = (
    r"(?:user(?:name)?|pass(?:word|wd)?|pwd|token|auth|secret|key|api_?key|"
    r"access_token|sig(?:nature)?|credentials?)="
)
#: Query parameters that carry credentials on some cameras (`?user=admin&password=...`).
SECRET_PARAMS = re.compile(r"(?i)(^|[?&;])(" + _SECRET_NAMES + r")([^&;#]*)")
#: The same in the path, where some cameras (XMEye and its kin) put them, joined by `_`:
#: `/user=admin_password=S3cret_channel=1_stream=0.sdp`.
SECRET_PATH = re.compile(r"(?i)(^|[/?&;_])(" + _SECRET_NAMES + r")([^/&;#?_]*)")


def _secrets(url: str) -> list[str]:
    """The secret strings in a URL: its password and any credential-like query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [m.group(3) for m in SECRET_PARAMS.finditer(parts.query)]
    found += [m.group(3) for m in SECRET_PATH.finditer(parts.path)]
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

    def hide(pattern: re.Pattern[str], text: str) -> str:
        return pattern.sub(lambda m: m.group(1) + m.group(2) + "***", text)

    path, query = hide(SECRET_PATH, parts.path), hide(SECRET_PARAMS, parts.query)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_text(text: str, url: str) -> str:
    """Remove a URL's credentials from free text (FFmpeg errors quote the URL they opened)."""
    text = text.replace(url, redact_url(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        if len(secret) >= 3:  # a one-letter user name would shred the message
            text = text.replace(secret, "***")
    return text

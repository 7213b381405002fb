"""Logging set-up: every line of a request carries its request id.

The id lives in a context variable set by the request middleware, so log lines written
by tasks the request started (a viewer's peer connection, say) carry it too.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id(offered: str | None) -> str:
    """The caller's X-Request-Id when it is sane, else a fresh one."""
    if offered and _VALID_ID.match(offered):
        return offered
    return secrets.token_hex(8)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aioice", "aiortc", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

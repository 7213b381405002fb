"""Logging set-up: every line of a request carries its request id.

The id lives in a context variable set by the request middleware, so log lines written
by tasks the request started (a viewer's peer connection, say) carry it too.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from media_server.urls import SECRET_PARAMS

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


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log, minus secrets: viewer tokens travel as `?token=`."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = SECRET_PARAMS.sub(lambda m: m.group(1) + m.group(2) + "***", request.path_qs)
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s %.3fs',
            request.remote,
            request.method,
            path,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
        )


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

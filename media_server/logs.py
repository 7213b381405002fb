"""Logging set-up: every line of a request carries its request id, and its stream id.

The ids live in context variables set by the request middleware, so log lines written
by tasks the request started (a viewer's peer connection, say) carry them too; an ingest
thread's lines carry the stream the thread reads (its name is ``ingest-<id>``). Lines
are text, or one JSON object each (``log_format: json``) for log pipelines.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import threading

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

from media_server.urls import SECRET_PARAMS

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
stream_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("stream_id", default=None)
INGEST_THREAD = "ingest-"

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id(offered: str | None) -> str:
    """The caller's X-Request-Id when it is sane, else a fresh one."""
    if offered and _VALID_ID.match(offered):
        return offered
    return secrets.token_hex(8)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        stream = getattr(record, "stream_id", None) or stream_id.get()  # extra= wins
        if stream is None:
            name = threading.current_thread().name
            stream = name[len(INGEST_THREAD) :] if name.startswith(INGEST_THREAD) else None
        record.stream_id = stream
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request and stream ids."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "stream": getattr(record, "stream_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


#: A WHEP session's URL names it: the log keeps enough of the id to follow it, no more.
WHEP_SESSION = re.compile(r"(/whep/)([^/?]{6})[^/?]*")


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log, minus secrets: viewer tokens travel as `?token=`."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = SECRET_PARAMS.sub(lambda m: m.group(1) + m.group(2) + "***", request.path_qs)
        path = WHEP_SESSION.sub(lambda m: m.group(1) + m.group(2) + "…", path)
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


class _BadRequestsQuietly(logging.Filter):
    """aiohttp logs a traceback for every request it cannot parse: one line will do, and
    without the bytes the client sent (they are the attacker's to choose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "%s (unparsable request: HTTP %d)"
            record.args = (record.getMessage(), exc.code)
        return True


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.server").addFilter(_BadRequestsQuietly())
    for noisy in ("aioice", "aiortc", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

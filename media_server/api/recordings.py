"""Recordings, read back: `GET /api/v1/streams/{id}/recordings` lists the spans of time a
stream's recording covers in a range. Whoever may watch the stream may see them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiohttp import web

from media_server.api.access import require_viewer
from media_server.api.context import gateway
from media_server.api.errors import ApiError
from media_server.api.streams import get_stream
from media_server.egress import archive

routes = web.RouteTableDef()

#: A range no longer than this (seconds): what one request reads is bounded.
MAX_RANGE = 31 * 86_400
DEFAULT_RANGE = 86_400


def _instant(request: web.Request, name: str, default: float) -> float:
    """An ISO 8601 time from the query (a zone, or UTC where it names none)."""
    text = request.query.get(name)
    if text is None:
        return default
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ApiError(400, "invalid-query", f"{name} must be an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def time_range(request: web.Request) -> tuple[float, float]:
    """The query's [start, end): the last day by default, at most MAX_RANGE long."""
    end = _instant(request, "end", time.time())
    start = _instant(request, "start", end - DEFAULT_RANGE)
    if end <= start:
        raise ApiError(400, "invalid-query", "end must come after start")
    if end - start > MAX_RANGE:
        raise ApiError(400, "invalid-query", f"a range is at most {MAX_RANGE // 86_400} days")
    return start, end


@routes.get("/api/v1/streams/{stream_id}/recordings")
async def recordings(request: web.Request) -> web.Response:
    stream_id = request.match_info["stream_id"]
    require_viewer(request, stream_id)
    get_stream(request)
    start, end = time_range(request)
    gw = gateway(request)
    recorder = gw.recordings.get(stream_id)
    live = recorder.live if recorder is not None else None
    folder = gw.settings.record.directory / stream_id
    found = await asyncio.to_thread(archive.segments, folder, start, end, live)
    spans = archive.spans(found, start, end)
    body = {"spans": [{"start": iso(a), "end": iso(b)} for a, b in spans]}
    return web.json_response(body, headers={"Cache-Control": "private, no-store"})

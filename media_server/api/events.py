"""Live stream list for the console: server-sent events, so no page has to poll.

`GET /api/v1/events` answers `text/event-stream`: a `streams` event with the same body as
`GET /api/v1/streams` at once, again whenever a stream changes (state, viewers, media,
added, removed), and at least every `REFRESH` seconds for the moving figures (bitrate,
counters). A comment line every `REFRESH` seconds keeps proxies from timing it out.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from media_server.api.access import client_key, require
from media_server.api.context import gateway
from media_server.api.errors import ApiError
from media_server.api.streams import stream_list
from media_server.auth.tokens import READ

routes = web.RouteTableDef()

REFRESH = 2.0
WAKE = 0.5  # how often an idle stream looks at the drain flag


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    gw = gateway(request)
    require(request, READ)
    limits = gw.settings.limits
    client = client_key(request)
    if len(gw.event_streams) >= limits.event_streams:
        raise ApiError(503, "capacity", f"the gateway holds {limits.event_streams} event streams")
    if sum(1 for c in gw.event_streams.values() if c == client) >= limits.websockets_per_client:
        raise ApiError(429, "too-many-streams", "this client holds too many event streams")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    gw.event_streams[response] = client
    changes = gw.streams.changes
    loop = request.loop
    sent_version, sent_at = -1, 0.0
    try:
        while not gw.draining:
            version = await changes.wait(sent_version, WAKE)
            if version == sent_version and loop.time() - sent_at < REFRESH:
                continue
            body = gw.json.dumps(stream_list(gw))
            await response.write(f"event: streams\nid: {version}\ndata: {body}\n\n".encode())
            sent_version, sent_at = version, loop.time()
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    finally:
        del gw.event_streams[response]
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response

"""`GET /stats`: the numbers of /metrics as compact JSON a person reads (`watch curl`)."""

from __future__ import annotations

import time
from collections import Counter

from aiohttp import web

from media_server.api.access import require
from media_server.api.context import gateway
from media_server.api.streams import describe
from media_server.auth.tokens import READ
from media_server.procstat import rss_bytes

routes = web.RouteTableDef()

STARTED = time.time()


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    gw = gateway(request)
    require(request, READ)
    streams = []
    for stream in sorted(gw.streams.all(), key=lambda s: s.id):
        view = describe(gw, stream)
        streams.append(
            {
                "id": view.id,
                "state": str(view.state),
                "viewers": view.viewers,
                "codec": view.codec,
                "resolution": f"{view.width}x{view.height}" if view.width else None,
                "fps": round(view.fps, 1) if view.fps else None,
                "bitrate": view.bitrate,
                "media_transport": view.media_transport,
                "reconnects": view.counters.reconnects,
                "viewer_dropped": view.counters.viewer_dropped,
            }
        )
    states = Counter(str(s["state"]) for s in streams)
    body = {
        "uptime_seconds": round(time.time() - STARTED, 1),
        "process": {
            "cpu_percent": round(gw.cpu.percent(), 1),
            "cpu_seconds": round(gw.cpu.seconds(), 2),
            "rss_bytes": rss_bytes(),
            "event_loop_lag_seconds": round(gw.monitor.lag, 4),
            "gc_pause_seconds": round(gw.metrics.gc_pause_total(), 4),
        },
        "streams": {"total": len(streams), "by_state": states},
        "viewers": {"total": len(gw.sessions), "by_transport": gw.sessions.by_transport()},
        "signaling": {"websockets": len(gw.websockets), "event_streams": len(gw.event_streams)},
        "stream": streams,
    }
    return web.json_response(body, dumps=lambda v: gw.json.dumps(v))

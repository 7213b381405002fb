"""Liveness (the loop answers) and readiness (each component says whether it can serve)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from media_server.api.context import gateway
from media_server.hub.media import StreamState

routes = web.RouteTableDef()

#: Readiness fails when the event loop is this late in waking up (seconds).
MAX_LOOP_LAG = 1.0


@routes.get("/api/v1/health")
async def liveness(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/api/v1/health/ready")
async def readiness(request: web.Request) -> web.Response:
    gw = gateway(request)
    streams = gw.streams.all()
    dead = [
        s.id
        for s in streams
        if s.state not in (StreamState.IDLE, StreamState.STOPPED, StreamState.FAILED)
        and (s.worker is None or not s.worker.alive)
    ]
    components: dict[str, dict[str, Any]] = {
        "http": {"ok": gw.ready and not gw.draining, "draining": gw.draining},
        "ingest": {"ok": not dead, "streams": len(streams), "dead_workers": dead},
        "event_loop": {"ok": gw.loop_lag < MAX_LOOP_LAG, "lag_seconds": round(gw.loop_lag, 4)},
        "webrtc": {"ok": gw.sessions.accepting, "sessions": len(gw.sessions)},
    }
    ok = all(c["ok"] for c in components.values())
    return web.json_response(
        {"status": "ready" if ok else "not-ready", "components": components},
        status=200 if ok else 503,
    )

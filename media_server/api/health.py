"""Liveness (the loop is not stuck) and readiness (each component can serve)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from media_server.api.context import gateway
from media_server.model.media import StreamState

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/api/v1/health")
async def liveness(request: web.Request) -> web.Response:
    """Fails for a while after the event loop was blocked (a watchdog logs the culprit)."""
    monitor = gateway(request).monitor
    blocked = monitor.recent_block()
    if blocked:
        body = {"status": "blocked", "blocked_seconds": round(blocked, 3)}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ok"})


@routes.get("/api/v1/health/ready")
async def readiness(request: web.Request) -> web.Response:
    gw = gateway(request)
    streams = gw.streams.all()
    dead = [
        s.id
        for s in streams
        if s.state not in (StreamState.IDLE, StreamState.STOPPED)
        and (s.worker is None or not s.worker.alive)
    ]
    store_error = await gw.registry.check()
    if store_error is not None:
        log.warning("readiness: %s", store_error)
    if dead:
        log.warning("readiness: ingest of %s stopped unexpectedly", ", ".join(dead))
    lag = gw.monitor.lag
    components: dict[str, dict[str, Any]] = {
        "http": {
            "ok": gw.ready and not gw.draining,
            "starting": not gw.ready,
            "draining": gw.draining,
        },
        # Readiness needs no credentials: it says what is wrong, never where files live
        # or what the streams are called (the log has both).
        "registry": {"ok": store_error is None, "backend": gw.settings.registry.backend},
        "ingest": {"ok": not dead, "streams": len(streams), "dead_workers": len(dead)},
        "event_loop": {
            "ok": lag < gw.settings.health.ready_max_lag,
            "lag_seconds": round(lag, 4),
        },
        "webrtc": {"ok": gw.sessions.accepting, "sessions": len(gw.sessions)},
    }
    ok = all(c["ok"] for c in components.values())
    return web.json_response(
        {"status": "ready" if ok else "not-ready", "components": components},
        status=200 if ok else 503,
    )

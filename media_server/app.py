"""Build the aiohttp application and wire the parts: manager, sessions, metrics, routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import WSCloseCode, web

from media_server.api import health, pages, signaling, streams, whep
from media_server.api.context import GATEWAY, Gateway
from media_server.api.errors import error_middleware, error_response
from media_server.config import Settings
from media_server.hub.manager import StreamManager
from media_server.metrics import CONTENT_TYPE, Metrics
from media_server.webrtc.session import SessionManager

log = logging.getLogger(__name__)

LAG_INTERVAL = 0.5


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Static bearer tokens guard the stream registry (`auth.tokens`)."""
    tokens = request.app[GATEWAY].settings.auth.tokens
    if tokens and request.path.startswith("/api/v1/streams") and "/whep" not in request.path:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error_response(401, "unauthorized", "send Authorization: Bearer <token>")
        if token.strip() not in tokens:
            return error_response(401, "unauthorized", "the token is not valid")
    return await handler(request)


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _watch_loop_lag(gw: Gateway) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LAG_INTERVAL)
        gw.loop_lag = max(0.0, loop.time() - started - LAG_INTERVAL)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    if gw.settings.demo:
        gw.streams.add_demo()
    lag_task = asyncio.create_task(_watch_loop_lag(gw))
    gw.ready = True
    yield
    lag_task.cancel()
    await gw.streams.close(gw.settings.shutdown_timeout / 2)
    log.info("stopped")


async def _drain(app: web.Application) -> None:
    """First step of a stop: refuse new viewers, end signaling sockets and peers."""
    gw = app[GATEWAY]
    gw.draining = True
    gw.sessions.accepting = False
    for ws in list(gw.websockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
    try:
        await asyncio.wait_for(gw.sessions.close_all(), gw.settings.shutdown_timeout / 2)
    except TimeoutError:
        log.warning("some viewer sessions did not close in time")


def build_app(settings: Settings, loop: asyncio.AbstractEventLoop | None = None) -> web.Application:
    loop = loop or asyncio.get_event_loop()
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=settings.max_body_bytes
    )
    gw = Gateway(
        settings=settings,
        streams=StreamManager(settings, loop),
        sessions=SessionManager(settings.webrtc),
        metrics=Metrics(),
    )
    gw.metrics.watch(gw.streams.all, lambda: gw.loop_lag)
    gw.sessions.on_connected.append(lambda s: gw.metrics.sessions.labels(s.via).inc())
    app[GATEWAY] = gw
    for module in (streams, health, signaling, whep, pages):
        app.add_routes(module.routes)
    app.router.add_get("/metrics", metrics_handler)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_drain)
    return app

"""Build the aiohttp application and wire the parts; start, drain and stop them in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web

from media_server.api import (
    admin,
    cluster,
    events,
    health,
    hls,
    openapi,
    pages,
    recordings,
    signaling,
    stats,
    streams,
    whep,
)
from media_server.api.access import require
from media_server.api.context import GATEWAY, Gateway
from media_server.api.errors import error_middleware
from media_server.api.middleware import add_headers, request_context
from media_server.api.ratelimit import RateLimiter
from media_server.auth.tokens import READ, Authenticator
from media_server.cluster.node import ClusterNode, node_id
from media_server.config import Settings
from media_server.egress.muxer import Muxer, Muxers
from media_server.egress.recorder import Recordings
from media_server.engine.engine import Engine, EngineConfig
from media_server.ingest.guard import SourceGuard
from media_server.loopwatch import LoopMonitor
from media_server.metrics import CONTENT_TYPE, Metrics
from media_server.runtime.jsoncodec import json_codec
from media_server.store.redis import RedisRegistry
from media_server.store.registry import Registry
from media_server.store.sqlite import SqliteRegistry
from media_server.streams.manager import StreamManager
from media_server.webrtc.session import SessionManager

log = logging.getLogger(__name__)


async def metrics_handler(request: web.Request) -> web.Response:
    require(request, READ)
    body = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start-up before serving, and the last step of a stop."""
    gw = app[GATEWAY]
    gw.streams.restore(await gw.registry.open())  # StoreError here stops start-up
    await gw.streams.apply_config(gw.settings.streams)  # so does a conflict
    if gw.settings.demo:
        gw.streams.add_demo()
    if gw.cluster is not None:
        await gw.cluster.start()
    gw.monitor.start()
    gw.metrics.watch_gc()
    yield
    gw.metrics.unwatch_gc()
    gw.monitor.stop()
    if gw.cluster is not None:
        await gw.cluster.stop()
    await gw.streams.close(gw.settings.shutdown_timeout / 2)
    if gw.cluster is not None:
        await gw.cluster.leave()  # the cameras are closed here: others may open them now
    if gw.sessions.engine is not None:
        await gw.sessions.engine.close()
    await gw.registry.close()
    log.info("stopped")


async def _close_signaling(app: web.Application) -> None:
    """After the drain: end signaling sockets and every peer."""
    gw = app[GATEWAY]
    begin_drain(gw)
    for ws in list(gw.websockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
    hls.close_all(gw)
    gw.recordings.close()  # what is queued for the disk is written first
    gw.muxers.close()
    try:
        await asyncio.wait_for(gw.sessions.close_all(), gw.settings.shutdown_timeout / 2)
    except TimeoutError:
        log.warning("some viewer sessions did not close in time")


def begin_drain(gw: Gateway) -> None:
    """Stop taking viewers: readiness turns 503 and new offers are refused."""
    gw.draining = True
    gw.sessions.accepting = False


async def drain(gw: Gateway, interrupted: asyncio.Event) -> None:
    """Let existing viewers run on until they leave, `drain_timeout` passes, or a second
    signal arrives; the caller then stops everything."""
    begin_drain(gw)
    timeout = gw.settings.drain_timeout
    if len(gw.sessions) and timeout > 0:
        log.info("draining: %d viewer(s), up to %.0f s", len(gw.sessions), timeout)
        waiter = asyncio.ensure_future(interrupted.wait())
        deadline = asyncio.get_running_loop().time() + timeout
        while len(gw.sessions) and not waiter.done():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait([waiter], timeout=min(0.1, left))
        waiter.cancel()


def _engine(settings: Settings, streams: StreamManager) -> Engine | None:
    """The fan-out engine, when configuration gives it to any viewer."""
    if settings.webrtc.media_path != "engine" and not settings.canary.gives("engine"):
        return None

    e = settings.engine
    config = EngineConfig(
        send_path=e.send_path,
        lanes=e.lanes,
        gso=e.gso,
        lane_depth=e.lane_depth,
        lane_max_lag=e.lane_max_lag,
        history=e.history,
        start=e.start,
        gop_units=settings.hub.gop_cache_units,
        gop_bytes=settings.hub.gop_cache_bytes,
    )
    return Engine(config, streams.get)


def _registry(settings: Settings) -> Registry:
    if settings.registry.backend == "redis":
        r = settings.registry
        return RedisRegistry(r.redis_url, r.redis_prefix, node_id(settings))
    return SqliteRegistry(settings.registry.path)


def build_app(settings: Settings, loop: asyncio.AbstractEventLoop | None = None) -> web.Application:
    loop = loop or asyncio.get_event_loop()
    app = web.Application(
        middlewares=[request_context, error_middleware], client_max_size=settings.max_body_bytes
    )
    registry = _registry(settings)
    guard = SourceGuard.from_settings(settings)
    limits = settings.limits
    manager = StreamManager(settings, loop, registry, guard)
    engine = _engine(settings, manager)
    muxers = Muxers(
        lambda stream, transcoded: Muxer(
            stream, settings.hub.gop_cache_units, settings.hub.gop_cache_bytes, transcoded
        )
    )
    gw = Gateway(
        settings=settings,
        auth=Authenticator(settings.auth),
        guard=guard,
        registry=registry,
        streams=manager,
        sessions=SessionManager(settings, guard, engine),
        metrics=Metrics(),
        monitor=LoopMonitor(settings.health.block_threshold, settings.health.window),
        registrations=RateLimiter(
            "registrations", limits.registrations_per_minute, limits.registrations_burst
        ),
        offers=RateLimiter("offers", limits.offers_per_minute, limits.offers_burst),
        json=json_codec(settings.runtime.json_codec),
        muxers=muxers,
        recordings=Recordings(settings.record, muxers),
    )
    if isinstance(registry, RedisRegistry):
        gw.cluster = ClusterNode(
            settings, registry, manager, lambda: len(gw.sessions), gw.cpu.percent
        )
    # A stream removed (here or on another node): its viewers here end.
    manager.on_removed.append(
        lambda stream: gw.background.spawn(gw.sessions.close_stream(stream.id))
    )
    # A stream that records starts its recorder with it, and ends it with it.
    manager.on_added.append(gw.recordings.on_added)
    manager.on_removed.append(gw.recordings.on_removed)
    # The metric's labels keep the names dashboards know (transports.* before the rename).
    chosen: dict[str, str] = {
        "loop": settings.runtime.loop,
        "json_codec": settings.runtime.json_codec,
        "gc": settings.runtime.gc,
        "transcode": settings.transcode.encode,
        "passthrough": settings.webrtc.media_path,
        "read_timeout": settings.ingest.stall_check,
    }
    if engine is not None:
        chosen["engine"] = engine.path.name  # the send path it runs, after any fallback
    gw.metrics.transports(chosen)
    gw.metrics.watch(
        gw.streams.all,
        lambda: gw.monitor.lag,
        lambda ids: {**gw.sessions.egress(ids), **gw.muxers.egress(ids)},
    )
    gw.metrics.watch_recordings(gw.recordings)
    if engine is not None:
        gw.metrics.watch_engine(engine)
    if gw.cluster is not None:
        gw.metrics.watch_cluster(gw.cluster)
    gw.sessions.on_first_media.append(
        lambda s, seconds: gw.metrics.first_media_seconds.labels(s.transport).observe(seconds)
    )
    gw.sessions.on_connected.append(lambda s: gw.metrics.sessions.labels(s.via, s.transport).inc())
    app[GATEWAY] = gw
    for module in (
        streams,
        events,
        stats,
        health,
        signaling,
        whep,
        hls,
        recordings,
        pages,
        openapi,
        admin,
        cluster,
    ):
        app.add_routes(module.routes)
    app.router.add_get("/metrics", metrics_handler)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_close_signaling)
    app.on_response_prepare.append(add_headers)
    return app

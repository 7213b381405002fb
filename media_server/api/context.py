"""Typed keys for what the app holds, so handlers read parts without globals."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from media_server.api.ratelimit import RateLimiter
from media_server.auth.tokens import Authenticator
from media_server.cluster.node import ClusterNode
from media_server.config import Settings
from media_server.hub.manager import StreamManager
from media_server.ingest.guard import SourceGuard
from media_server.loopwatch import LoopMonitor
from media_server.metrics import Metrics
from media_server.procstat import CpuMeter
from media_server.store.registry import Registry
from media_server.transports.jsoncodec import JsonCodec
from media_server.webrtc.session import SessionManager


@dataclass
class Gateway:
    settings: Settings
    auth: Authenticator
    guard: SourceGuard
    registry: Registry
    streams: StreamManager
    sessions: SessionManager
    metrics: Metrics
    monitor: LoopMonitor
    registrations: RateLimiter
    offers: RateLimiter
    json: JsonCodec
    cpu: CpuMeter = field(default_factory=CpuMeter)
    cluster: ClusterNode | None = None
    #: Tasks the gateway started and must keep a reference to until they end.
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    ready: bool = False
    draining: bool = False
    websockets: set[web.WebSocketResponse] = field(default_factory=set)
    socket_clients: Counter[str] = field(default_factory=Counter)
    #: Open server-sent event streams and the client each belongs to.
    event_streams: dict[web.StreamResponse, str] = field(default_factory=dict)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background, referenced until it ends."""
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


GATEWAY = web.AppKey("gateway", Gateway)


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]

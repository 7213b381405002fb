"""Typed keys for what the app holds, so handlers read parts without globals."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from media_server.api.ratelimit import RateLimiter
from media_server.auth.tokens import Authenticator
from media_server.cluster.node import ClusterNode
from media_server.config import Settings
from media_server.egress.muxer import Muxers
from media_server.egress.recorder import Recordings
from media_server.ingest.guard import SourceGuard
from media_server.loopwatch import LoopMonitor
from media_server.metrics import Metrics
from media_server.procstat import CpuMeter
from media_server.runtime.jsoncodec import JsonCodec
from media_server.store.registry import Registry
from media_server.streams.manager import StreamManager
from media_server.tasks import Tasks
from media_server.webrtc.session import SessionManager

if TYPE_CHECKING:
    from media_server.api.hls import Outlet


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
    muxers: Muxers
    recordings: Recordings
    #: Each stream's LL-HLS while players poll it (api/hls.py).
    hls: dict[tuple[str, bool], Outlet] = field(default_factory=dict)
    cpu: CpuMeter = field(default_factory=CpuMeter)
    cluster: ClusterNode | None = None
    #: Work started in the background (stream removals closing viewers, reloads).
    background: Tasks = field(default_factory=Tasks)
    ready: bool = False
    draining: bool = False
    websockets: set[web.WebSocketResponse] = field(default_factory=set)
    socket_clients: Counter[str] = field(default_factory=Counter)
    #: Open server-sent event streams and the client each belongs to.
    event_streams: dict[web.StreamResponse, str] = field(default_factory=dict)


GATEWAY = web.AppKey("gateway", Gateway)


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]

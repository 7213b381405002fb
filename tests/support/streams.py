"""A real Stream for unit tests of what consumes one: on demand, its camera (a loopback
port nobody listens on) is never opened unless a holding consumer attaches."""

from __future__ import annotations

import asyncio
import functools

from media_server.config import load_settings
from media_server.ingest import PortPairs, SourceContext, SourceGuard, source_for
from media_server.model.registration import Registration
from media_server.streams.stream import Stream


@functools.cache
def _idle_loop() -> asyncio.AbstractEventLoop:
    """The loop a stream built outside one is given (these tests never run it)."""
    return asyncio.new_event_loop()


def bare_stream(stream_id: str = "s", loop: asyncio.AbstractEventLoop | None = None) -> Stream:
    settings = load_settings(demo=False)
    registration = Registration(id=stream_id, url="rtsp://127.0.0.1:9/x", on_demand=True)
    guard = SourceGuard.from_settings(settings)
    ports = PortPairs(*settings.ingest.udp_port_range)
    source = source_for(registration, SourceContext(settings, guard, ports, None))
    return Stream(registration, settings, loop or _idle_loop(), source)

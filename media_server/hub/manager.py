"""StreamManager: the one owner of registered streams. The control plane only asks it."""

from __future__ import annotations

import asyncio
import logging
import threading

from media_server.config import Settings
from media_server.hub.stream import SourceFactory, Stream, StreamSpec
from media_server.ingest.demo import DemoSource
from media_server.ingest.rtsp import RtspSource
from media_server.ingest.source import Source

log = logging.getLogger(__name__)

DEMO_ID = "demo"
DEMO_URL = "demo://test-pattern"


class StreamConflict(Exception):
    """The id is registered with a different body."""


class StreamManager:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self._settings = settings
        self._loop = loop
        self._streams: dict[str, Stream] = {}

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def all(self) -> list[Stream]:
        return list(self._streams.values())

    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def find_same(self, spec: StreamSpec) -> Stream | None:
        """An existing stream registered with the same body (for requests without an id)."""
        for stream in self._streams.values():
            s = stream.spec
            same = (s.url, s.transport, s.mode, s.on_demand)
            if same == (spec.url, spec.transport, spec.mode, spec.on_demand):
                return stream
        return None

    def create(self, spec: StreamSpec) -> tuple[Stream, bool]:
        """Register and start a stream; (stream, False) when the same one exists already."""
        existing = self._streams.get(spec.id)
        if existing is not None:
            if existing.spec != spec:
                raise StreamConflict(f"stream '{spec.id}' exists with a different configuration")
            return existing, False
        stream = Stream(spec, self._settings, self._loop, self._source_factory(spec))
        self._streams[spec.id] = stream
        if not spec.on_demand:
            stream.start()
        log.info("stream %s registered (%s, %s)", spec.id, spec.public()["url"], spec.mode)
        return stream, True

    def add_demo(self) -> Stream:
        return self.create(StreamSpec(id=DEMO_ID, url=DEMO_URL, mode="passthrough"))[0]

    async def delete(self, stream_id: str) -> bool:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return False
        await stream.stop(self._settings.ingest.read_timeout + 1)
        log.info("stream %s removed", stream_id)
        return True

    async def close(self, timeout: float) -> None:
        """Stop every stream's ingest concurrently, within `timeout` seconds."""
        streams = list(self._streams.values())
        await asyncio.gather(*(s.stop(timeout) for s in streams), return_exceptions=True)

    def _source_factory(self, spec: StreamSpec) -> SourceFactory:
        ingest = self._settings.ingest
        demo = self._settings.demo_source
        if spec.url == DEMO_URL:

            def make_demo(stop: threading.Event) -> Source:
                return DemoSource(demo.width, demo.height, demo.fps, demo.bitrate, stop)

            return make_demo

        def make_rtsp(stop: threading.Event) -> Source:
            return RtspSource(spec.url, spec.transport, ingest.open_timeout, ingest.read_timeout)

        return make_rtsp

"""StreamManager: the one owner of registered streams. The control plane only asks it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from media_server.config import ConfigError, Settings
from media_server.ingest.demo import DemoSource
from media_server.ingest.guard import SourceGuard
from media_server.ingest.rtsp import RtspSource
from media_server.ingest.source import Source
from media_server.store.registry import Registry
from media_server.streams.changes import Changes
from media_server.streams.stream import RelayFactory, SourceFactory, Stream, StreamSpec
from media_server.tasks import Tasks

log = logging.getLogger(__name__)

DEMO_ID = "demo"
DEMO_URL = "demo://test-pattern"


class StreamConflict(Exception):
    """The id is registered with a different body."""


class ManagedByConfig(Exception):
    """The stream comes from the config file: it changes there, not through the API."""


class ConfigConflict(ConfigError):
    """The config file declares a stream that was registered through the API."""


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: int


def config_specs(settings: Settings) -> list[StreamSpec]:
    """The streams the config file declares."""
    return [
        StreamSpec(s.id, s.url, s.transport, s.mode, s.on_demand, s.reconnect, s.audio)
        for s in settings.streams
    ]


class CapacityError(Exception):
    """A configured limit is reached; the request is refused, nothing else is affected."""


class StreamManager:
    """Registered streams, kept in step with the persistent registry.

    A registration is stored before it is acknowledged, and create/delete are serialised
    so concurrent requests for one id cannot interleave between the store and the map.
    """

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        registry: Registry,
        guard: SourceGuard,
    ) -> None:
        self._settings = settings
        self._guard = guard
        self._loop = loop
        self._registry = registry
        self._streams: dict[str, Stream] = {}
        self._lock = asyncio.Lock()
        self._stopping = Tasks()  # ingest threads being let go of
        self.changes = Changes()
        #: Told of each stream removed (here or, in a cluster, on another node).
        self.on_removed: list[Callable[[Stream], object]] = []
        #: In a cluster: what feeds a stream on a node that does not ingest it.
        self.relay: RelayFactory | None = None
        self._from_config: set[str] = set()

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def all(self) -> list[Stream]:
        return list(self._streams.values())

    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def find_same(self, spec: StreamSpec) -> Stream | None:
        """An existing stream registered with the same body (for requests without an id)."""
        for stream in self._streams.values():
            if replace(stream.spec, id=spec.id) == spec:
                return stream
        return None

    async def create(self, spec: StreamSpec) -> tuple[Stream, bool]:
        """Store, register and start a stream; (stream, False) when it exists already."""
        async with self._lock:
            existing = self._streams.get(spec.id)
            if existing is not None:
                if existing.spec != spec:
                    raise StreamConflict(
                        f"stream '{spec.id}' exists with a different configuration"
                    )
                return existing, False
            limit = self._settings.limits.streams
            if len(self._streams) >= limit:
                raise CapacityError(f"the gateway serves at most {limit} streams")
            stored = await self._registry.add(spec)
            if stored is not None:  # another node registered it first
                if stored != spec:
                    raise StreamConflict(
                        f"stream '{spec.id}' exists with a different configuration"
                    )
                spec = stored
            return self._add(spec), True

    def restore(self, specs: list[StreamSpec]) -> None:
        """Bring back what the registry holds (at start-up, before serving)."""
        for spec in specs:
            self._add(spec)
        if specs:
            log.info("restored %d stream(s) from the registry", len(specs))

    def add_demo(self) -> Stream | None:
        """The built-in demo stream; never stored, so it follows the `demo` setting."""
        if DEMO_ID in self._streams:
            log.warning("a registered stream is called '%s'; the demo stays off", DEMO_ID)
            return None
        return self._add(StreamSpec(id=DEMO_ID, url=DEMO_URL, mode="passthrough"))

    def _add(self, spec: StreamSpec, managed_by: str = "api") -> Stream:
        # The demo and the config file's cameras are each node's own: never relayed.
        relay = self.relay if managed_by == "api" and spec.url != DEMO_URL else None
        source = self._source_factory(spec)
        stream = Stream(spec, self._settings, self._loop, source, self.changes, relay)
        stream.managed_by = "demo" if spec.url == DEMO_URL else managed_by
        self._streams[spec.id] = stream
        self.changes.notify()
        if not stream.on_demand:
            stream.start()
        url = spec.public()["url"]
        log.info(
            "stream %s registered (%s, %s)", spec.id, url, spec.mode, extra={"stream_id": spec.id}
        )
        return stream

    async def sync(self) -> None:
        """Match what another node changed in the shared registry: start what is new,
        stop what is gone, restart what differs; the rest is not touched. Read under the
        lock, so no change made here meanwhile is undone by an older reading."""
        async with self._lock:
            stored = await self._registry.load()
            wanted = {spec.id: spec for spec in stored}
            for stream in list(self._streams.values()):
                if stream.managed_by != "api":
                    continue  # this node's own (the demo, the config file's): not shared
                if wanted.get(stream.id) != stream.spec:
                    self._remove(stream)
            for spec in stored:
                if spec.id not in self._streams:
                    self._add(spec)

    async def apply_config(self, specs: list[StreamSpec]) -> ConfigChanges:
        """Make the config file's streams those given: start the new, stop the gone,
        restart the changed; leave the unchanged and their viewers alone. A stream the
        API registered under one of the ids refuses the whole change."""
        async with self._lock:
            wanted = {spec.id: spec for spec in specs}
            for stream_id in wanted:
                taken = self._streams.get(stream_id)
                if taken is not None and stream_id not in self._from_config:
                    raise ConfigConflict(
                        f"the config file declares stream '{stream_id}', which is already "
                        f"registered ({taken.managed_by}); remove one of them"
                    )
            current = {i: self._streams[i].spec for i in self._from_config}
            removed = sorted(i for i in current if i not in wanted)
            changed = sorted(i for i in current if i in wanted and wanted[i] != current[i])
            added = sorted(i for i in wanted if i not in current)
            for stream_id in removed + changed:
                self._from_config.discard(stream_id)
                self._remove(self._streams[stream_id])
            for stream_id in changed + added:
                self._add(wanted[stream_id], "config")
                self._from_config.add(stream_id)
            unchanged = len(wanted) - len(changed) - len(added)
            return ConfigChanges(added, removed, changed, unchanged)

    async def delete(self, stream_id: str) -> bool:
        async with self._lock:
            stream = self._streams.get(stream_id)
            if stream is None:
                return False
            if stream_id in self._from_config:
                raise ManagedByConfig(
                    f"stream '{stream_id}' comes from the config file: remove it there "
                    "and reload (SIGHUP)"
                )
            if stream.spec.url != DEMO_URL:
                await self._registry.delete(stream_id)
            self._remove(stream)
        return True

    def _remove(self, stream: Stream) -> None:
        del self._streams[stream.id]
        self.changes.notify()
        # Viewers end now; the ingest thread may take a read timeout to let go of a hung
        # camera, which the caller need not wait for.
        self._stopping.spawn(stream.stop(self._settings.ingest.read_timeout + 1))
        for listener in self.on_removed:
            listener(stream)
        log.info("stream %s removed", stream.id, extra={"stream_id": stream.id})

    async def close(self, timeout: float) -> None:
        """Stop every stream's ingest concurrently, within `timeout` seconds."""
        stops = [asyncio.ensure_future(s.stop(timeout)) for s in self._streams.values()]
        pending = stops + self._stopping.pending()
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def _source_factory(self, spec: StreamSpec) -> SourceFactory:
        ingest = self._settings.ingest
        demo = self._settings.demo_source
        if spec.url == DEMO_URL:

            def make_demo(stop: threading.Event) -> Source:
                return DemoSource(demo.width, demo.height, demo.fps, demo.bitrate, stop)

            return make_demo

        def make_rtsp(stop: threading.Event) -> Source:
            return RtspSource(
                spec.url,
                spec.transport,
                ingest.open_timeout,
                ingest.read_timeout,
                self._guard,
                socket_timeout=self._settings.transports.read_timeout == "socket",
                audio=spec.audio,
            )

        return make_rtsp

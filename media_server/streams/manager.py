"""StreamManager: the one owner of registered streams. The control plane only asks it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from media_server.config import ConfigError, Settings
from media_server.ingest import (
    PortPairs,
    Reactor,
    SourceContext,
    SourceGuard,
    demo_registration,
    source_for,
)
from media_server.model.registration import Registration
from media_server.store.registry import Registry
from media_server.streams.changes import Changes
from media_server.streams.stream import RelayFactory, Stream
from media_server.streams.view import ManagedBy
from media_server.tasks import Tasks
from media_server.urls import redact_url

log = logging.getLogger(__name__)


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
        ingest = settings.ingest
        self._sources = SourceContext(
            settings,
            guard,
            PortPairs(*ingest.udp_port_range),
            Reactor(ingest.thread_nice) if ingest.native_reader == "loop" else None,
        )
        self._loop = loop
        self._registry = registry
        self._streams: dict[str, Stream] = {}
        self._lock = asyncio.Lock()
        self._stopping = Tasks()  # ingest threads being let go of
        self.changes = Changes()
        #: Told of each stream added, and removed (here or, in a cluster, on another node).
        self.on_added: list[Callable[[Stream], object]] = []
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

    def find_same(self, registration: Registration) -> Stream | None:
        """An existing stream registered with the same body (for requests without an id)."""
        for stream in self._streams.values():
            if stream.registration.same_camera(registration):
                return stream
        return None

    async def create(self, registration: Registration) -> tuple[Stream, bool]:
        """Store, register and start a stream; (stream, False) when it exists already."""
        async with self._lock:
            existing = self._streams.get(registration.id)
            if existing is not None:
                if existing.registration != registration:
                    raise StreamConflict(
                        f"stream '{registration.id}' exists with a different configuration"
                    )
                return existing, False
            limit = self._settings.limits.streams
            if len(self._streams) >= limit:
                raise CapacityError(f"the gateway serves at most {limit} streams")
            stored = await self._registry.add(registration)
            if stored is not None:  # another node registered it first
                if stored != registration:
                    raise StreamConflict(
                        f"stream '{registration.id}' exists with a different configuration"
                    )
                registration = stored
            return self._add(registration), True

    def restore(self, registrations: list[Registration]) -> None:
        """Bring back what the registry holds (at start-up, before serving)."""
        for registration in registrations:
            self._add(registration)
        if registrations:
            log.info("restored %d stream(s) from the registry", len(registrations))

    def add_demo(self) -> Stream | None:
        """The built-in demo stream; never stored, so it follows the `demo` setting."""
        demo = demo_registration()
        if demo.id in self._streams:
            log.warning("a registered stream is called '%s'; the demo stays off", demo.id)
            return None
        return self._add(demo, "demo")

    def _add(self, registration: Registration, managed_by: ManagedBy = "api") -> Stream:
        # The demo and the config file's cameras are each node's own: never relayed.
        relay = self.relay if managed_by == "api" else None
        source = source_for(registration, self._sources)
        stream = Stream(registration, self._settings, self._loop, source, self.changes, relay)
        stream.managed_by = managed_by
        self._streams[registration.id] = stream
        self.changes.notify()
        if not stream.on_demand:
            stream.start()
        for listener in self.on_added:
            listener(stream)
        log.info(
            "stream %s registered (%s, %s)",
            registration.id,
            redact_url(registration.url),
            registration.mode,
            extra={"stream_id": registration.id},
        )
        return stream

    async def sync(self) -> None:
        """Match what another node changed in the shared registry: start what is new,
        stop what is gone, restart what differs; the rest is not touched. Read under the
        lock, so no change made here meanwhile is undone by an older reading."""
        async with self._lock:
            stored = await self._registry.load()
            wanted = {registration.id: registration for registration in stored}
            for stream in list(self._streams.values()):
                if stream.managed_by != "api":
                    continue  # this node's own (the demo, the config file's): not shared
                if wanted.get(stream.id) != stream.registration:
                    self._remove(stream)
            for registration in stored:
                if registration.id not in self._streams:
                    self._add(registration)

    async def apply_config(self, registrations: list[Registration]) -> ConfigChanges:
        """Make the config file's streams those given: start the new, stop the gone,
        restart the changed; leave the unchanged and their viewers alone. A stream the
        API registered under one of the ids refuses the whole change."""
        async with self._lock:
            wanted = {registration.id: registration for registration in registrations}
            for stream_id in wanted:
                taken = self._streams.get(stream_id)
                if taken is not None and stream_id not in self._from_config:
                    raise ConfigConflict(
                        f"the config file declares stream '{stream_id}', which is already "
                        f"registered ({taken.managed_by}); remove one of them"
                    )
            current = {i: self._streams[i].registration for i in self._from_config}
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
            if stream.managed_by == "api":
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

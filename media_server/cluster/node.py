"""This gateway as a node of a cluster: membership, ingest leases, shared state, relays.

Every heartbeat the node renews its leases (and stops ingesting any it could not renew
in time), announces itself, reads who ingests what, and takes the unowned streams that
fall to it: each goes to the live node with the lowest share of its capacity in use, a
choice every node computes alike from the same records, so they rarely race (and when
they do, the lease decides). Registrations and stream states travel on one Redis
channel; after any break in it the node re-reads everything, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError
from redis.exceptions import RedisError

from media_server.cluster.edge import Origin, RelayIngest
from media_server.cluster.leases import Leases
from media_server.cluster.membership import Membership, NodeInfo
from media_server.cluster.placement import claims
from media_server.config import Settings, is_loopback_host
from media_server.store.redis import RedisRegistry, event, reply
from media_server.store.registry import StoreError
from media_server.streams.manager import StreamManager
from media_server.streams.stream import Ingest, Stream
from media_server.streams.view import STATUS_FIELDS, StreamStatus, StreamView
from media_server.tasks import Tasks

log = logging.getLogger(__name__)

#: Status fields whose change is announced at once; the moving figures (fps, bitrate)
#: ride along with those, or with the periodic refresh.
ANNOUNCE = tuple(f for f in STATUS_FIELDS if f not in ("fps", "bitrate"))
#: Seconds between refreshes of a stream's published status.
STATUS_REFRESH = 5.0
#: Ticks a stream may stay unowned before any node, not only its chosen one, takes it.
UNOWNED_TICKS = 3
#: Seconds between checks of the leases' deadlines.
FENCE_CHECK = 0.1
#: Seconds between full re-reads of the registry, in case the channel missed something.
RESYNC = 30.0


# KEYS: streams hash, status hash, events channel. ARGV: id, status, announcement. Only
# for a stream still registered: a removal deletes its status, which must not come back.
_STATUS = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('PUBLISH', KEYS[3], ARGV[3])
end
"""


def node_id(settings: Settings) -> str:
    return settings.cluster.node_id or f"{socket.gethostname()}-{settings.port}"


def advertise_url(settings: Settings) -> str:
    if settings.cluster.advertise_url:
        return settings.cluster.advertise_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def secret_in_clear(url: str) -> bool:
    """Whether other nodes reaching `url` would send the cluster secret over the
    network unencrypted (plain HTTP to an address beyond loopback)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback_host(parts.hostname or "")


def warn_if_in_clear(url: str) -> None:
    if secret_in_clear(url):
        log.warning(
            "cluster: other nodes reach this one at %s: the cluster secret and the relayed "
            "media cross the network in clear; advertise an https:// URL (tls.*) or keep "
            "the nodes on a network of their own",
            url,
        )


@dataclass(slots=True)
class Held:
    token: int
    deadline: float  # monotonic: past it without a renewal, this node stops ingesting


class ClusterNode:
    def __init__(
        self,
        settings: Settings,
        registry: RedisRegistry,
        streams: StreamManager,
        viewers: Callable[[], int],
        cpu_percent: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._config = settings.cluster
        self._registry = registry
        self._streams = streams
        self._viewers = viewers
        self._cpu = cpu_percent
        self.id = registry.node_id
        self.url = advertise_url(settings)
        warn_if_in_clear(self.url)
        self.public_url = (self._config.public_url or self.url).rstrip("/")
        self.started_at = time.time()
        self._redis = registry.redis
        self._keys = registry.keys
        self.membership = Membership(self._redis, self._keys, self._config.node_ttl)
        self.leases = Leases(self._redis, self._keys, self.id, self._config.lease_ttl)
        self._status = self._redis.register_script(_STATUS)
        self.nodes: list[NodeInfo] = []
        self._held: dict[str, Held] = {}
        self._holders: dict[str, tuple[str, int]] = {}
        self._unowned: dict[str, int] = {}
        self._published: dict[str, tuple[tuple[Any, ...], float]] = {}
        #: The status each stream's origin published, for streams another node ingests.
        self._remote: dict[str, dict[str, Any]] = {}
        self._loops = Tasks()  # heartbeat, fence, channel, re-reads, announcements
        self._changing = Tasks()  # ingest switches, off the heartbeat
        self._dirty = asyncio.Event()  # the registry changed: read it again
        self._session: aiohttp.ClientSession | None = None
        self._failing = False
        self.leases_lost = 0
        streams.relay = self.relay_for
        streams.on_removed.append(self._forget)

    # -- what the rest of the gateway asks ---------------------------------------------
    def relay_for(self, stream: Stream) -> Ingest:
        assert self._session is not None, "the cluster node is not started"
        secret = self._config.secret or ""
        timeout = self._settings.ingest.read_timeout
        return RelayIngest(stream.id, stream, self.origin, self._session, secret, timeout)

    def origin(self, stream_id: str) -> Origin | None:
        """The node that ingests a stream and how to reach it, as of the last heartbeat."""
        holder = self._holders.get(stream_id)
        if holder is None or holder[0] == self.id:
            return None
        for node in self.nodes:
            if node.id == holder[0]:
                return Origin(node.id, node.url, holder[1])
        return None

    def lease_of(self, stream_id: str) -> int | None:
        """The fence token of this node's lease of a stream (None: not held here)."""
        held = self._held.get(stream_id)
        return held.token if held is not None else None

    def origin_of(self, stream_id: str) -> str | None:
        """The node that ingests a stream, as of the last heartbeat (None: none yet)."""
        holder = self._holders.get(stream_id)
        return holder[0] if holder is not None else None

    def view(self, stream: Stream) -> StreamView:
        """The stream as the API shows it on this node: its own view, with which node
        ingests it and the relays from here; a stream not relayed here now is shown as
        its origin published it."""
        view = stream.view()
        if not stream.clustered:
            return view  # this node's own (the demo, the config file's)
        update: dict[str, Any] = {
            "ingest_node": self.origin_of(stream.id),
            "relays": stream.consumers["relay"],
        }
        remote = self._remote.get(stream.id)
        if stream.worker is None and not stream.ingest_here and remote is not None:
            update |= remote
        return view.model_copy(update=update)

    def public_origin(self, stream: Stream) -> str | None:
        """Where a viewer of `stream` is sent in redirect mode (None: serve it here)."""
        if self._config.edge != "redirect" or stream.ingest_here or stream.id not in self._holders:
            return None
        holder = self._holders[stream.id][0]
        return next((n.public_url for n in self.nodes if n.id == holder), None)

    def authentic(self, authorization: str | None) -> bool:
        """Whether a request on the internal link carries the cluster's secret."""
        expected = f"Bearer {self._config.secret}".encode()
        return authorization is not None and hmac.compare_digest(authorization.encode(), expected)

    @property
    def redis_up(self) -> bool:
        return not self._failing

    @property
    def ingests(self) -> int:
        return len(self._held)

    def relays(self) -> int:
        return sum(s.consumers["relay"] for s in self._streams.all())

    def record(self) -> NodeInfo:
        return NodeInfo(
            id=self.id,
            url=self.url,
            public_url=self.public_url,
            capacity=self._settings.limits.streams,
            ingests=self.ingests,
            viewers=self._viewers(),
            cpu_percent=round(self._cpu(), 1),
            started_at=self.started_at,
        )

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        # A link to a node that vanished from the network fails within the read timeout,
        # not the kernel's minutes of TCP retries.
        reach = self._settings.ingest.read_timeout
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=reach, sock_connect=reach)
        )
        for loop in (self._beat, self._guard, self._watch, self._resync, self._publish):
            self._loops.spawn(loop())

    async def stop(self) -> None:
        """Stop taking part: no more heartbeats, claims or announcements. The leases stay
        held (and valid for a while) until `leave`, once ingest here has stopped."""
        await self._loops.cancel()

    async def leave(self) -> None:
        """Give the leases up at once, so the other nodes need not wait them out."""
        with contextlib.suppress(RedisError, OSError):
            for stream_id, held in list(self._held.items()):
                await self.leases.release(stream_id, held.token)
            await self.membership.leave(self.id)
        self._held.clear()
        if self._session is not None:
            await self._session.close()

    # -- heartbeat: renew, announce, claim; and the fence, on its own -------------------
    async def _guard(self) -> None:
        """Stop ingesting any stream whose lease went unrenewed too long, checked often
        and apart from the heartbeat, which a slow Redis may hold up."""
        while True:
            self._fence(time.monotonic())
            await asyncio.sleep(FENCE_CHECK)

    async def _beat(self) -> None:
        period = self._config.heartbeat
        while True:
            began = time.monotonic()
            try:
                await self._tick(began)
                if self._failing:
                    log.info("cluster: redis reachable again")
                self._failing = False
            except (RedisError, OSError) as exc:
                if not self._failing:
                    log.warning("cluster: redis unreachable (%s); retrying", exc)
                self._failing = True
            except Exception:  # a bug must not end the heartbeat: the leases depend on it
                log.exception("cluster: heartbeat failed")
            await asyncio.sleep(max(0.0, period - (time.monotonic() - began)))

    def _fence(self, now: float) -> None:
        for stream_id, held in list(self._held.items()):
            if now > held.deadline:
                self._lose(stream_id, "not renewed in time")

    def _deadline(self, asked: float) -> float:
        """When a lease asked for (or renewed) at `asked` stops this node's ingest: a
        heartbeat before it can expire for the other nodes."""
        return asked + self._config.lease_ttl - self._config.heartbeat

    async def _tick(self, began: float) -> None:
        held = {stream_id: h.token for stream_id, h in self._held.items()}
        lost = await self.leases.renew(held)
        for stream_id, token in held.items():
            current = self._held.get(stream_id)
            if current is None or current.token != token:
                continue
            if stream_id in lost:
                self._lose(stream_id, "lost")
            else:
                current.deadline = self._deadline(began)
        await self.membership.beat(self.record())
        self.nodes = await self.membership.nodes()
        ids = [s.id for s in self._streams.all() if s.clustered]
        before = {i: holder[0] for i, holder in self._holders.items()}
        self._holders = await self.leases.holders(ids)
        if before != {i: holder[0] for i, holder in self._holders.items()}:
            self._streams.changes.notify()  # an ingest node moved: the views changed
        await self._claim(ids)

    async def _claim(self, ids: list[str]) -> None:
        unowned = sorted(i for i in ids if i not in self._holders)
        self._unowned = {i: self._unowned.get(i, 0) + 1 for i in unowned}
        if not unowned:
            return
        fresh = [
            n for n in self.nodes if n.age is not None and n.age < 2.5 * self._config.heartbeat
        ]
        capacities = {n.id: n.capacity for n in fresh} | {self.id: self._settings.limits.streams}
        holders = [holder for holder, _ in self._holders.values()]
        for stream_id in claims(self.id, capacities, holders, self._unowned, UNOWNED_TICKS):
            asked = time.monotonic()  # the lease runs from before Redis granted it
            token = await self.leases.acquire(stream_id)
            if token is None:
                continue
            stream = self._streams.get(stream_id)
            if stream is None:  # removed meanwhile
                await self.leases.release(stream_id, token)
                continue
            self._held[stream_id] = Held(token, self._deadline(asked))
            self._holders[stream_id] = (self.id, token)
            log.info(
                "cluster: this node ingests stream %s (lease %d)",
                stream_id,
                token,
                extra={"stream_id": stream_id},
            )
            self._changing.spawn(stream.set_ingest_here(True))

    def _lose(self, stream_id: str, why: str) -> None:
        log.warning(
            "cluster: lease of stream %s %s; ingest stops here",
            stream_id,
            why,
            extra={"stream_id": stream_id},
        )
        self.leases_lost += 1
        self._held.pop(stream_id, None)
        self._holders.pop(stream_id, None)
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._changing.spawn(stream.set_ingest_here(False))

    def _forget(self, stream: Stream) -> None:
        """A stream was removed: give its lease back."""
        held = self._held.pop(stream.id, None)
        self._published.pop(stream.id, None)
        self._remote.pop(stream.id, None)
        if held is not None:
            self._changing.spawn(self._release(stream.id, held.token))

    async def _release(self, stream_id: str, token: int) -> None:
        with contextlib.suppress(RedisError):
            await self.leases.release(stream_id, token)

    # -- shared state: registrations and stream status ---------------------------------
    async def _watch(self) -> None:
        """Follow the cluster's channel; re-read everything after any break in it."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._keys.events)
                    self._dirty.set()  # after subscribing: nothing falls in between
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            await self._on_event(message["data"])
            except (RedisError, OSError) as exc:
                log.debug("cluster: channel interrupted (%s)", exc)
            except Exception:
                log.exception("cluster: following the channel failed")
            await asyncio.sleep(self._config.heartbeat)

    async def _resync(self) -> None:
        """Re-read registrations and statuses when told to (changes come in bursts: one
        reading serves them all) and every `RESYNC` seconds anyway."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), RESYNC)
            self._dirty.clear()
            try:
                await self._streams.sync()
                statuses: dict[str, str] = await reply(self._redis.hgetall(self._keys.status))
                for stream_id, text in statuses.items():
                    self._take_status(stream_id, text)
                self._streams.changes.notify()
            except (RedisError, OSError) as exc:
                log.debug("cluster: re-reading the registry failed (%s)", exc)
                self._dirty.set()
                await asyncio.sleep(self._config.heartbeat)
            except StoreError as exc:  # a registration this node cannot read: keep ours
                log.warning("cluster: %s; streams here stay as they are", exc)
                await asyncio.sleep(RESYNC)
            except Exception:
                log.exception("cluster: re-reading the registry failed")
                await asyncio.sleep(self._config.heartbeat)

    async def _on_event(self, data: str) -> None:
        try:
            note = json.loads(data)
            kind, stream_id, node = note["kind"], str(note["id"]), note["node"]
        except (ValueError, KeyError, TypeError):
            return
        if node == self.id:
            return
        if kind == "stream":
            self._dirty.set()
        elif kind == "status":
            text = await reply(self._redis.hget(self._keys.status, stream_id))
            if text is not None:
                self._take_status(stream_id, text)
                self._streams.changes.notify()

    def _take_status(self, stream_id: str, text: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or not stream.clustered or stream.ingest_here:
            return
        with contextlib.suppress(ValidationError):
            self._remote[stream_id] = StreamStatus.model_validate_json(text).model_dump()

    async def _publish(self) -> None:
        """Announce the status of the streams this node ingests when it changes."""
        seen = -1
        while True:
            seen = await self._streams.changes.wait(seen, 1.0)
            try:
                await self._announce(time.monotonic())
            except (RedisError, OSError):
                pass  # the heartbeat reports it; try again at the next change
            except Exception:
                log.exception("cluster: announcing stream status failed")
            await asyncio.sleep(0.2)  # at most five rounds a second, however busy

    async def _announce(self, now: float) -> None:
        for stream_id in list(self._held):
            stream = self._streams.get(stream_id)
            if stream is None or not stream.ingest_here:
                continue
            status = stream.status()
            key = tuple(status[f] for f in ANNOUNCE)
            last = self._published.get(stream_id)
            if last is not None and last[0] == key and now - last[1] < STATUS_REFRESH:
                continue
            note = event("status", "changed", stream_id, self.id)
            await self._status(
                keys=[self._keys.streams, self._keys.status, self._keys.events],
                args=[stream_id, json.dumps(status), note],
            )
            self._published[stream_id] = (key, now)

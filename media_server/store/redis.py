"""Redis registry: the streams of a cluster, shared by every node.

One hash holds every registration. A write and its announcement on the cluster's channel
are one Lua script, so a node that sees the change on the channel can read it back. The
registration is acknowledged only after Redis has it: with `appendonly yes` and
`appendfsync always` (README, deploy/) that means on disk, as with SQLite.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from media_server.model.registration import Registration
from media_server.store.registry import StoreError, decode, encode
from media_server.urls import redact_url

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a Redis command may take before the store counts as unavailable.
COMMAND_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Keys:
    """Every key and channel a cluster uses, under its prefix."""

    prefix: str

    @property
    def streams(self) -> str:
        return f"{self.prefix}streams"

    @property
    def status(self) -> str:
        return f"{self.prefix}status"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}node:*"

    def lease(self, stream_id: str) -> str:
        return f"{self.prefix}lease:{stream_id}"

    def fence(self, stream_id: str) -> str:
        return f"{self.prefix}fence:{stream_id}"


def event(kind: str, op: str, stream_id: str, node: str) -> str:
    return json.dumps({"kind": kind, "op": op, "id": stream_id, "node": node})


async def reply(command: Awaitable[T] | T) -> T:
    """Await a command: redis-py types them for its blocking and asyncio clients at once."""
    return await cast(Awaitable[T], command)


def connect(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        health_check_interval=5,  # a half-open connection (the channel's above all) is found
        decode_responses=True,
    )


# KEYS: streams hash, events channel. ARGV: id, registration, announcement.
_ADD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return false
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS: streams hash, status hash, events channel. ARGV: id, announcement.
_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('PUBLISH', KEYS[3], ARGV[2])
  return 1
end
return 0
"""


class RedisRegistry:
    def __init__(self, url: str, prefix: str, node_id: str) -> None:
        self.keys = Keys(prefix)
        self.node_id = node_id
        self._url = url
        self.redis = connect(url)
        self._add = self.redis.register_script(_ADD)
        self._delete = self.redis.register_script(_DELETE)

    @property
    def location(self) -> str:
        return redact_url(self._url)

    def _error(self, exc: Exception) -> StoreError:
        return StoreError(f"registry redis {self.location}: {exc}")

    async def open(self) -> list[Registration]:
        try:
            await reply(self.redis.ping())
        except RedisError as exc:
            raise StoreError(f"registry redis {self.location} is unreachable: {exc}") from None
        await self._check_persistence()
        return await self.load()

    async def _check_persistence(self) -> None:
        """Warn when Redis would lose acknowledged registrations in a restart."""
        try:
            config: dict[str, Any] = await self.redis.config_get("append*")
        except ResponseError:  # CONFIG renamed away, as managed services do
            return
        except RedisError as exc:
            raise self._error(exc) from None
        if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
            log.warning(
                "redis %s: appendonly=%s appendfsync=%s; a Redis restart may lose "
                "acknowledged registrations (set appendonly yes, appendfsync always)",
                self.location,
                config.get("appendonly"),
                config.get("appendfsync"),
            )

    async def load(self) -> list[Registration]:
        try:
            rows: dict[str, str] = await reply(self.redis.hgetall(self.keys.streams))
        except RedisError as exc:
            raise self._error(exc) from None
        return [decode(rows[key]) for key in sorted(rows)]

    async def add(self, registration: Registration) -> Registration | None:
        note = event("stream", "added", registration.id, self.node_id)
        try:
            stored = await self._add(
                keys=[self.keys.streams, self.keys.events],
                args=[registration.id, encode(registration), note],
            )
        except RedisError as exc:
            raise self._error(exc) from None
        return decode(stored) if stored else None

    async def delete(self, stream_id: str) -> bool:
        note = event("stream", "deleted", stream_id, self.node_id)
        try:
            removed = await self._delete(
                keys=[self.keys.streams, self.keys.status, self.keys.events],
                args=[stream_id, note],
            )
        except RedisError as exc:
            raise self._error(exc) from None
        return bool(removed)

    async def check(self) -> str | None:
        try:
            await reply(self.redis.ping())
        except RedisError as exc:
            return str(self._error(exc))
        return None

    async def close(self) -> None:
        await self.redis.aclose()

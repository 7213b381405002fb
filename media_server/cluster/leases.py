"""One ingest per camera: a lease per stream, fenced by a token that only grows.

Taking a lease increments the stream's fence counter; the lease holds "node token" and
expires unless renewed. A holder renews all its leases in one script per heartbeat, and
stops ingesting on its own once `lease_ttl - heartbeat` seconds pass without a renewal
Redis confirmed: by then it cannot be sure it still holds the lease, and the lease is
still a heartbeat away from expiring for anyone else. Edges ask the origin for the
token they were told of, so a node whose lease moved on refuses to relay.
"""

from __future__ import annotations

from redis.asyncio import Redis

from media_server.store.redis import Keys

# KEYS: lease, fence counter. ARGV: node id, ttl ms. The new token, or nil if held.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
"""

# KEYS: leases. ARGV: ttl ms, then the value each should hold. 1 per lease renewed, else 0.
_RENEW = """
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
"""

# KEYS: lease. ARGV: the value it should hold.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    def __init__(self, redis: Redis, keys: Keys, node_id: str, ttl: float) -> None:
        self._redis = redis
        self._keys = keys
        self._node = node_id
        self._ttl_ms = int(ttl * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def _value(self, token: int) -> str:
        return f"{self._node} {token}"

    async def acquire(self, stream_id: str) -> int | None:
        """This node's new fence token for the stream, or None when another holds it."""
        keys = [self._keys.lease(stream_id), self._keys.fence(stream_id)]
        token = await self._acquire(keys=keys, args=[self._node, self._ttl_ms])
        return int(token) if token is not None else None

    async def renew(self, held: dict[str, int]) -> set[str]:
        """Renew every lease held (stream id -> token); the ids whose lease is lost."""
        if not held:
            return set()
        ids = list(held)
        replies = await self._renew(
            keys=[self._keys.lease(i) for i in ids],
            args=[self._ttl_ms, *(self._value(held[i]) for i in ids)],
        )
        return {i for i, ok in zip(ids, replies, strict=True) if not ok}

    async def release(self, stream_id: str, token: int) -> None:
        await self._release(keys=[self._keys.lease(stream_id)], args=[self._value(token)])

    async def holders(self, stream_ids: list[str]) -> dict[str, tuple[str, int]]:
        """Who holds each stream's lease: stream id -> (node id, token), held ones only."""
        if not stream_ids:
            return {}
        values = await self._redis.mget([self._keys.lease(i) for i in stream_ids])
        found = {}
        for stream_id, value in zip(stream_ids, values, strict=True):
            if value:
                node, _, token = str(value).rpartition(" ")
                if node and token.isdigit():
                    found[stream_id] = (node, int(token))
        return found

"""Which nodes are in the cluster: each announces itself in a key that expires.

A node writes its record every heartbeat with a time to live of `node_ttl`, so a node
that dies leaves the list within `node_ttl` seconds. Freshness is judged by the key's
remaining time to live on the Redis server, so the nodes' clocks need not agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from media_server.store.redis import Keys


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    url: str  # where the other nodes reach it
    public_url: str  # where viewers are redirected to reach it
    capacity: int  # streams it may ingest
    ingests: int  # streams it ingests now
    viewers: int
    cpu_percent: float
    started_at: float
    #: Seconds since its last heartbeat, as Redis sees it (None: not read back yet).
    age: float | None = None

    def to_json(self) -> str:
        record = asdict(self)
        del record["age"]
        return json.dumps(record)

    @classmethod
    def from_json(cls, text: str, age: float | None) -> NodeInfo:
        data: dict[str, Any] = json.loads(text)
        return cls(
            id=str(data["id"]),
            url=str(data["url"]),
            public_url=str(data["public_url"]),
            capacity=int(data["capacity"]),
            ingests=int(data["ingests"]),
            viewers=int(data["viewers"]),
            cpu_percent=float(data["cpu_percent"]),
            started_at=float(data["started_at"]),
            age=age,
        )


class Membership:
    def __init__(self, redis: Redis, keys: Keys, ttl: float) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = int(ttl * 1000)

    async def beat(self, me: NodeInfo) -> None:
        await self._redis.set(self._keys.node(me.id), me.to_json(), px=self._ttl_ms)

    async def leave(self, node_id: str) -> None:
        await self._redis.delete(self._keys.node(node_id))

    async def nodes(self) -> list[NodeInfo]:
        """Every listed node, sorted by id, with the age of its last heartbeat."""
        names = [name async for name in self._redis.scan_iter(match=self._keys.nodes, count=100)]
        if not names:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
                pipe.pttl(name)
            replies = await pipe.execute()
        found = []
        for i in range(len(names)):
            text, pttl = replies[2 * i], replies[2 * i + 1]
            if text is None or pttl < 0:
                continue  # expired between the scan and the read
            try:
                found.append(NodeInfo.from_json(text, (self._ttl_ms - pttl) / 1000))
            except (ValueError, KeyError, TypeError):
                continue  # not a record this version wrote
        return sorted(found, key=lambda n: n.id)

"""Gateway processes as nodes of one cluster on a real Redis, for tests.

Each node is a real ``python -m media_server`` on its own port; they share a Redis
server and a key prefix. Nodes are stopped by PID (or killed with SIGKILL, as a crash).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Iterator
from typing import Any

from tests.support.gateway import FAST, GENEROUS, Gateway, run_gateway, run_gateway_on
from tests.support.redis_server import RedisServer

SECRET = "cluster-test-secret-0123"
_prefixes = itertools.count()


class Cluster:
    def __init__(self, redis: RedisServer, stack: contextlib.ExitStack, **settings: str) -> None:
        self.redis = redis
        self.prefix = f"cluster{os.getpid()}-{next(_prefixes)}:"
        self.nodes: dict[str, Gateway] = {}
        self._stack = stack
        self._settings = settings

    def env(self, node_id: str, **extra: str) -> dict[str, str]:
        return {
            **GENEROUS,
            **FAST,
            "MEDIA_SERVER_REGISTRY__BACKEND": "redis",
            "MEDIA_SERVER_REGISTRY__REDIS_URL": self.redis.url,
            "MEDIA_SERVER_REGISTRY__REDIS_PREFIX": self.prefix,
            "MEDIA_SERVER_CLUSTER__SECRET": SECRET,
            "MEDIA_SERVER_CLUSTER__NODE_ID": node_id,
            **self._settings,
            **extra,
        }

    def start(self, node_id: str, port: int | None = None, **settings: str) -> Gateway:
        """Start a node; `settings` (MEDIA_SERVER_* variables) are this node's own."""
        env = self.env(node_id, **settings)
        run: Any = (
            run_gateway_on(port, "--no-demo", env=env)
            if port
            else run_gateway("--no-demo", env=env)
        )
        self.nodes[node_id] = self._stack.enter_context(run)
        return self.nodes[node_id]

    def kill(self, node_id: str) -> int:
        """SIGKILL, as a crash or the OOM killer would; returns the dead node's port."""
        node = self.nodes.pop(node_id)
        os.kill(node.pid, signal.SIGKILL)
        node.proc.wait(10)
        return node.port

    def url(self, node_id: str) -> str:
        return self.nodes[node_id].base_url


@contextlib.contextmanager
def run_cluster(redis: RedisServer, *node_ids: str, **settings: str) -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        cluster = Cluster(redis, stack, **settings)
        for node_id in node_ids:
            cluster.start(node_id)
        yield cluster

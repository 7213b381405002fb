"""Token buckets: per client for registrations and offers, per socket for messages.

A client past its rate gets 429 with Retry-After (or a WebSocket error message); the
table of clients is bounded, forgetting the least recently seen first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from media_server.api.errors import ApiError
from media_server.tokenbucket import TokenBucket


class RateLimiter:
    def __init__(
        self,
        name: str,
        per_minute: float,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._rate = per_minute / 60
        self._burst = burst
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, client: str) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self._rate, self._burst, self._clock)
            if len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket.take()

    def check(self, client: str) -> None:
        """Raise 429 with Retry-After when `client` is over its rate."""
        wait = self.take(client)
        if wait:
            raise ApiError(
                429,
                "rate-limited",
                f"too many {self.name}; retry in {math.ceil(wait)} s",
                {"Retry-After": str(math.ceil(wait))},
            )

"""Reconnect timing: the delay strategies and the circuit breaker over them.

A camera that keeps failing is marked `failed` (the breaker opens) but never given up
on: it is probed at the slow `probe_interval` until it answers, then goes live again.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

from media_server.model.registration import ReconnectPolicy


class Backoff:
    def __init__(
        self,
        policy: ReconnectPolicy,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._rng = rng or random.Random()
        self._clock = clock
        self._failures: deque[float] = deque()
        self.attempts = 0  # consecutive failures since the last success
        self.open = False

    def delay(self, attempt: int) -> float:
        """The strategy's delay before retry number `attempt` (1-based), capped at `max`."""
        p = self.policy
        if p.strategy == "fixed":
            return p.initial
        if p.strategy == "linear":
            return min(p.max, p.initial * attempt)
        ceiling = min(p.max, p.initial * 2.0 ** min(attempt - 1, 63))
        if p.strategy == "exponential":
            return ceiling
        # Jitter spreads the retries of many cameras behind one failed switch.
        return self._rng.uniform(ceiling / 2, ceiling)

    def failure(self) -> float:
        """Record a failed attempt; return how long to wait before the next one."""
        now = self._clock()
        self.attempts += 1
        self._failures.append(now)
        window = self.policy.breaker_window
        while self._failures and (
            now - self._failures[0] > window or len(self._failures) > self.policy.breaker_failures
        ):
            self._failures.popleft()
        if len(self._failures) >= self.policy.breaker_failures:
            self.open = True
        if self.open:
            return self.policy.probe_interval
        return self.delay(self.attempts)

    def trip(self) -> None:
        """Open the breaker at once: the source failed in a way retrying soon cannot fix."""
        self.open = True

    def success(self) -> None:
        self.attempts = 0
        self._failures.clear()
        self.open = False

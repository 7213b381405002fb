"""Delays between reconnect attempts: exponential with full jitter, capped."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self._initial = initial
        self._maximum = max(initial, maximum)
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; grows 2x per failure, jittered to spread the herd."""
        ceiling = min(self._maximum, self._initial * (2**self.attempts))
        self.attempts += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0

"""A clock tests move by hand, for the pure-logic tests of time-driven code."""

from __future__ import annotations


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

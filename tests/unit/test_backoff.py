"""Reconnect strategies and the circuit breaker (pure logic, fake clock)."""

from __future__ import annotations

import random

import pytest

from media_server.ingest.backoff import Backoff
from media_server.model.registration import ReconnectPolicy
from tests.support.clock import FakeClock


def delays(strategy: str, n: int) -> list[float]:
    policy = ReconnectPolicy.model_validate(
        {"strategy": strategy, "initial": 1, "max": 5, "breaker_failures": 1000}
    )
    backoff = Backoff(policy, random.Random(1))
    return [backoff.failure() for _ in range(n)]


def test_strategies() -> None:
    assert delays("fixed", 4) == [1, 1, 1, 1]
    assert delays("linear", 7) == [1, 2, 3, 4, 5, 5, 5]
    assert delays("exponential", 5) == [1, 2, 4, 5, 5]
    jittered = delays("exponential_jitter", 6)
    ceilings = [1, 2, 4, 5, 5, 5]
    assert all(c / 2 <= d <= c for d, c in zip(jittered, ceilings, strict=True))
    assert len(set(jittered)) > 1


def test_breaker_opens_after_n_failures_in_window_and_probes_slowly() -> None:
    clock = FakeClock()
    policy = ReconnectPolicy(
        strategy="fixed", initial=1, breaker_failures=3, breaker_window=10, probe_interval=30
    )
    backoff = Backoff(policy, clock=clock)
    assert backoff.failure() == 1 and not backoff.open
    clock.now += 20  # outside the window: the first failure no longer counts
    assert backoff.failure() == 1
    clock.now += 1
    assert backoff.failure() == 1 and not backoff.open
    clock.now += 1
    assert backoff.failure() == 30 and backoff.open
    clock.now += 30
    assert backoff.failure() == 30 and backoff.open  # still probing at the slow rate
    backoff.success()
    assert not backoff.open and backoff.attempts == 0
    assert backoff.failure() == 1


def test_trip_opens_at_once() -> None:
    backoff = Backoff(ReconnectPolicy(probe_interval=7))
    backoff.trip()
    assert backoff.failure() == 7


@pytest.mark.parametrize("field", ["initial", "max", "probe_interval"])
def test_policy_rejects_non_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ReconnectPolicy(**{field: 0})

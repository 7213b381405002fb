"""Token buckets (pure logic, fake clock)."""

from __future__ import annotations

import pytest

from media_server.api.errors import ApiError
from media_server.api.ratelimit import RateLimiter
from media_server.tokenbucket import TokenBucket
from tests.support.clock import FakeClock


def test_bucket_allows_burst_then_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0
    clock.now += 100
    assert [bucket.take() for _ in range(4)][:3] == [0, 0, 0]  # refills only up to the burst


def test_limiter_is_per_client_and_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter("offers", per_minute=60, burst=1, max_clients=2, clock=clock)
    limiter.check("a")
    with pytest.raises(ApiError) as refused:
        limiter.check("a")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    limiter.check("b")  # another client has its own bucket
    limiter.check("c")  # evicts the least recently seen ("a")
    limiter.check("a")  # so "a" starts afresh

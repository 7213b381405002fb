"""The output clock stays monotonic whatever the camera's timestamps do."""

from __future__ import annotations

from itertools import pairwise

from media_server.ingest.timeline import Timeline
from tests.support.clock import FakeClock

TB = 1 / 90_000


def test_follows_source_spacing() -> None:
    clock = FakeClock()
    tl = Timeline(clock=clock)
    first = tl.map(1_000_000, TB)
    clock.now += 1 / 30
    assert tl.map(1_003_000, TB) - first == 3000


def test_camera_reset_keeps_output_moving_forward() -> None:
    clock = FakeClock()
    tl = Timeline(clock=clock)
    outs = []
    for i in range(30):
        outs.append(tl.map(5_000_000 + i * 3000, TB))
        clock.now += 1 / 30
    for i in range(30):  # the camera restarts its clock at zero
        outs.append(tl.map(i * 3000, TB))
        clock.now += 1 / 30
    assert all(b > a for a, b in pairwise(outs))
    assert tl.resyncs == 1


def test_restart_and_missing_pts() -> None:
    clock = FakeClock()
    tl = Timeline(clock=clock)
    a = tl.map(None, TB)
    b = tl.map(None, TB)
    assert b > a
    clock.now += 0.5
    tl.restart()
    c = tl.map(42, TB)  # after a reconnect: anchored to the wall clock, not to 42
    assert c >= b + 0.5 * 90_000 - 1


def test_small_backward_steps_are_kept_for_bframes() -> None:
    clock = FakeClock()
    tl = Timeline(clock=clock)
    a = tl.map(9000, TB)
    b = tl.map(3000, TB)
    assert a - b == 6000 and tl.resyncs == 0

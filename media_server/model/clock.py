"""The gateway's one media clock: every stream's timestamps count 90 kHz ticks from EPOCH.

A unit's timestamp stands for the moment `EPOCH + pts * time_base` on the monotonic
clock: when it would have arrived had its source no delay (ingest/timeline.py keeps it
so). Sender reports to viewers map timestamps to those moments, not to when a packet
happened to leave, so a stream's audio and video, sent by different senders after
different holds, sync in the receiver exactly. Where the camera says when it captured
a unit (its own sender reports), a stream's `CaptureClock` maps to that instead: the
camera's clock, against which any receiver can measure the latency end to end.
"""

from __future__ import annotations

import time
from fractions import Fraction

#: The moment timestamp 0 stands for, the same for every stream of the process.
EPOCH = time.monotonic()
#: Seconds from 1900 (NTP's era) to 1970 (Unix time's).
NTP_EPOCH = 2_208_988_800


def ntp_now() -> int:
    """Now as a 64-bit NTP timestamp (RFC 3550 4)."""
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return ((seconds + NTP_EPOCH) << 32) | ((nanos << 32) // 1_000_000_000)


def moment(pts: int, time_base: Fraction | float) -> float:
    """The monotonic moment a timestamp stands for."""
    return EPOCH + float(pts * time_base)


def ntp_at(when: float) -> int:
    """A monotonic moment as a 64-bit NTP timestamp (by today's wall clock)."""
    return ntp_now() + round((when - time.monotonic()) * (1 << 32))


def ticks_now(rate: int) -> int:
    """The timestamp, in ticks of `rate`, that stands for now."""
    return round((time.monotonic() - EPOCH) * rate)


class CaptureClock:
    """A stream's timestamps on its camera's clock, anchored by the last unit that came
    with a capture time; on the gateway's own (`ntp_at(moment(...))`) without one."""

    __slots__ = ("_anchor",)

    def __init__(self) -> None:
        #: The last unit with a capture time: (pts, time base, NTP seconds). Kept as it
        #: came: `follow` runs for every unit, `at` only for a sender report.
        self._anchor: tuple[int, Fraction, float] | None = None

    def follow(self, pts: int, time_base: Fraction, capture: float | None) -> None:
        """A unit left for viewers: `capture` is its camera's NTP time in seconds, if known."""
        if capture is not None:
            self._anchor = (pts, time_base, capture)

    def forget(self) -> None:
        """The source went away: what comes next may have no capture times, or others."""
        self._anchor = None

    def at(self, pts: int, time_base: Fraction | float) -> float | None:
        """The camera's time (NTP seconds) of timestamp `pts`; None without a capture time."""
        anchor = self._anchor
        if anchor is None:
            return None
        at, base, capture = anchor
        return capture + float(pts * time_base) - float(at * base)

    def ntp(self, pts: int, time_base: Fraction | float) -> int:
        """The 64-bit NTP timestamp a sender report gives for timestamp `pts`."""
        seconds = self.at(pts, time_base)
        if seconds is None:
            return ntp_at(moment(pts, time_base))
        return round(seconds * (1 << 32))

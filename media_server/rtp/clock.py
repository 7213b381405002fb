"""A camera's RTP clocks: 32-bit timestamps unwrapped, and placed on the camera's wall
clock by its RTCP sender reports (RFC 3550 6.4.1), so tracks with unrelated timestamp
origins (video at 90 kHz, audio at its sample rate) can be put side by side.

A camera's timestamps start anywhere and wrap every 13 hours at 90 kHz (27 at 44.1 kHz):
unwrapped, they only grow, so a wrap is not taken for a B-frame or a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Half the 32-bit range: a step back smaller than this is reordering, not a wrap.
_HALF = 1 << 31


class Unwrapper:
    """32-bit RTP timestamps to a count that does not wrap (steps back are allowed, as
    B-frames and reordered packets make them)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._cycles = 0

    def unwrap(self, timestamp: int) -> int:
        last = self._last
        if last is not None:
            if timestamp < last and last - timestamp > _HALF:
                self._cycles += 1 << 32  # wrapped forwards
            elif timestamp > last and timestamp - last > _HALF:
                return timestamp + self._cycles - (1 << 32)  # a late one from before a wrap
        self._last = timestamp
        return timestamp + self._cycles


@dataclass(frozen=True, slots=True)
class SenderReport:
    """What one RTCP SR says: this RTP timestamp of `ssrc` stood for this NTP time."""

    ssrc: int
    ntp: int  # 64-bit NTP timestamp: seconds since 1900 in the high 32 bits
    rtp: int

    @property
    def seconds(self) -> float:
        return self.ntp / (1 << 32)


class TrackClock:
    """One track's timestamps: unwrapped, and in NTP seconds once a report has come."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.unwrapper = Unwrapper()
        self._report: tuple[float, int] | None = None  # (NTP seconds, unwrapped RTP)

    def unwrap(self, timestamp: int) -> int:
        return self.unwrapper.unwrap(timestamp)

    def report(self, report: SenderReport) -> None:
        self._report = (report.seconds, self.unwrapper.unwrap(report.rtp))

    @property
    def reported(self) -> bool:
        return self._report is not None

    def wall(self, unwrapped: int) -> float | None:
        """The camera's NTP time (seconds) of an unwrapped timestamp; None before any SR."""
        if self._report is None:
            return None
        seconds, rtp = self._report
        return seconds + (unwrapped - rtp) / self.rate

    def at(self, wall: float) -> int | None:
        """The unwrapped timestamp standing for camera time `wall`; None before any SR."""
        if self._report is None:
            return None
        seconds, rtp = self._report
        return rtp + round((wall - seconds) * self.rate)

"""Map a source's timestamps onto one monotonic 90 kHz output clock.

Cameras reset their clocks on reconnect, jump when a shared RTSP pipeline restarts, and
sometimes send no timestamp at all. Viewers must see timestamps that keep moving forward
at the source's pace, so the output follows the source's spacing and re-anchors to the
wall clock whenever the source drifts away from it by more than `max_drift`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from media_server.model.clock import EPOCH
from media_server.model.media import CLOCK_RATE


class Timeline:
    def __init__(
        self,
        max_drift: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # On the monotonic clock, timestamps count from the media clock's EPOCH, as every
        # sender report to viewers assumes (model/clock.py); a test's clock from its start.
        self._clock = clock or time.monotonic
        self._origin = EPOCH if clock is None else clock()
        self._max_drift = int(max_drift * CLOCK_RATE)
        self._offset: int | None = None
        self._last: int | None = None
        self.resyncs = 0

    def _now(self) -> int:
        return int((self._clock() - self._origin) * CLOCK_RATE)

    def map(self, pts: int | None, time_base: float) -> int:
        """Output pts (90 kHz) for a source pts given in `time_base` seconds per tick."""
        now = self._now()
        if pts is None:
            out = now if self._last is None else max(now, self._last + 1)
            self._last = out
            return out
        src = int(pts * time_base * CLOCK_RATE)
        if self._offset is None or abs(src + self._offset - now) > self._max_drift:
            if self._offset is not None:
                self.resyncs += 1
            base = now if self._last is None else max(now, self._last + 1)
            self._offset = base - src
        out = src + self._offset
        # B-frames legitimately go backwards a little; only the decode order must not stall.
        self._last = out if self._last is None else max(self._last, out)
        return out

    def follow(self, pts: int | None, time_base: float) -> int | None:
        """Output pts (90 kHz) for another track of the same source (audio), on the offset
        the video set: both keep the source's relation. None until video has set it."""
        if pts is None or self._offset is None:
            return None
        return int(pts * time_base * CLOCK_RATE) + self._offset

    def restart(self) -> None:
        """The source reconnected: its next timestamp has no relation to the last one."""
        self._offset = None

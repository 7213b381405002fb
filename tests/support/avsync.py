"""Lip sync as a browser sees it: RTP timestamps placed on the sender's clock by RTCP.

A browser plays audio and video in step by mapping each stream's RTP timestamps to wall
clock time through that stream's RTCP sender reports (NTP time <-> RTP time). This does
the same for an aiortc viewer of the `/av-sync` mount, whose video flashes white at each
whole second and whose audio beeps from that same instant: the sync error is the beep's
mapped time minus the flash's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc.rtp import RtcpSrPacket

#: aiortc receiver internals: the mapper that rebases frame timestamps to start at 0.
MAPPER = "_RTCRtpReceiver__timestamp_mapper"
RATES = {"video": 90_000, "audio": 48_000}


@dataclass
class Track:
    kind: str
    receiver: Any
    reports: list[tuple[float, int]] = field(default_factory=list)  # (NTP seconds, RTP)

    def rtp(self, pts: int) -> int | None:
        origin = getattr(getattr(self.receiver, MAPPER), "_origin", None)
        return None if origin is None else (pts + origin) & 0xFFFFFFFF

    def wall(self, rtp: int) -> float | None:
        """The sender's wall clock time (NTP seconds) of an RTP timestamp."""
        if not self.reports:
            return None
        ntp, base = self.reports[-1]
        delta = (rtp - base) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        return ntp + delta / RATES[self.kind]


@dataclass
class SyncMeter:
    """Fed with decoded frames by the viewer; says how far each beep is from its flash."""

    tracks: dict[str, Track] = field(default_factory=dict)
    flashes: list[float] = field(default_factory=list)  # NTP seconds
    beeps: list[float] = field(default_factory=list)
    _dark: bool = True
    _quiet: bool = True

    def watch(self, kind: str, receiver: Any) -> None:
        track = self.tracks[kind] = Track(kind, receiver)
        handle = receiver._handle_rtcp_packet

        async def hooked(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                ntp = packet.sender_info.ntp_timestamp / (1 << 32)
                track.reports.append((ntp, packet.sender_info.rtp_timestamp))
            await handle(packet)

        receiver._handle_rtcp_packet = hooked

    def _wall(self, kind: str, pts: int | None, offset: int = 0) -> float | None:
        track = self.tracks.get(kind)
        rtp = track.rtp(pts + offset) if track is not None and pts is not None else None
        return None if rtp is None or track is None else track.wall(rtp)

    def video(self, frame: Any) -> None:
        bright = float(frame.to_ndarray(format="gray").mean()) > 128
        if bright and self._dark:
            at = self._wall("video", frame.pts)
            if at is not None:
                self.flashes.append(at)
        self._dark = not bright

    def audio(self, frame: Any, samples: np.ndarray[Any, Any]) -> None:
        loud = np.abs(samples) > 0.1
        if loud.any() and self._quiet:
            at = self._wall("audio", frame.pts, int(loud.argmax()))
            if at is not None:
                self.beeps.append(at)
        self._quiet = not loud[-len(loud) // 4 :].any()

    def reset(self) -> None:
        self.flashes.clear()
        self.beeps.clear()

    def offsets(self) -> list[float]:
        """Beep minus flash, in seconds, for each flash with a beep within half a second."""
        out = []
        for flash in self.flashes:
            near = [beep - flash for beep in self.beeps if abs(beep - flash) < 0.5]
            if near:
                out.append(min(near, key=abs))
        return out

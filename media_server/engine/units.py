"""Access units packetized once per stream, and the bounded history NACKs are answered from."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from media_server.aiortc_internals import packetize_h264
from media_server.model.media import AccessUnit
from media_server.rtp.packetizer import packetize_h265


@dataclass(frozen=True, slots=True)
class Packetized:
    """One access unit as RTP payloads (FU-A/STAP-A); `first` is the stream-wide index of
    its first packet, so a viewer's sequence number maps back to a payload."""

    payloads: tuple[bytes, ...]
    timestamp: int  # 90 kHz, the stream's timeline (each viewer adds its own offset)
    first: int
    keyframe: bool

    @property
    def end(self) -> int:
        return self.first + len(self.payloads)


class Packetizer:
    """Splits Annex-B access units into RTP payloads exactly as aiortc's sender would
    (H.264; H.265 as the gateway teaches aiortc to), numbering packets across the
    stream's whole life."""

    def __init__(self) -> None:
        self._next = 0

    def packetize(self, unit: AccessUnit, hevc: bool = False) -> Packetized:
        payloads = packetize_h265(unit.data) if hevc else packetize_h264(unit.data)
        packed = Packetized(tuple(payloads), unit.pts & 0xFFFFFFFF, self._next, unit.keyframe)
        self._next = packed.end
        return packed


class History:
    """The last `capacity` packets of a stream, by index: what a NACK can still be
    answered with. Older packets are gone (the viewer waits for a keyframe instead)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._units: deque[Packetized] = deque()
        self._packets = 0

    def add(self, unit: Packetized) -> None:
        self._units.append(unit)
        self._packets += len(unit.payloads)
        while self._packets > self._capacity and len(self._units) > 1:
            self._packets -= len(self._units.popleft().payloads)

    def find(self, index: int) -> tuple[Packetized, int] | None:
        """The unit holding packet `index` and the packet's position in it."""
        if not self._units or not self._units[0].first <= index < self._units[-1].end:
            return None
        for unit in reversed(self._units):  # NACKs ask for recent packets
            if index >= unit.first:
                return unit, index - unit.first
        return None

    def clear(self) -> None:
        self._units.clear()
        self._packets = 0

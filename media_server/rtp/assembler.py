"""Access units from RTP packets: complete on the marker bit, as they arrive.

FFmpeg's parser holds each access unit until the next one begins (a frame of delay); here
a unit is complete on the packet with the marker bit, or for cameras that never set it,
on the first packet of the next timestamp. A gap in sequence numbers drops the unit it
broke, and the units after it until a keyframe: nothing broken is forwarded. Parameter
sets seen (in band, or from the SDP) go in front of every keyframe that lacks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_server.codecs.h264 import START_CODE
from media_server.rtp.packet import RtpPacket
from media_server.rtp.payload import (
    VideoCodec,
    depacketizer,
    is_keyframe,
    is_parameter_set,
    nal_type,
)

#: The most one access unit may hold; a larger one is dropped as broken.
MAX_UNIT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Unit:
    """One access unit, Annex-B, with the RTP timestamp of its packets."""

    data: bytes
    timestamp: int
    keyframe: bool


class Assembler:
    def __init__(self, codec: VideoCodec, parameter_sets: list[bytes] | None = None) -> None:
        self._codec = codec
        self._depacketizer = depacketizer(codec)
        self._params: dict[int, bytes] = {}  # the latest of each kind, by NAL type
        for unit in parameter_sets or []:
            if is_parameter_set(codec, unit):
                self._params[nal_type(codec, unit)] = unit
        self._nals: list[bytes] = []
        self._size = 0
        self._timestamp: int | None = None
        self._last_seq: int | None = None
        self._broken = False
        self._need_key = True
        self.dropped_units = 0

    def push(self, packet: RtpPacket) -> list[Unit]:
        """The access units `packet` completes (at most two: the one before it, for a
        camera that sets no marker, and its own)."""
        out: list[Unit] = []
        gap = self._last_seq is not None and packet.sequence != (self._last_seq + 1) & 0xFFFF
        if gap:  # lost packets: the unit they belonged to cannot be whole
            self._broken = True
            self._need_key = True
            self._depacketizer.reset()
        if self._timestamp is not None and packet.timestamp != self._timestamp:
            out += self._complete()  # no marker came: a new timestamp ends the unit
            self._broken = gap  # the lost packets may have been this one's first
        self._last_seq = packet.sequence
        self._timestamp = packet.timestamp
        for nal in self._depacketizer.push(packet.payload):
            self._nals.append(nal)
            self._size += len(nal)
        if self._size > MAX_UNIT_BYTES:
            self._broken = True
        if packet.marker:
            out += self._complete()
        return out

    def _complete(self) -> list[Unit]:
        nals, timestamp = self._nals, self._timestamp
        broken = self._broken
        self._nals, self._size, self._timestamp, self._broken = [], 0, None, False
        if timestamp is None or (not nals and not broken):
            return []
        codec = self._codec
        key = any(is_keyframe(codec, nal) for nal in nals)
        if broken or not nals or (self._need_key and not key):
            self.dropped_units += 1
            return []
        self._need_key = False
        kinds = set()
        for nal in nals:
            if is_parameter_set(codec, nal):
                kind = nal_type(codec, nal)
                self._params[kind] = nal
                kinds.add(kind)
        if key:
            missing = [unit for kind, unit in sorted(self._params.items()) if kind not in kinds]
            nals = missing + nals
        return [Unit(b"".join(START_CODE + nal for nal in nals), timestamp, key)]

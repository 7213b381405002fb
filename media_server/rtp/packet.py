"""An RTP packet's fixed header (RFC 3550 5.1), read with every length checked: a camera's
bytes are not trusted to be well formed."""

from __future__ import annotations

import struct
from dataclasses import dataclass

_FIXED = struct.Struct("!BBHII")


class MalformedPacket(ValueError):
    """Not an RTP packet, or one whose lengths do not add up."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < _FIXED.size:
            raise MalformedPacket(f"{len(data)} bytes is shorter than an RTP header")
        first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
        if first >> 6 != 2:
            raise MalformedPacket(f"RTP version {first >> 6}, not 2")
        offset = _FIXED.size + 4 * (first & 0x0F)  # CSRC list
        if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
            if len(data) < offset + 4:
                raise MalformedPacket("header extension cut short")
            words = int.from_bytes(data[offset + 2 : offset + 4], "big")
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20:  # padding: its length in the last byte
            if end == 0 or data[-1] == 0 or data[-1] > end - offset:
                raise MalformedPacket("bad padding")
            end -= data[-1]
        if offset > end:
            raise MalformedPacket("header longer than the packet")
        return cls(second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc, data[offset:end])


def seq_after(a: int, b: int) -> bool:
    """Whether sequence number `a` comes after `b`, modulo 2^16 (RFC 3550 A.1)."""
    return a != b and (a - b) & 0xFFFF < 0x8000


def seq_distance(a: int, b: int) -> int:
    """How many numbers `a` is after `b` (negative when before), modulo 2^16."""
    step = (a - b) & 0xFFFF
    return step if step < 0x8000 else step - 0x10000

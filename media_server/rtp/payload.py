"""RTP payload formats back to NAL units: H.264 (RFC 6184) and H.265 (RFC 7798).

Each depacketizer takes the payloads of one stream in sequence order and returns the NAL
units each one completes (without start codes). A fragment that arrives without its
start (its predecessor was lost) is dropped, as are the formats cameras do not use
(STAP-B, MTAP, FU-B; PACI): `dropped` counts them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal, Protocol

from media_server.codecs.h264 import START_CODE

VideoCodec = Literal["h264", "h265"]

# H.264 NAL unit types (RFC 6184 5.2; ITU-T H.264 7.4.1).
H264_IDR, H264_SPS, H264_PPS = 5, 7, 8
H264_STAP_A, H264_FU_A = 24, 28
# H.265 NAL unit types (RFC 7798 4.4; ITU-T H.265 7.4.2.2).
H265_IRAP = range(16, 24)  # BLA, IDR, CRA: decoding can start there
H265_VPS, H265_SPS, H265_PPS = 32, 33, 34
H265_AP, H265_FU = 48, 49


class Depacketizer(Protocol):
    dropped: int

    def push(self, payload: bytes) -> list[bytes]: ...

    def reset(self) -> None:
        """Forget a NAL unit half assembled (a packet of it was lost)."""


def _aggregated(data: bytes, offset: int) -> list[bytes]:
    """The NAL units of an aggregation packet: each a 16-bit size, then the unit."""
    units = []
    while offset + 2 <= len(data):
        size = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if size == 0 or offset + size > len(data):
            break  # cut short: what came whole is kept
        units.append(data[offset : offset + size])
        offset += size
    return units


class _Fragments:
    """The fragmentation units both formats share: a NAL unit in pieces, its header
    rebuilt from the first; a piece whose start was lost is dropped."""

    def __init__(self) -> None:
        self._fragment: bytearray | None = None
        self.dropped = 0

    def reset(self) -> None:
        self._fragment = None

    def _piece(self, header: bytes | None, data: bytes, end: bool) -> list[bytes]:
        """`header` is the rebuilt NAL header on the first piece, None on the others."""
        if header is not None:
            self._fragment = bytearray(header)
        elif self._fragment is None:
            self.dropped += 1  # its start was lost
            return []
        self._fragment += data
        if end:
            unit, self._fragment = bytes(self._fragment), None
            return [unit]
        return []


class H264Depacketizer(_Fragments):
    def push(self, payload: bytes) -> list[bytes]:
        if not payload:
            return []
        kind = payload[0] & 0x1F
        if 1 <= kind <= 23:
            return [payload]
        if kind == H264_STAP_A:
            return _aggregated(payload, 1)
        if kind == H264_FU_A and len(payload) > 2:
            fu = payload[1]
            header = bytes([(payload[0] & 0xE0) | (fu & 0x1F)]) if fu & 0x80 else None
            return self._piece(header, payload[2:], bool(fu & 0x40))
        self.dropped += 1
        return []


class H265Depacketizer(_Fragments):
    def push(self, payload: bytes) -> list[bytes]:
        if len(payload) < 3:
            return []
        kind = (payload[0] >> 1) & 0x3F
        if kind < H265_AP:
            return [payload]
        if kind == H265_AP:
            return _aggregated(payload, 2)
        if kind == H265_FU:
            fu = payload[2]  # the NAL header: the payload header's, with the FU's type
            first = (payload[0] & 0x81) | ((fu & 0x3F) << 1)
            header = bytes([first, payload[1]]) if fu & 0x80 else None
            return self._piece(header, payload[3:], bool(fu & 0x40))
        self.dropped += 1
        return []


def annexb_h265(payload: bytes) -> bytes:
    """One H.265 payload as Annex-B bytes on its own, for a receiver that joins a frame's
    payloads in sequence order (aiortc's jitter buffer): a fragment's first piece brings
    the start code and rebuilt NAL header, the others their bytes alone."""
    if len(payload) < 3:
        return b""
    kind = (payload[0] >> 1) & 0x3F
    if kind < H265_AP:
        return START_CODE + payload
    if kind == H265_AP:
        return b"".join(START_CODE + unit for unit in _aggregated(payload, 2))
    if kind == H265_FU:
        fu = payload[2]
        if fu & 0x80:
            header = bytes([(payload[0] & 0x81) | ((fu & 0x3F) << 1), payload[1]])
            return START_CODE + header + payload[3:]
        return payload[3:]
    return b""


def nal_type(codec: VideoCodec, unit: bytes) -> int:
    return unit[0] & 0x1F if codec == "h264" else (unit[0] >> 1) & 0x3F


def is_keyframe(codec: VideoCodec, unit: bytes) -> bool:
    kind = nal_type(codec, unit)
    return kind == H264_IDR if codec == "h264" else kind in H265_IRAP


def is_parameter_set(codec: VideoCodec, unit: bytes) -> bool:
    kinds = (H264_SPS, H264_PPS) if codec == "h264" else (H265_VPS, H265_SPS, H265_PPS)
    return nal_type(codec, unit) in kinds


def depacketizer(codec: VideoCodec) -> Depacketizer:
    return H264Depacketizer() if codec == "h264" else H265Depacketizer()


#: The fmtp parameters that carry each codec's parameter sets, in decoding order.
SPROP: dict[VideoCodec, tuple[str, ...]] = {
    "h264": ("sprop-parameter-sets",),
    "h265": ("sprop-vps", "sprop-sps", "sprop-pps"),
}


def fmtp_params(fmtp: str) -> dict[str, str]:
    """An SDP `a=fmtp` line's parameters (`name=value;...`), names in lower case."""
    params = {}
    for item in fmtp.split(";"):
        name, _, value = item.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip()
    return params


def sdp_parameter_sets(codec: VideoCodec, fmtp: str) -> list[bytes]:
    """The parameter sets an SDP's `a=fmtp` line carries (`sprop-parameter-sets` for
    H.264; `sprop-vps`, `sprop-sps`, `sprop-pps` for H.265), in decoding order."""
    params = fmtp_params(fmtp)
    units = []
    for name in SPROP[codec]:
        for encoded in filter(None, params.get(name, "").split(",")):
            try:
                unit = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue  # a broken one: the stream's own, in band, will do
            if unit:
                units.append(unit)
    return units

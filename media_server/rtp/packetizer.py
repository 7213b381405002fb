"""Access units to RTP payloads for H.265 (RFC 7798), the way aiortc makes H.264's.

aiortc packetizes H.264 itself (`aiortc_internals.packetize_h264`); it has no H.265. A
NAL unit that fits goes alone (single NAL unit packet); runs of small ones (VPS, SPS,
PPS, SEI) share an aggregation packet; one too large for a packet is cut into
fragmentation units of even size, as aiortc cuts FU-As. Payloads are at most
`PACKET_MAX` bytes, aiortc's own limit, so both codecs fit the same path MTU.
"""

from __future__ import annotations

import math

from media_server.codecs.h264 import iter_nals
from media_server.rtp.payload import H265_AP, H265_FU

PACKET_MAX = 1300
NAL_HEADER = 2
FU_HEADER = 3  # payload header (2) and FU header (1)


def _fragments(nal: bytes) -> list[bytes]:
    """A NAL unit too large for one packet, as fragmentation units (RFC 7798 4.4.3) of
    even size: the payload header keeps F, LayerId and TID, with type 49."""
    header = bytes([(nal[0] & 0x81) | H265_FU << 1, nal[1]])
    kind = (nal[0] >> 1) & 0x3F
    body = nal[NAL_HEADER:]
    count = math.ceil(len(body) / (PACKET_MAX - FU_HEADER))
    size, larger = divmod(len(body), count)
    out, at = [], 0
    for i in range(count):
        end = at + size + (1 if i < larger else 0)
        flags = (0x80 if i == 0 else 0) | (0x40 if i == count - 1 else 0)
        out.append(header + bytes([flags | kind]) + body[at:end])
        at = end
    return out


def _aggregate(nals: list[bytes]) -> bytes:
    """Small NAL units in one aggregation packet (RFC 7798 4.4.2): F set if any has it,
    the lowest LayerId and TID of them."""
    forbidden = any(n[0] & 0x80 for n in nals)
    layer = min(((n[0] & 1) << 5) | (n[1] >> 3) for n in nals)
    tid = min(n[1] & 0x07 for n in nals)
    header = bytes(
        [(0x80 if forbidden else 0) | H265_AP << 1 | layer >> 5, (layer & 0x1F) << 3 | tid]
    )
    return header + b"".join(len(n).to_bytes(2, "big") + n for n in nals)


def packetize_h265(annex_b: bytes) -> list[bytes]:
    """The RTP payloads of one access unit (Annex-B), in order."""
    out: list[bytes] = []
    pending: list[bytes] = []  # small units waiting to share a packet
    pending_size = NAL_HEADER

    def flush() -> None:
        nonlocal pending, pending_size
        if len(pending) == 1:
            out.append(pending[0])
        elif pending:
            out.append(_aggregate(pending))
        pending, pending_size = [], NAL_HEADER

    for nal in iter_nals(annex_b):
        if len(nal) <= NAL_HEADER:
            continue  # nothing after its header: not a unit to send
        if len(nal) > PACKET_MAX:
            flush()
            out += _fragments(nal)
        elif pending_size + 2 + len(nal) <= PACKET_MAX:
            pending.append(nal)
            pending_size += 2 + len(nal)
        else:
            flush()
            pending, pending_size = [nal], NAL_HEADER + 2 + len(nal)
    flush()
    return out

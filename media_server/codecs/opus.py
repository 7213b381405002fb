"""Opus packets (RFC 6716): how long one plays, read from its table-of-contents byte.

A container needs each sample's duration; an Opus packet carries it in its first byte
(and, for code 3, its second), whatever the camera or our encoder chose.
"""

from __future__ import annotations

#: Frame lengths in 48 kHz samples by configuration (RFC 6716 3.1, table 2).
_SILK = (480, 960, 1920, 2880)  # 10, 20, 40, 60 ms
_HYBRID = (480, 960)
_CELT = (120, 240, 480, 960)  # 2.5, 5, 10, 20 ms


def samples(packet: bytes) -> int:
    """The packet's length in 48 kHz samples; 0 for one too short to say."""
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = _SILK[config % 4]
    elif config < 16:
        frame = _HYBRID[config % 2]
    else:
        frame = _CELT[config % 4]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(packet) > 1:
        count = packet[1] & 0x3F
    else:
        return 0
    return frame * count

"""A capture timestamp drawn into a video frame, readable after any lossy codec.

The RTSP test server's ``/clock`` mount draws the time of capture into the top band of
each frame; a probe viewer that decodes the frame reads it back and subtracts it from
its own clock. Both sides use ``CLOCK_MONOTONIC``, which every process on the machine
shares, so the difference is the capture-to-arrival latency without any clock sync.

The band is 40 blocks of 16x16 luma pixels, black or white: 32 bits of microseconds
(modulo 2**32, so a difference is right for up to 71 minutes) and an 8-bit check that
rejects a frame whose band a codec has smeared. Blocks are macroblock aligned and
full-contrast, so they survive x264, libx264 re-encoding and VP8. Standard library
only: the RTSP test server runs under Debian's system Python.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

BLOCK = 16
VALUE_BITS = 32
CHECK_BITS = 8
BITS = VALUE_BITS + CHECK_BITS
WIDTH = BITS * BLOCK  # 640: the band spans the width of a 640-pixel frame
MASK = (1 << VALUE_BITS) - 1
BLACK, WHITE = 16, 235  # video-range luma


def now_us() -> int:
    """The stamp clock: CLOCK_MONOTONIC in microseconds, modulo 2**32."""
    return (time.monotonic_ns() // 1000) & MASK


def _check(value: int) -> int:
    return (sum(value.to_bytes(4, "big")) ^ 0xA5) & 0xFF


def band(value: int) -> bytes:
    """The luma rows (BLOCK rows of WIDTH bytes) that carry ``value``."""
    word = ((value & MASK) << CHECK_BITS) | _check(value & MASK)
    row = b"".join(
        (bytes([WHITE]) if word >> (BITS - 1 - i) & 1 else bytes([BLACK])) * BLOCK
        for i in range(BITS)
    )
    return row * BLOCK


def read(row: bytes) -> int | None:
    """The value in a decoded luma row through the middle of the band, or None."""
    if len(row) < WIDTH:
        return None
    word = 0
    for i in range(BITS):
        word = (word << 1) | (row[i * BLOCK + BLOCK // 2] >= 128)
    value = word >> CHECK_BITS
    return value if word & 0xFF == _check(value) else None


class Rows(Protocol):
    """A decoded picture's luma plane, row by row (a numpy array, say)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Any: ...


def read_picture(luma: Rows) -> int | None:
    """The value in a decoded picture's luma rows (anything whose rows convert to bytes)."""
    return read(bytes(luma[BLOCK // 2])) if len(luma) > BLOCK else None


def elapsed_us(stamp: int, now: int) -> int:
    """Microseconds from ``stamp`` to ``now`` on the wrapping stamp clock."""
    return (now - stamp) & MASK

"""The capture stamp that the latency probe reads back from decoded frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.support import stamp


@given(st.integers(min_value=0, max_value=stamp.MASK))
def test_a_stamp_reads_back_from_any_row_of_its_band(value: int) -> None:
    band = stamp.band(value)
    assert len(band) == stamp.WIDTH * stamp.BLOCK
    for y in (0, stamp.BLOCK // 2, stamp.BLOCK - 1):
        assert stamp.read(band[y * stamp.WIDTH : (y + 1) * stamp.WIDTH]) == value


def test_a_smeared_or_short_band_is_rejected() -> None:
    row = bytearray(stamp.band(123_456_789)[: stamp.WIDTH])
    flipped = bytes(b ^ 0xFF if i // stamp.BLOCK == 20 else b for i, b in enumerate(row))
    assert stamp.read(flipped) is None  # one bit wrong: the check fails
    assert stamp.read(bytes(row[:100])) is None
    assert stamp.read(bytes([128]) * stamp.WIDTH) is None  # a plain gray frame


def test_elapsed_time_survives_the_clock_wrapping() -> None:
    assert stamp.elapsed_us(stamp.MASK - 999, 1000) == 2000
    assert stamp.elapsed_us(5, 35_005) == 35_000

"""An H.265 stream's one H.264 transcode, made on demand: it starts mid-GOP by decoding
the units since the keyframe, encodes from the live picture on, and stops when no one
wants it (starting again at a keyframe)."""

from __future__ import annotations

from fractions import Fraction

from media_server.codecs import h264
from media_server.ingest.transcoder import CATCH_UP_UNITS, ShareOnDemand
from media_server.model.media import AccessUnit
from tests.unit.test_h265_packetizer import encode

STEP = 3000  # 30 fps on the 90 kHz clock


def units(count: int) -> list[AccessUnit]:
    """libx265 access units, a keyframe every fifth (as the encoder in the test makes)."""
    made = encode(320, 240, count)
    return [
        AccessUnit(data, i * STEP, Fraction(1, 90_000), i % 5 == 0) for i, data in enumerate(made)
    ]


def test_it_starts_mid_gop_from_the_live_picture_and_stops() -> None:
    stream = units(15)
    shared = ShareOnDemand("hevc", 300_000)
    for unit in stream[:3]:  # nobody wants it yet: kept, not decoded
        assert shared.take(unit, False) == []
    assert not shared.running
    frames = shared.take(stream[3], True)  # mid-GOP: catches up on 0-2, decodes 3
    assert shared.running
    assert [f.pts for f in frames] == [3 * STEP]
    encoded = shared.encode(frames[0], 30.0)
    assert encoded and encoded[0].keyframe  # the viewer's first picture is a keyframe
    assert h264.NAL_SPS in h264.nal_types(encoded[0].data)
    assert [f.pts for f in shared.take(stream[4], True)] == [4 * STEP]
    assert shared.take(stream[5], False) == []  # the last viewer left
    assert not shared.running
    assert shared.encode(frames[0], 30.0) == []


def test_once_stopped_it_starts_again_at_a_keyframe() -> None:
    """What a unit that does not decode leads to (`stop`): no catching up from a GOP
    with a hole in it."""
    stream = units(10)
    shared = ShareOnDemand("hevc", 300_000)
    assert shared.take(stream[0], True)
    shared.stop()
    assert shared.take(stream[2], True) == []  # no keyframe since: nothing to start from
    assert not shared.running
    assert [f.pts for f in shared.take(stream[5], True)] == [5 * STEP]


def test_what_it_keeps_to_catch_up_is_bounded() -> None:
    shared = ShareOnDemand("hevc", 300_000)
    key = AccessUnit(b"\x00\x00\x00\x01\x26\x01" + bytes(10), 0, Fraction(1, 90_000), True)
    shared.take(key, False)
    rest = AccessUnit(b"\x00\x00\x00\x01\x02\x01" + bytes(10), 0, Fraction(1, 90_000), False)
    for _ in range(CATCH_UP_UNITS):
        shared.take(rest, False)
    assert shared._gop == []  # too long to catch up from: the next keyframe starts it

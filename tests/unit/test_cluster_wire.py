"""The internal link's messages: what an origin says of its media, and each unit."""

from __future__ import annotations

import pytest

from media_server.cluster import wire
from media_server.model.media import AudioInfo, SourceInfo

CAMERA = SourceInfo("h264", 640, 480, 25.0, "Constrained Baseline", b"\x01", True)


def test_unit_round_trip() -> None:
    message = wire.pack(wire.VIDEO, True, 2**40 + 7, b"\x00\x00\x00\x01\x65")
    unit = wire.unpack(message)
    assert unit == wire.Unit(wire.VIDEO, True, 2**40 + 7, b"\x00\x00\x00\x01\x65")
    assert wire.unpack(wire.pack(wire.AUDIO, False, -3, b"")).pts == -3


@pytest.mark.parametrize("message", [b"", b"\x01\x00", wire.pack(7, False, 0, b"x")])
def test_bad_unit_is_refused(message: bytes) -> None:
    with pytest.raises(ValueError):
        wire.unpack(message)


def test_edge_serves_what_the_origin_relays() -> None:
    # A transcoded camera: the edge gets H.264 from the shared encoder and Opus audio.
    camera = SourceInfo(
        "hevc", 1280, 720, 30.0, "Main", b"", False, AudioInfo("aac", 44_100, 1, "transcode")
    )
    edge = wire.parse_info(wire.describe(camera))
    assert (edge.codec, edge.width, edge.height, edge.browser_safe) == ("h264", 1280, 720, True)
    assert edge.audio == AudioInfo("opus", 48_000, 2, "passthrough")
    pcmu = SourceInfo(
        "h264", 640, 480, 25.0, None, b"", True, AudioInfo("pcm_mulaw", 8000, 1, "passthrough")
    )
    assert wire.parse_info(wire.describe(pcmu)).audio == AudioInfo(
        "pcm_mulaw", 8000, 1, "passthrough"
    )
    muted = SourceInfo("h264", 640, 480, 25.0, None, b"", True, AudioInfo("aac", 8000, 1, "off"))
    assert wire.parse_info(wire.describe(muted)).audio is None
    assert wire.parse_info(wire.describe(CAMERA)).extradata == b""


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "[]",
        "not json",
        '{"codec": "hevc"}',
        '{"codec": "h264", "audio": {"codec": "aac"}}',
        '{"codec": "h264", "audio": {"codec": "opus", "sample_rate": 0, "channels": 2}}',
        '{"codec": "h264", "audio": {"codec": "opus", "sample_rate": "x", "channels": 2}}',
    ],
)
def test_bad_description_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        wire.parse_info(text)

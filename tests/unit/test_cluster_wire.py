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
    edge = wire.parse_info(wire.describe(camera, "h264"))
    assert (edge.codec, edge.width, edge.height, edge.browser_safe) == ("h264", 1280, 720, True)
    assert edge.audio == AudioInfo("opus", 48_000, 2, "passthrough")
    pcmu = SourceInfo(
        "h264", 640, 480, 25.0, None, b"", True, AudioInfo("pcm_mulaw", 8000, 1, "passthrough")
    )
    assert wire.parse_info(wire.describe(pcmu, "h264")).audio == AudioInfo(
        "pcm_mulaw", 8000, 1, "passthrough"
    )
    muted = SourceInfo("h264", 640, 480, 25.0, None, b"", True, AudioInfo("aac", 8000, 1, "off"))
    assert wire.parse_info(wire.describe(muted, "h264")).audio is None
    assert wire.parse_info(wire.describe(CAMERA, "h264")).extradata == b""
    # An H.265 camera passed through: its parameter sets go along for the edge's answers.
    hevc = SourceInfo("hevc", 320, 240, 15.0, "main", b"\x00\x00\x00\x01\x42\x01", True)
    relayed = wire.parse_info(wire.describe(hevc, "hevc"))
    assert (relayed.codec, relayed.extradata, relayed.profile) == ("hevc", hevc.extradata, "main")


def test_the_edge_asks_for_the_transcode() -> None:
    assert wire.parse_ask(wire.ask_transcode(True)) is True
    assert wire.parse_ask(wire.ask_transcode(False)) is False
    for bad in ("{}", "[]", "nope", '{"transcode": 1}'):
        with pytest.raises(ValueError):
            wire.parse_ask(bad)


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "[]",
        "not json",
        '{"codec": "vp8"}',
        '{"codec": "hevc", "extradata": "!!"}',
        '{"codec": "h264", "audio": {"codec": "aac"}}',
        '{"codec": "h264", "audio": {"codec": "opus", "sample_rate": 0, "channels": 2}}',
        '{"codec": "h264", "audio": {"codec": "opus", "sample_rate": "x", "channels": 2}}',
    ],
)
def test_bad_description_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        wire.parse_info(text)

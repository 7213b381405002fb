"""Annex-B inspection and SPS parsing on real encoder output (PyAV's libx264)."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from media_server.codecs import h264


def encode(
    profile: str, width: int = 320, height: int = 240, frames: int = 3, fps: int = 30
) -> list[bytes]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    ctx.options = {"profile": profile, "preset": "veryfast", "tune": "zerolatency"}
    out = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame)]
    out += [bytes(p) for p in ctx.encode(None)]
    return out


@pytest.mark.parametrize(
    ("profile", "idc", "name"),
    [("baseline", 66, "constrained-baseline"), ("main", 77, "main"), ("high", 100, "high")],
)
def test_sps_of_real_stream(profile: str, idc: int, name: str) -> None:
    first = encode(profile, 640, 360)[0]
    assert {h264.NAL_SPS, h264.NAL_PPS, h264.NAL_IDR} <= h264.nal_types(first)
    sps = h264.find_sps(first)
    assert sps is not None
    assert (sps.profile_idc, sps.profile_name, sps.width, sps.height) == (idc, name, 640, 360)
    assert h264.browser_safe(sps) == (profile != "high")


@pytest.mark.parametrize("fps", [15, 25, 30])
def test_the_frame_rate_from_the_vui(fps: int) -> None:
    """x264 writes timing info into the SPS's VUI: the frame rate, known at once (the
    native client has no container to guess it from)."""
    sps = h264.find_sps(encode("high", fps=fps)[0])
    assert sps is not None and sps.fps == fps


def test_cropped_size_is_reported() -> None:
    sps = h264.find_sps(encode("baseline", 322, 242)[0])  # not a multiple of 16: cropped
    assert sps is not None and (sps.width, sps.height) == (322, 242)


def test_nal_split_and_parameter_sets() -> None:
    packets = encode("baseline")
    nals = h264.iter_nals(packets[0])
    types = [n[0] & 0x1F for n in nals if n[0] & 0x1F in (7, 8, 5)]
    assert types[:3] == [7, 8, 5] and set(types[3:]) <= {5}
    params = h264.parameter_sets(packets[0])
    assert h264.nal_types(params) == {7, 8}
    assert h264.nal_types(packets[1]) == {h264.NAL_SLICE}
    assert h264.parameter_sets(packets[1]) == b""


def test_avcc_extradata_becomes_annexb() -> None:
    sps = bytes([0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF])
    pps = bytes([0x68, 0xCE, 0x3C, 0x80])
    avcc = (
        bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + bytes([1])
        + len(pps).to_bytes(2, "big")
        + pps
    )
    annexb = h264.avcc_extradata_to_annexb(avcc)
    assert annexb == h264.START_CODE + sps + h264.START_CODE + pps
    assert h264.avcc_extradata_to_annexb(annexb) == annexb  # already Annex-B: unchanged


def test_garbage_is_not_an_sps() -> None:
    assert h264.find_sps(b"\x00\x00\x01\x67") is None
    assert h264.nal_types(b"no start codes here") == set()


@pytest.mark.parametrize(
    ("size", "fps", "bitrate", "level"),
    [
        ((320, 240, 15), 15.0, 1_500_000, 31),  # 3.1 is the floor every browser takes
        ((1280, 720, 30), 30.0, 1_500_000, 31),  # 3600 macroblocks at 30 fps: 3.1 exactly
        ((1280, 720, 60), 60.0, 1_500_000, 32),
        ((1920, 1080, 30), 30.0, 1_500_000, 40),
        ((1280, 720, 30), 30.0, 16_000_000, 32),  # past 3.1's 14 Mbit/s
        ((3840, 2160, 30), 30.0, 8_000_000, 51),
        ((7680, 4320, 30), 30.0, 8_000_000, 52),  # past every limit: the highest
    ],
)
def test_the_level_an_encode_states(
    size: tuple[int, int, int], fps: float, bitrate: int, level: int
) -> None:
    assert h264.level_for(size[0], size[1], fps, bitrate) == level

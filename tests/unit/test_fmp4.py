"""Fragmented MP4 from real encoder output, read back by FFmpeg (PyAV): what MSE, HLS
and recordings will be made of must decode frame for frame."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import pytest
from av.video.codeccontext import VideoCodecContext

from media_server.codecs import h264
from media_server.mp4 import fmp4

FPS = 30
TICKS = 90_000 // FPS


def encode(profile: str, frames: int) -> list[bytes]:
    """Access units of a 320x240 clip (Annex-B), a keyframe every 10 frames."""
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.options = {
        "profile": profile,
        "tune": "zerolatency",
        "x264-params": "keyint=10:min-keyint=10:bframes=0",
    }
    out: list[bytes] = []
    for i in range(frames):
        frame = av.VideoFrame(320, 240, "yuv420p")
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame)]
    return out + [bytes(p) for p in ctx.encode(None)]


def mux(units: list[bytes]) -> bytes:
    """An init segment, then a fragment of each GOP."""
    nals = h264.iter_nals(units[0])
    sps = next(n for n in nals if n[0] & 0x1F == h264.NAL_SPS)
    pps = next(n for n in nals if n[0] & 0x1F == h264.NAL_PPS)
    out = fmp4.video_init(sps, pps, 320, 240)
    gop: list[fmp4.Sample] = []
    sequence, start = 1, 0
    for i, unit in enumerate(units):
        key = h264.NAL_IDR in h264.nal_types(unit)
        if key and gop:
            out += fmp4.fragment(sequence, start, gop)
            sequence, start, gop = sequence + 1, i * TICKS, []
        gop.append(fmp4.Sample(fmp4.avcc_sample(unit), TICKS, key))
    return out + fmp4.fragment(sequence, start, gop)


@pytest.mark.parametrize("profile", ["baseline", "main", "high"])
def test_fragments_decode_frame_for_frame_at_their_times(profile: str) -> None:
    units = encode(profile, 45)
    container = av.open(io.BytesIO(mux(units)), format="mp4")
    assert isinstance(container, av.container.InputContainer)
    with container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(stream))
    assert len(frames) == len(units) == 45
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    times = [float((f.pts or 0) * (f.time_base or 0)) for f in frames]
    assert times == pytest.approx([i / FPS for i in range(45)], abs=1e-3)


def boxes(data: bytes) -> list[bytes]:
    """The top-level boxes of a file, whole."""
    out, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        out.append(data[at : at + size])
        at += size
    return out


def test_a_fragment_starting_at_a_keyframe_decodes_alone() -> None:
    """A client that joins late gets the init segment, then fragments from a later one:
    they decode on their own, at their own times."""
    units = encode("baseline", 30)
    keys = [i for i, unit in enumerate(units) if h264.NAL_IDR in h264.nal_types(unit)]
    top = boxes(mux(units))
    assert [b[4:8] for b in top] == [b"ftyp", b"moov"] + [b"moof", b"mdat"] * len(keys)
    late = b"".join(top[:2] + top[4:])  # the init segment, then from the 2nd GOP on
    container = av.open(io.BytesIO(late), format="mp4")
    assert isinstance(container, av.container.InputContainer)
    with container:
        frames = list(container.decode(container.streams.video[0]))
    assert len(frames) == len(units) - keys[1]
    first = frames[0]
    assert first.pts is not None and first.time_base is not None
    assert float(first.pts * first.time_base) == pytest.approx(keys[1] / FPS, abs=1e-3)


def test_the_codecs_string_names_profile_and_level() -> None:
    sps = next(n for n in h264.iter_nals(encode("baseline", 1)[0]) if n[0] & 0x1F == 7)
    assert fmp4.codecs_string(sps) == f"avc1.42C0{sps[3]:02X}"

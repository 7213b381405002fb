"""H.265 access units to RTP payloads (RFC 7798) and back through our own depacketizer:
the same NAL units, payloads within the limit, the formats where they belong, and
pictures FFmpeg decodes."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext

from media_server.codecs.h264 import iter_nals
from media_server.rtp.packetizer import PACKET_MAX, packetize_h265
from media_server.rtp.payload import H265_AP, H265_FU, H265Depacketizer, annexb_h265


def encode(width: int, height: int, frames: int) -> list[bytes]:
    """libx265 access units (Annex-B) of a noisy picture, so keyframes are large."""
    ctx = av.CodecContext.create("libx265", "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {
        "preset": "ultrafast",
        "x265-params": "keyint=5:bframes=0:repeat-headers=1:log-level=error",
    }
    out: list[bytes] = []
    rng = np.random.default_rng(7)
    for i in range(frames):
        pixels = rng.integers(0, 255, (height * 3 // 2, width), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame)]
    return out + [bytes(p) for p in ctx.encode(None)]


def kind(payload: bytes) -> int:
    return (payload[0] >> 1) & 0x3F


@pytest.fixture(scope="module")
def units() -> list[bytes]:
    return encode(640, 480, 10)


def test_round_trip_gives_back_every_nal_unit(units: list[bytes]) -> None:
    depacketizer = H265Depacketizer()
    for unit in units:
        payloads = packetize_h265(unit)
        assert all(len(p) <= PACKET_MAX for p in payloads)
        got = [nal for p in payloads for nal in depacketizer.push(p)]
        assert got == [n for n in iter_nals(unit) if len(n) > 2]
    assert depacketizer.dropped == 0


def test_parameter_sets_share_a_packet_and_large_units_are_fragmented(
    units: list[bytes],
) -> None:
    payloads = packetize_h265(units[0])  # a keyframe: VPS, SPS, PPS (SEI) and a large IDR
    assert kind(payloads[0]) == H265_AP
    units_cut: list[list[bytes]] = []  # the fragments of each NAL unit cut up
    for payload in payloads:
        if kind(payload) == H265_FU:
            if payload[2] & 0x80:
                units_cut.append([])
            units_cut[-1].append(payload)
    assert units_cut and all(len(cut) >= 2 for cut in units_cut)
    for cut in units_cut:
        assert cut[0][2] & 0x80 and cut[-1][2] & 0x40  # start, end
        assert all(not p[2] & 0xC0 for p in cut[1:-1])
        sizes = [len(p) for p in cut]
        assert max(sizes) - min(sizes) <= 1  # cut evenly, as aiortc cuts FU-As


def test_what_comes_back_decodes(units: list[bytes]) -> None:
    depacketizer = H265Depacketizer()
    decoder = av.CodecContext.create("hevc", "r")
    pictures = 0
    for unit in units:
        nals = [n for p in packetize_h265(unit) for n in depacketizer.push(p)]
        annex_b = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        pictures += len(decoder.decode(av.Packet(annex_b)))
    pictures += len(decoder.decode(None))
    assert pictures == len(units) == 10


def test_each_payload_alone_joins_into_annex_b_that_decodes(units: list[bytes]) -> None:
    """What aiortc's receiver does with a frame's payloads (as the gateway teaches it):
    each turned into Annex-B bytes on its own, joined in order."""
    decoder = av.CodecContext.create("hevc", "r")
    pictures = 0
    for unit in units:
        joined = b"".join(annexb_h265(p) for p in packetize_h265(unit))
        assert iter_nals(joined) == [n for n in iter_nals(unit) if len(n) > 2]
        pictures += len(decoder.decode(av.Packet(joined)))
    pictures += len(decoder.decode(None))
    assert pictures == len(units)
    assert annexb_h265(b"\x62") == b""  # too short to be a payload

"""Fragmented MP4 from real encoder output, read back by FFmpeg (PyAV): what MSE, HLS
and recordings will be made of must decode frame for frame."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext

from media_server.codecs import h264, h265
from media_server.codecs import opus as opus_codec
from media_server.mp4 import fmp4

FPS = 30
TICKS = 90_000 // FPS


def encode(profile: str, frames: int) -> list[bytes]:
    """H.264 access units of a 320x240 clip (Annex-B), a keyframe every 10 frames."""
    params = {"profile": profile, "x264-params": "keyint=10:min-keyint=10:bframes=0"}
    return encoded("libx264", params, frames)


def encoded(codec: str, options: dict[str, str], frames: int) -> list[bytes]:
    """Access units of a blank 320x240 clip at FPS, from `codec` with these options."""
    ctx = av.CodecContext.create(codec, "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.options = {"tune": "zerolatency", **options}
    out: list[bytes] = []
    for i in range(frames):
        frame = av.VideoFrame(320, 240, "yuv420p")
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame)]
    return out + [bytes(p) for p in ctx.encode(None)]


def video_track(units: list[bytes]) -> fmp4.VideoTrack:
    track = fmp4.VideoTrack.of(units[0])
    assert track is not None and (track.width, track.height) == (320, 240)
    return track


def gops(units: list[bytes]) -> list[tuple[int, list[fmp4.Sample]]]:
    """Each GOP's first index and its samples."""
    out: list[tuple[int, list[fmp4.Sample]]] = []
    for i, unit in enumerate(units):
        key = h264.NAL_IDR in h264.nal_types(unit)
        if key or not out:
            out.append((i, []))
        out[-1][1].append(fmp4.Sample(fmp4.avcc_sample(unit), TICKS, key))
    return out


def mux(units: list[bytes]) -> bytes:
    """An init segment, then a fragment of each GOP."""
    out = fmp4.init_segment([video_track(units)])
    for sequence, (first, samples) in enumerate(gops(units), 1):
        out += fmp4.fragment(sequence, [fmp4.Run(1, first * TICKS, samples)])
    return out


def decoded(data: bytes) -> list[av.VideoFrame | av.AudioFrame]:
    container = av.open(io.BytesIO(data), format="mp4")
    assert isinstance(container, av.container.InputContainer)
    with container:
        return list(container.decode(*container.streams))


@pytest.mark.parametrize("profile", ["baseline", "main", "high"])
def test_fragments_decode_frame_for_frame_at_their_times(profile: str) -> None:
    units = encode(profile, 45)
    frames = [f for f in decoded(mux(units)) if isinstance(f, av.VideoFrame)]
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
    frames = decoded(late)
    assert len(frames) == len(units) - keys[1]
    first = frames[0]
    assert first.pts is not None and first.time_base is not None
    assert float(first.pts * first.time_base) == pytest.approx(keys[1] / FPS, abs=1e-3)


def aac(seconds: float) -> tuple[bytes, list[bytes]]:
    """AudioSpecificConfig and AAC-LC frames (1024 samples each) of a 48 kHz tone."""
    ctx = av.CodecContext.create("aac", "w")
    assert isinstance(ctx, av.audio.codeccontext.AudioCodecContext)
    ctx.sample_rate, ctx.layout, ctx.format = 48_000, "stereo", "fltp"
    ctx.time_base = Fraction(1, 48_000)
    ctx.open()
    out: list[bytes] = []
    tone = np.sin(np.arange(1024) * 2 * np.pi * 1000 / 48_000).astype(np.float32)
    for i in range(int(seconds * 48_000 / 1024)):
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, i * 1024
        out += [bytes(p) for p in ctx.encode(frame)]
    out += [bytes(p) for p in ctx.encode(None)]
    return bytes(ctx.extradata or b""), out


def test_video_and_aac_in_the_same_fragments() -> None:
    """AAC goes in as it is, beside the video, each run on its own track's clock."""
    units = encode("baseline", 30)
    config, frames = aac(1.0)
    audio = fmp4.AudioTrack(config, 48_000, 2)
    assert audio.codecs == "mp4a.40.2"
    out = fmp4.init_segment([video_track(units), audio])
    per_second = 48_000 // 1024
    done = 0
    for sequence, (first, samples) in enumerate(gops(units), 1):
        until = min(len(frames), (first + len(samples)) * per_second // FPS + 1)
        sound = [fmp4.Sample(f, 1024, True) for f in frames[done:until]]
        runs = [fmp4.Run(1, first * TICKS, samples), fmp4.Run(2, done * 1024, sound)]
        out += fmp4.fragment(sequence, runs)
        done = until
    got = decoded(out)
    pictures = [f for f in got if isinstance(f, av.VideoFrame)]
    sounds = [f for f in got if isinstance(f, av.AudioFrame)]
    assert len(pictures) == len(units)
    assert len(sounds) >= done - 2  # the encoder's priming may be dropped
    assert {f.sample_rate for f in sounds} == {48_000}
    loud = np.abs(np.concatenate([f.to_ndarray()[0] for f in sounds[4:]]))
    assert loud.max() > 0.5  # the tone, decoded


def test_the_codecs_string_names_profile_and_level() -> None:
    track = video_track(encode("baseline", 1))
    assert track.codecs == f"avc1.42C0{track.sps[3]:02X}"


def opus(seconds: float) -> list[bytes]:
    """Opus packets (20 ms each) of a 48 kHz stereo tone."""
    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.audio.codeccontext.AudioCodecContext)
    ctx.sample_rate, ctx.layout, ctx.format = 48_000, "stereo", "s16"
    ctx.time_base = Fraction(1, 48_000)
    ctx.options = {"frame_duration": "20"}
    ctx.open()
    tone = (np.sin(np.arange(960) * 2 * np.pi * 1000 / 48_000) * 20_000).astype(np.int16)
    out: list[bytes] = []
    for i in range(int(seconds * 50)):
        pcm = np.stack([tone, tone]).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out


def test_opus_goes_in_as_it_is_with_its_durations_from_the_packets() -> None:
    units = encode("baseline", 30)
    packets = opus(1.0)
    assert {opus_codec.samples(p) for p in packets} == {960}
    track = fmp4.OpusTrack(2)
    assert track.codecs == "opus"
    out = fmp4.init_segment([video_track(units), track])
    sound = [fmp4.Sample(p, opus_codec.samples(p), True) for p in packets]
    runs = [fmp4.Run(1, 0, [s for _, g in gops(units) for s in g]), fmp4.Run(2, 0, sound)]
    got = decoded(out + fmp4.fragment(1, runs))
    sounds = [f for f in got if isinstance(f, av.AudioFrame)]
    assert len([f for f in got if isinstance(f, av.VideoFrame)]) == len(units)
    assert len(sounds) == len(packets)
    assert {f.sample_rate for f in sounds} == {48_000}
    assert np.abs(np.concatenate([f.to_ndarray()[0] for f in sounds[5:]])).max() > 0.1


@pytest.mark.parametrize(
    ("toc", "expected"),
    [
        (bytes([0x00]), 480),  # SILK 10 ms, one frame
        (bytes([0x09]), 1920),  # SILK 20 ms (config 1), two frames (code 1)
        (bytes([0x78]), 960),  # hybrid fullband 20 ms (config 15), one frame
        (bytes([0xFC]), 960),  # CELT 20 ms (config 31), one frame
        (bytes([0xE3, 0x03]), 360),  # CELT 2.5 ms (config 28), three frames (code 3)
        (bytes([0xFB]), 0),  # code 3 without its count byte
        (b"", 0),
    ],
)
def test_opus_packet_durations(toc: bytes, expected: int) -> None:
    assert opus_codec.samples(toc) == expected


def encode_hevc(frames: int) -> list[bytes]:
    """H.265 access units of a 320x240 clip (Annex-B), a keyframe every 10 frames."""
    params = "keyint=10:min-keyint=10:bframes=0:repeat-headers=1:log-level=error"
    return encoded("libx265", {"preset": "ultrafast", "x265-params": params}, frames)


def test_hevc_goes_in_as_hvc1_and_decodes_frame_for_frame() -> None:
    units = encode_hevc(30)
    nals = {nal[0] >> 1 & 0x3F: nal for nal in h264.iter_nals(units[0])}
    track = fmp4.HevcTrack(nals[h265.NAL_VPS], nals[h265.NAL_SPS], nals[h265.NAL_PPS], 320, 240)
    info = track.info
    assert (info.profile_idc, info.chroma_format_idc, info.bit_depth_luma) == (1, 1, 8)
    # Main profile (compatible with Main and Main 10), main tier, progressive frame-only
    # (x265 leaves the non-packed flag unset: 0x90, where many cameras say 0xB0).
    assert track.codecs == f"hvc1.1.6.L{info.level_idc}.90"
    out = fmp4.init_segment([track])
    for sequence, start in enumerate(range(0, len(units), 10), 1):
        group = units[start : start + 10]
        samples = [
            fmp4.Sample(fmp4.avcc_sample(u, hevc=True), TICKS, i == 0) for i, u in enumerate(group)
        ]
        out += fmp4.fragment(sequence, [fmp4.Run(1, start * TICKS, samples)])
    container = av.open(io.BytesIO(out), format="mp4")
    assert isinstance(container, av.container.InputContainer)
    with container:
        assert container.streams.video[0].codec_context.name == "hevc"
        frames = list(container.decode(video=0))
    assert len(frames) == len(units) == 30
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    times = [float((f.pts or 0) * (f.time_base or 0)) for f in frames]
    assert times == pytest.approx([i / FPS for i in range(30)], abs=1e-3)
    assert b"hvcC" in out and b"hvc1" in out[:64]

"""Fragmented MP4 (ISO/IEC 14496-12 and -15): an init segment, then fragments of samples.

MSE over WebSocket, LL-HLS and recordings all take fMP4, made once per stream from the
access units as they are: nothing is decoded. An H.264 or H.265 unit (Annex-B) becomes a
sample of length-prefixed NAL units; its parameter sets describe the track in an `avcC`
box (H.264) or an `hvcC` box (H.265, as `hvc1`). AAC
frames go in as they are, described by their AudioSpecificConfig (`esds`); so do Opus
packets (`dOps`, "Encapsulation of Opus in ISO Base Media File Format"). Each fragment
(`moof` + `mdat`) carries each track's own decode time, so a client may start at any
fragment that begins with a keyframe.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from media_server.codecs import h264, h265

#: Sample flags (14496-12 8.8.3.1): a sync sample, and one that depends on others.
KEY_FLAGS = 0x02000000
DELTA_FLAGS = 0x01010000
#: NAL units kept out of samples: access unit delimiters mean nothing in MP4.
_DROPPED = {h264.NAL_AUD}
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(frozen=True, slots=True)
class Sample:
    """One access unit in a fragment: its bytes as MP4 wants them and its timing."""

    data: bytes  # length-prefixed NAL units (avcc_sample)
    duration: int  # in the track's timescale
    keyframe: bool
    composition_offset: int = 0  # presentation minus decode time (B-frames)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags), *payload)


def avcc_sample(annexb: bytes, hevc: bool = False) -> bytes:
    """An Annex-B access unit as an MP4 sample: each NAL unit behind its 4-byte length
    (access unit delimiters left out: they mean nothing in MP4)."""
    return b"".join(
        struct.pack(">I", len(nal)) + nal
        for nal in h264.iter_nals(annexb)
        if nal and (nal[0] >> 1 & 0x3F != h265.NAL_AUD if hevc else nal[0] & 0x1F not in _DROPPED)
    )


def _parameter_sets(
    keyframe: bytes, header: int, kind_of: Callable[[int], int], *kinds: int
) -> tuple[bytes | None, ...]:
    """The NAL units of these kinds in a keyframe (the last of each), None where absent:
    units longer than their `header` bytes, whose type `kind_of` reads from the first."""
    found = {kind_of(nal[0]): nal for nal in h264.iter_nals(keyframe) if len(nal) > header}
    return tuple(found.get(kind) for kind in kinds)


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """H.264: its SPS and PPS (NAL units without start codes) and picture size."""

    sps: bytes
    pps: bytes
    width: int
    height: int
    timescale: int = 90_000

    @property
    def codecs(self) -> str:
        """The RFC 6381 `codecs` value MediaSource and HLS playlists name it by."""
        return f"avc1.{self.sps[1]:02X}{self.sps[2]:02X}{self.sps[3]:02X}"

    @classmethod
    def of(cls, keyframe: bytes) -> VideoTrack | None:
        """The track a keyframe (Annex-B, parameter sets in front) describes: its SPS and
        PPS, and the picture size its SPS gives; None without both, or an SPS that does
        not parse."""
        sps, pps = _parameter_sets(
            keyframe, 0, lambda head: head & 0x1F, h264.NAL_SPS, h264.NAL_PPS
        )
        if sps is None or pps is None:
            return None
        try:
            info = h264.parse_sps(sps)
        except (IndexError, ValueError):
            return None
        return cls(sps, pps, info.width, info.height)


@dataclass(frozen=True, slots=True)
class HevcTrack:
    """H.265: its VPS, SPS and PPS (NAL units without start codes), as `hvc1`."""

    vps: bytes
    sps: bytes
    pps: bytes
    width: int
    height: int
    timescale: int = 90_000

    @property
    def info(self) -> h265.SpsInfo:
        return h265.parse_sps(self.sps)

    @classmethod
    def of(cls, keyframe: bytes) -> HevcTrack | None:
        """The track a keyframe (Annex-B, parameter sets in front) describes; None without
        its VPS, SPS and PPS, or an SPS that does not parse."""
        kinds = (h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS)
        vps, sps, pps = _parameter_sets(keyframe, 2, lambda head: (head >> 1) & 0x3F, *kinds)
        if vps is None or sps is None or pps is None:
            return None
        try:
            info = h265.parse_sps(sps)
        except (IndexError, ValueError):
            return None
        return cls(vps, sps, pps, info.width, info.height)

    @property
    def codecs(self) -> str:
        return self.info.codecs


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """AAC: its AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), rate and channels."""

    config: bytes
    sample_rate: int
    channels: int

    @property
    def timescale(self) -> int:
        return self.sample_rate

    @property
    def codecs(self) -> str:
        return f"mp4a.40.{self.config[0] >> 3}"  # the audio object type: 2 for AAC-LC


@dataclass(frozen=True, slots=True)
class OpusTrack:
    """Opus, always on a 48 kHz clock whatever rate it was made from."""

    channels: int
    pre_skip: int = 0  # samples the decoder drops at the start (the encoder's delay)

    timescale = 48_000
    sample_rate = 48_000
    codecs = "opus"


Track = VideoTrack | HevcTrack | AudioTrack | OpusTrack
Video = VideoTrack | HevcTrack


@dataclass(frozen=True, slots=True)
class Run:
    """A track's samples in one fragment, from `decode_time` on (its timescale)."""

    track: int  # the track's id: its place in the init segment, from 1
    decode_time: int
    samples: list[Sample]


def _avcc_box(sps: bytes, pps: bytes) -> bytes:
    config = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
    config += struct.pack(">H", len(sps)) + sps + b"\x01" + struct.pack(">H", len(pps)) + pps
    if sps[1] in (100, 110, 122, 144):  # the high profiles: chroma 4:2:0, 8-bit assumed
        config += bytes([0xFC | 1, 0xF8, 0xF8, 0])
    return box(b"avcC", config)


def _hvcc_box(track: HevcTrack) -> bytes:
    """The HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1): the SPS's profile,
    tier and level restated, then the parameter sets, one array of each kind."""
    info = track.info
    config = bytes([1, info.profile_space << 6 | info.tier << 5 | info.profile_idc])
    config += struct.pack(">I", info.compatibility) + info.constraints.to_bytes(6, "big")
    config += bytes([info.level_idc]) + struct.pack(">H", 0xF000)  # no spatial segmentation
    config += bytes(
        [
            0xFC,  # parallelism unknown
            0xFC | info.chroma_format_idc,
            0xF8 | info.bit_depth_luma - 8,
            0xF8 | info.bit_depth_chroma - 8,
        ]
    )
    # no average frame rate; 1 temporal layer, nested; 4-byte NAL unit lengths
    config += struct.pack(">HB", 0, 1 << 3 | 1 << 2 | 3)
    sets = ((h265.NAL_VPS, track.vps), (h265.NAL_SPS, track.sps), (h265.NAL_PPS, track.pps))
    config += bytes([len(sets)])
    for kind, nal in sets:
        config += bytes([0x80 | kind]) + struct.pack(">HH", 1, len(nal)) + nal
    return box(b"hvcC", config)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    """An MPEG-4 descriptor (14496-1 8.3.3), its size in the four-byte form."""
    body = b"".join(payload)
    size = len(body)
    length = [0x80 | size >> shift & 0x7F for shift in (21, 14, 7)] + [size & 0x7F]
    return bytes([tag, *length]) + body


def _esds_box(track_id: int, config: bytes) -> bytes:
    decoder = _descriptor(
        0x04,
        bytes([0x40, 0x15]),  # MPEG-4 audio; an audio stream
        bytes(3),  # bufferSizeDB
        struct.pack(">II", 0, 0),  # max and average bitrate: unknown
        _descriptor(0x05, config),
    )
    es = _descriptor(0x03, struct.pack(">HB", track_id, 0), decoder, _descriptor(0x06, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def _sample_entry(track_id: int, track: Track) -> bytes:
    if isinstance(track, VideoTrack | HevcTrack):
        hevc = isinstance(track, HevcTrack)
        return box(
            b"hvc1" if hevc else b"avc1",
            bytes(6),
            struct.pack(">H", 1),  # data_reference_index
            bytes(16),
            struct.pack(">HHII", track.width, track.height, 0x480000, 0x480000),
            bytes(4),
            struct.pack(">H", 1),  # frame_count
            bytes(32),  # compressorname
            struct.pack(">Hh", 0x18, -1),
            _hvcc_box(track) if isinstance(track, HevcTrack) else _avcc_box(track.sps, track.pps),
        )
    audio = (
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(8),
        struct.pack(">HHHHI", track.channels, 16, 0, 0, track.sample_rate << 16),
    )
    if isinstance(track, OpusTrack):
        # version, output channels, pre-skip, input rate, gain, mapping family 0 (mono or
        # stereo): big-endian, unlike Ogg's OpusHead
        dops = struct.pack(">BBHIhB", 0, track.channels, track.pre_skip, 48_000, 0, 0)
        return box(b"Opus", *audio, box(b"dOps", dops))
    return box(b"mp4a", *audio, _esds_box(track_id, track.config))


def _trak(track_id: int, track: Track) -> bytes:
    video = isinstance(track, VideoTrack | HevcTrack)
    empty = struct.pack(">I", 0)
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(track_id, track)),
        full_box(b"stts", 0, 0, empty),
        full_box(b"stsc", 0, 0, empty),
        full_box(b"stsz", 0, 0, empty, empty),
        full_box(b"stco", 0, 0, empty),
    )
    header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    minf = box(
        b"minf",
        header,
        box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))),
        stbl,
    )
    handler = (b"vide", b"VideoHandler\0") if video else (b"soun", b"SoundHandler\0")
    mdia = box(
        b"mdia",
        full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, 0x55C4, 0)),
        full_box(b"hdlr", 0, 0, bytes(4), handler[0], bytes(12), handler[1]),
        minf,
    )
    width, height = (
        (track.width, track.height) if isinstance(track, VideoTrack | HevcTrack) else (0, 0)
    )
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # enabled, in the movie
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),
        bytes(8),
        struct.pack(">hhH", 0, 0, 0 if video else 0x100),  # layer, group, volume
        bytes(2),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    return box(b"trak", tkhd, mdia)


def init_segment(tracks: list[Track]) -> bytes:
    """The init segment (`ftyp` + `moov`): the tracks, their ids 1, 2, ... in order."""
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", len(tracks) + 1),  # next_track_ID
    )
    traks = [_trak(i, track) for i, track in enumerate(tracks, 1)]
    trexes = [
        full_box(b"trex", 0, 0, struct.pack(">IIIII", i, 1, 0, 0, 0))
        for i in range(1, len(tracks) + 1)
    ]
    moov = box(b"moov", mvhd, *traks, box(b"mvex", *trexes))
    brands = b"isomiso6avc1mp41" + (
        b"hvc1" if any(isinstance(t, HevcTrack) for t in tracks) else b""
    )
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), brands)
    return ftyp + moov


def fragment(sequence: int, runs: list[Run]) -> bytes:
    """One fragment (`moof` + `mdat`): each run's samples, the runs' data in order."""

    def moof(data_start: int) -> bytes:
        trafs, offset = [], data_start
        for run in runs:
            rows = b"".join(
                struct.pack(
                    ">IIIi",
                    s.duration,
                    len(s.data),
                    KEY_FLAGS if s.keyframe else DELTA_FLAGS,
                    s.composition_offset,
                )
                for s in run.samples
            )
            # data offset, and each sample's duration, size, flags and composition offset
            trun = full_box(b"trun", 1, 0xF01, struct.pack(">Ii", len(run.samples), offset), rows)
            trafs.append(
                box(
                    b"traf",
                    full_box(b"tfhd", 0, 0x020000, struct.pack(">I", run.track)),  # base: moof
                    full_box(b"tfdt", 1, 0, struct.pack(">Q", run.decode_time)),
                    trun,
                )
            )
            offset += sum(len(s.data) for s in run.samples)
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), *trafs)

    size = len(moof(0))
    data = (s.data for run in runs for s in run.samples)
    return moof(size + 8) + box(b"mdat", *data)

"""Fragmented MP4 (ISO/IEC 14496-12 and -15): an init segment, then fragments of samples.

MSE over WebSocket, LL-HLS and recordings all take fMP4, made once per stream from the
access units as they are: nothing is decoded. An H.264 unit (Annex-B) becomes a sample of
length-prefixed NAL units; its SPS and PPS describe the track in an `avcC` box. Each
fragment (`moof` + `mdat`) carries its own decode time, so a client may start at any
fragment that begins with a keyframe.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from media_server.codecs import h264

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


def avcc_sample(annexb: bytes) -> bytes:
    """An Annex-B access unit as an MP4 sample: each NAL unit behind its 4-byte length."""
    return b"".join(
        struct.pack(">I", len(nal)) + nal
        for nal in h264.iter_nals(annexb)
        if nal and nal[0] & 0x1F not in _DROPPED
    )


def codecs_string(sps: bytes) -> str:
    """The RFC 6381 `codecs` value MediaSource and HLS playlists name the track by."""
    return f"avc1.{sps[1]:02X}{sps[2]:02X}{sps[3]:02X}"


def _avcc_box(sps: bytes, pps: bytes) -> bytes:
    config = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
    config += struct.pack(">H", len(sps)) + sps + b"\x01" + struct.pack(">H", len(pps)) + pps
    if sps[1] in (100, 110, 122, 144):  # the high profiles: chroma 4:2:0, 8-bit assumed
        config += bytes([0xFC | 1, 0xF8, 0xF8, 0])
    return box(b"avcC", config)


def video_init(sps: bytes, pps: bytes, width: int, height: int, timescale: int = 90_000) -> bytes:
    """The init segment (`ftyp` + `moov`) of one H.264 track, id 1. `sps` and `pps` are
    NAL units without start codes."""
    avc1 = box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HHII", width, height, 0x480000, 0x480000),
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),
        _avcc_box(sps, pps),
    )
    empty = struct.pack(">I", 0)
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        full_box(b"stts", 0, 0, empty),
        full_box(b"stsc", 0, 0, empty),
        full_box(b"stsz", 0, 0, empty, empty),
        full_box(b"stco", 0, 0, empty),
    )
    minf = box(
        b"minf",
        full_box(b"vmhd", 0, 1, bytes(8)),
        box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))),
        stbl,
    )
    mdia = box(
        b"mdia",
        full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0)),
        full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0"),
        minf,
    )
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # enabled, in the movie
        struct.pack(">IIIII", 0, 0, 1, 0, 0),
        bytes(8),
        struct.pack(">hhH", 0, 0, 0),
        bytes(2),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),  # next_track_ID
    )
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0))
    moov = box(b"moov", mvhd, box(b"trak", tkhd, mdia), box(b"mvex", trex))
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso6avc1mp41")
    return ftyp + moov


def fragment(sequence: int, decode_time: int, samples: list[Sample]) -> bytes:
    """One fragment (`moof` + `mdat`) of track 1: `samples` from `decode_time` on."""

    def moof(data_offset: int) -> bytes:
        rows = b"".join(
            struct.pack(
                ">IIIi",
                s.duration,
                len(s.data),
                KEY_FLAGS if s.keyframe else DELTA_FLAGS,
                s.composition_offset,
            )
            for s in samples
        )
        # data offset, and each sample's duration, size, flags and composition offset
        trun = full_box(b"trun", 1, 0xF01, struct.pack(">Ii", len(samples), data_offset), rows)
        traf = box(
            b"traf",
            full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1)),  # default-base-is-moof
            full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time)),
            trun,
        )
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), traf)

    size = len(moof(0))
    return moof(size + 8) + box(b"mdat", *(s.data for s in samples))

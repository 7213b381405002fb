"""Reading back what `fmp4` wrote: a file's boxes, and each fragment's track, times and
place, without reading its media (recordings: spans, ranges, repair after a crash).

It reads the layout `fmp4.fragment` makes (a `moof` of one `traf` per run, each with
`tfhd`, `tfdt` version 1 and a `trun` whose rows carry duration, size, flags and
composition offset, then one `mdat`), not every MP4 there is.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from media_server.mp4.fmp4 import KEY_FLAGS

HEADER = struct.Struct(">I4s")


@dataclass(frozen=True, slots=True)
class Box:
    kind: bytes
    offset: int  # where it starts in the file
    size: int  # header included


@dataclass(frozen=True, slots=True)
class Run:
    """One track's samples in a fragment."""

    track: int
    decode_time: int  # in the track's timescale
    duration: int  # the samples' total
    keyframe: bool  # its first sample is one


@dataclass(frozen=True, slots=True)
class FileFragment:
    """A `moof` and its `mdat`, whole: where they are, and what their runs hold."""

    offset: int
    size: int
    runs: tuple[Run, ...]


def boxes(file: BinaryIO, end: int) -> Iterator[Box]:
    """The top-level boxes of a file up to `end` bytes; one cut short ends the walk."""
    at = 0
    while at + HEADER.size <= end:
        file.seek(at)
        size, kind = HEADER.unpack(file.read(HEADER.size))
        if size < HEADER.size or at + size > end:
            return  # cut short (a crash mid-write), or not a box
        yield Box(kind, at, size)
        at += size


def fragments(file: BinaryIO, end: int) -> tuple[bytes, list[FileFragment]]:
    """The file's init segment (`ftyp` and `moov`) and its whole fragments, in order."""
    init = b""
    found: list[FileFragment] = []
    pending: tuple[Box, tuple[Run, ...]] | None = None
    for box in boxes(file, end):
        if box.kind in (b"ftyp", b"moov"):
            file.seek(box.offset)
            init += file.read(box.size)
        elif box.kind == b"moof":
            file.seek(box.offset + HEADER.size)
            pending = (box, _runs(file.read(box.size - HEADER.size)))
        elif box.kind == b"mdat" and pending is not None:
            moof, runs = pending
            found.append(FileFragment(moof.offset, box.offset + box.size - moof.offset, runs))
            pending = None
    return init, found


def whole_size(file: BinaryIO, end: int) -> int:
    """How much of the file is whole: its init and every fragment with its media."""
    init, found = fragments(file, end)
    if found:
        return found[-1].offset + found[-1].size
    return len(init)


def _children(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    at = 0
    while at + HEADER.size <= len(data):
        size, kind = HEADER.unpack_from(data, at)
        if size < HEADER.size or at + size > len(data):
            return
        yield kind, data[at + HEADER.size : at + size]
        at += size


def _runs(moof: bytes) -> tuple[Run, ...]:
    runs = []
    for kind, traf in _children(moof):
        if kind != b"traf":
            continue
        track = decode_time = duration = 0
        keyframe = False
        for child, body in _children(traf):
            if child == b"tfhd":
                (track,) = struct.unpack_from(">I", body, 4)
            elif child == b"tfdt":
                version = body[0]
                (decode_time,) = struct.unpack_from(">Q" if version else ">I", body, 4)
            elif child == b"trun":
                (count,) = struct.unpack_from(">I", body, 4)
                rows = body[12 : 12 + 16 * count]
                durations = [struct.unpack_from(">I", rows, i * 16)[0] for i in range(count)]
                duration = sum(durations)
                keyframe = bool(count) and struct.unpack_from(">I", rows, 8)[0] == KEY_FLAGS
        runs.append(Run(track, decode_time, duration, keyframe))
    return tuple(runs)

"""Streams kept on disk: each recorded stream's fMP4, written as segment files.

A recorder is a reader of the stream's one muxer (egress/muxer.py), as MSE viewers and
the LL-HLS window are, and a consumer of kind `recorder` (it keeps an on-demand camera
open). Nothing is decoded or encoded: the fragments the muxer made of the camera's own
units go to disk as they are, audio included.

A segment is a file of the init segment and the fragments that follow it, from a
keyframe, named by the UTC time of that keyframe (`20261202T140812.345678Z.mp4`) in the
stream's folder, and once closed by its length as well
(`20261202T140812.345678Z_60013ms.mp4`): what a folder holds, and when, is read from the
names alone. A new one starts at the first keyframe `record.segment_duration` seconds
in, at a new init segment (a new picture size), and after `record.gap` seconds without a
picture (a camera outage stays a gap). Names never go back in time (a host clock that
jumps back names the next segment after the last) and never overwrite.

Every file is appended to, one whole fragment at a time: a process killed mid-segment
leaves a file that plays up to its last fragment, which the stream's next recorder
finalizes (cut to its last whole fragment, named with its length) before it writes. The
writes happen on one thread for all recorders; what waits for the disk is bounded per
stream (`record.pending_bytes`), past which fragments are dropped to the next keyframe
(a gap), so a slow or failing disk never holds up the stream or its viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from media_server.config import RecordSettings
from media_server.egress.muxer import Fragment, Muxer, Muxers
from media_server.egress.retention import Kept, to_delete
from media_server.model.media import CLOCK_RATE
from media_server.mp4.fragments import fragments, whole_size
from media_server.streams.consumer import Consumer
from media_server.streams.stream import Stream

log = logging.getLogger(__name__)

#: How a segment's file is named: its first keyframe's UTC time, to the microsecond.
NAME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
SUFFIX = ".mp4"
#: The muxer's video track (its audio is track 2).
VIDEO_TRACK = 1


def segment_name(started: float, seconds: float | None = None) -> str:
    """A segment's file name: its UTC start, and its length once it is closed."""
    stem = datetime.fromtimestamp(started, UTC).strftime(NAME_FORMAT)
    return stem + ("" if seconds is None else f"_{round(seconds * 1000)}ms") + SUFFIX


def parse_name(name: str) -> tuple[float, float | None] | None:
    """(UTC start, length in seconds or None while open) a segment's name gives; None for
    a file that is not a segment."""
    if not name.endswith(SUFFIX):
        return None
    stem, _, length = name[: -len(SUFFIX)].partition("_")
    try:
        start = datetime.strptime(stem, NAME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    if not length:
        return start, None
    if not (length.endswith("ms") and length[:-2].isdigit()):
        return None
    return start, int(length[:-2]) / 1000


def segment_start(name: str) -> float | None:
    """The UTC start a segment's file name gives; None for a file that is not one."""
    parsed = parse_name(name)
    return parsed[0] if parsed else None


def recorded_seconds(file: BinaryIO, end: int) -> float:
    """How long a segment's video runs (its whole fragments), from the file itself."""
    _, found = fragments(file, end)
    video = [run for fragment in found for run in fragment.runs if run.track == VIDEO_TRACK]
    if not video:
        return 0.0
    return (video[-1].decode_time + video[-1].duration - video[0].decode_time) / CLOCK_RATE


def finalize(path: Path) -> Path | None:
    """A segment a crash left open: cut to its last whole fragment and named with its
    length; one with no picture goes. Where it is now (None: gone)."""
    with path.open("r+b") as file:
        size = path.stat().st_size
        whole = whole_size(file, size)
        seconds = recorded_seconds(file, whole)
        if whole < size:
            file.truncate(whole)
    parsed = parse_name(path.name)
    if not seconds or parsed is None:
        path.unlink()
        return None
    return _rename(path, segment_name(parsed[0], seconds))


def _rename(path: Path, name: str) -> Path:
    target = path.with_name(name)
    os.replace(path, target)
    return target


@dataclass(slots=True)
class _Job:
    """One thing for the disk thread: finalize what a crash left in a folder, open a
    segment's file, append to it, or close it (naming it by its length)."""

    recorder: Recorder
    kind: str  # repair, open, write, close
    data: bytes = b""
    path: Path | None = None
    seconds: float | None = None


class DiskWriter:
    """The one thread that writes every recording, and deletes what retention says
    (egress/retention.py) every `record.sweep_interval` seconds: the event loop never
    waits on a disk. It keeps an index of the segments on disk (read once, then kept as
    it writes and deletes), so a sweep lists nothing."""

    def __init__(self, settings: RecordSettings) -> None:
        self._settings = settings
        self._root = settings.directory
        self._index: dict[Path, Kept] | None = None
        #: Segments deleted, by reason (age, stream, total, disk); read by the metrics.
        self.deleted: Counter[str] = Counter()
        #: The disk's free bytes at the last sweep (None before the first).
        self.free_bytes: int | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recorder-disk", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        files: dict[Recorder, tuple[int, Path]] = {}
        sweep_at = time.monotonic()
        while True:
            if time.monotonic() >= sweep_at:
                self._sweep({path for _, path in files.values()})
                sweep_at = time.monotonic() + self._settings.sweep_interval
            try:
                job = self._jobs.get(timeout=max(0.0, sweep_at - time.monotonic()))
            except queue.Empty:
                continue
            if job is None:
                break
            self._do(job, files)
        for recorder in list(files):
            self._close(files, recorder, None)

    def _do(self, job: _Job, files: dict[Recorder, tuple[int, Path]]) -> None:
        recorder = job.recorder
        wrote = 0
        try:
            if job.kind == "repair":
                assert job.path is not None
                for path in _repair(job.path):
                    self._remember(path)
            elif job.kind == "open":
                assert job.path is not None
                self._close(files, recorder, None)
                files[recorder] = _create(job.path)
            elif job.kind == "write":
                if recorder in files:
                    _write_all(files[recorder][0], job.data)
                    wrote = len(job.data)
            else:
                self._close(files, recorder, job.seconds)
        except OSError as exc:  # a full or failing disk: this segment ends here
            self._close(files, recorder, None)
            recorder.failed(f"{type(exc).__name__}: {exc.strerror or exc}")
        finally:
            recorder.written(len(job.data), wrote)

    def _close(
        self, files: dict[Recorder, tuple[int, Path]], recorder: Recorder, seconds: float | None
    ) -> None:
        """Close a recorder's open segment, naming it by its length where it is known
        (else read from the file)."""
        opened = files.pop(recorder, None)
        if opened is None:
            return
        fd, path = opened
        with contextlib.suppress(OSError):
            os.close(fd)
        final: Path | None = path
        with contextlib.suppress(OSError):
            start = parse_name(path.name)
            if seconds is None or start is None:
                final = finalize(path)
            else:
                final = _rename(path, segment_name(start[0], seconds))
        if final is not None:
            self._remember(final)

    # -- retention ---------------------------------------------------------------------------
    def _remember(self, path: Path) -> None:
        if self._index is None:
            return  # the first sweep reads the disk
        kept = _kept(path)
        if kept is not None:
            self._index[path] = kept

    def _sweep(self, writing: set[Path]) -> None:
        if self._index is None:
            self._index = {}
            if self._root.is_dir():
                for folder in self._root.iterdir():
                    for path in folder.iterdir() if folder.is_dir() else ():
                        self._remember(path)
        try:
            free = shutil.disk_usage(self._root if self._root.is_dir() else ".").free
        except OSError:
            free = None
        kept = [k for k in self._index.values() if k.path not in writing]
        going = to_delete(kept, time.time(), free if free is not None else 2**62, self._settings)
        for segment, reason in going:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            del self._index[segment.path]
            self.deleted[reason] += 1
        if going:
            reasons = Counter(reason for _, reason in going)
            log.info("recordings: %d segment(s) deleted (%s)", len(going), dict(reasons))
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(self._root).free
        self.free_bytes = free


def _kept(path: Path) -> Kept | None:
    parsed = parse_name(path.name)
    if parsed is None:
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return None
    start, seconds = parsed
    return Kept(path, path.parent.name, start, start + (seconds or 0.0), size)


def _repair(folder: Path) -> list[Path]:
    """Finalize every segment of a folder left open (by a crash): before a recorder of
    the stream opens one of its own. Where they are now."""
    if not folder.is_dir():
        return []
    done = []
    for path in sorted(folder.iterdir()):
        parsed = parse_name(path.name)
        if parsed is not None and parsed[1] is None and (final := finalize(path)) is not None:
            done.append(final)
    return done


def _create(path: Path) -> tuple[int, Path]:
    """A new segment's file, never an existing one: a name taken (a host clock that
    jumped back to a start already used) moves on by a microsecond."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
    parsed = parse_name(path.name)
    start = parsed[0] if parsed else 0.0
    for attempt in range(1000):
        candidate = path if attempt == 0 else path.with_name(segment_name(start + attempt * 1e-6))
        try:
            return os.open(candidate, flags, 0o644), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for {path.name}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass(slots=True)
class _Segment:
    started: float  # the UTC time of its first keyframe
    start: int  # ...and its time on the muxer's clock (90 kHz), which its length counts
    init: object  # the muxer's init segment it follows (a new one starts a new segment)
    end: int = 0  # the end of its last picture on the muxer's clock

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / CLOCK_RATE


class Recorder:
    """One stream's recording: a reader of its muxer that writes segments."""

    def __init__(
        self, stream: Stream, muxers: Muxers, writer: DiskWriter, settings: RecordSettings
    ) -> None:
        self.stream = stream
        self._muxers = muxers
        self._writer = writer
        self._settings = settings
        self._folder = settings.directory / stream.id
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._muxer: Muxer | None = None
        self._segment: _Segment | None = None
        self._last_picture: float | None = None  # when the last picture was made (UTC)
        self._last_start = 0.0  # the last segment's start: names never go back
        self._pending = 0  # bytes queued for the disk
        self._lock = threading.Lock()  # `_pending` is changed by both threads
        self._dropping = False
        self.closed = False
        self.segments = 0
        self.bytes_written = 0
        self.write_errors = 0
        self.error: str | None = None  # the last write error, until a segment opens again

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._submit("repair", path=self._folder)  # what a crash left, before anything new
        self._consumer = self.stream.attach("recorder")
        self._attach()

    @property
    def live(self) -> tuple[float, float] | None:
        """The UTC start and end of the segment being written, if any."""
        segment = self._segment
        return (segment.started, segment.started + segment.seconds) if segment else None

    def _attach(self) -> None:
        self._muxer = self._muxers.acquire(self.stream)  # the stream as it is: hvc1 too
        self._muxer.add(self)
        for fragment in self._muxer.gop():  # from the cached keyframe on
            self.on_fragment(fragment)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._end_segment()
        if self._muxer is not None:
            self._muxer.remove(self)
            self._muxers.release(self._muxer)
            self._muxer = None
        if self._consumer is not None:
            self._consumer.close()

    # -- Reader -----------------------------------------------------------------------------
    def on_fragment(self, fragment: Fragment) -> None:
        if fragment.video:
            last, self._last_picture = self._last_picture, fragment.made
            if last is not None and fragment.made - last > self._settings.gap:
                self._end_segment()  # an outage: a gap, not one segment across it
            if fragment.keyframe and self._cut_at(fragment):
                self._new_segment(fragment)
        if self._segment is None or self._dropping:
            return
        if fragment.video:
            self._segment.end = fragment.start + fragment.duration
        if self._pending > self._settings.pending_bytes:
            self._end_segment()  # the disk is behind: drop to the next keyframe
            self._dropping = True
            log.warning(
                "stream %s: the disk is behind, recording resumes at a keyframe",
                self.stream.id,
                extra={"stream_id": self.stream.id},
            )
            return
        self._submit("write", fragment.data)

    def on_end(self) -> None:
        """The muxer ended (the stream's codec changed, or the stream went away)."""
        self._end_segment()
        if self._muxer is not None:
            self._muxers.release(self._muxer)
            self._muxer = None
        if not self.closed and self._loop is not None:
            self._loop.call_soon(self._reattach)

    def _reattach(self) -> None:
        if not self.closed and self._muxer is None:
            self._attach()

    # -- segments -----------------------------------------------------------------------------
    def _cut_at(self, keyframe: Fragment) -> bool:
        segment = self._segment
        if self._dropping:
            return self._pending <= self._settings.pending_bytes // 2
        return (
            segment is None
            or keyframe.init is not segment.init
            or keyframe.start - segment.start >= self._settings.segment_duration * CLOCK_RATE
        )

    def _new_segment(self, keyframe: Fragment) -> None:
        self._end_segment()
        self._dropping = False
        started = max(keyframe.made, self._last_start + 1e-6)  # never back in time
        self._last_start = started
        self._segment = _Segment(started, keyframe.start, keyframe.init)
        self.segments += 1
        self.error = None
        self._submit("open", path=self._folder / segment_name(started))
        self._submit("write", keyframe.init.segment(audio=True))

    def _end_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            self._submit("close", seconds=segment.seconds if segment.end else None)

    def _submit(
        self, kind: str, data: bytes = b"", path: Path | None = None, seconds: float | None = None
    ) -> None:
        with self._lock:
            self._pending += len(data)
        self._writer.submit(_Job(self, kind, data, path, seconds))

    # -- told by the disk thread ------------------------------------------------------------------
    def written(self, queued: int, wrote: int) -> None:
        """A job of `queued` bytes is done, `wrote` of them on disk (none after a failure)."""
        with self._lock:
            self._pending -= queued
        self.bytes_written += wrote

    def failed(self, error: str) -> None:
        self.write_errors += 1
        self.error = error
        log.error(
            "stream %s: recording failed (%s); it starts again at a keyframe",
            self.stream.id,
            error,
            extra={"stream_id": self.stream.id},
        )
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the process ends
                self._loop.call_soon_threadsafe(self._end_segment)


class Recordings:
    """The recorder of every stream that records; started with its stream, ended with it."""

    def __init__(self, settings: RecordSettings, muxers: Muxers) -> None:
        self._settings = settings
        self._muxers = muxers
        self._writer: DiskWriter | None = None
        self._recorders: dict[str, Recorder] = {}

    def records(self, stream: Stream) -> bool:
        """Whether a stream is recorded here: as its registration says, else the default.
        (A cluster's streams are not recorded yet.)"""
        wanted = stream.registration.record
        if wanted is None:
            wanted = self._settings.default
        return wanted and not stream.clustered

    def get(self, stream_id: str) -> Recorder | None:
        return self._recorders.get(stream_id)

    def all(self) -> list[Recorder]:
        return list(self._recorders.values())

    @property
    def deleted(self) -> Counter[str]:
        """Segments retention deleted, by reason."""
        return Counter(self._writer.deleted) if self._writer is not None else Counter()

    @property
    def free_bytes(self) -> int | None:
        """The recordings disk's free bytes at the last sweep."""
        return self._writer.free_bytes if self._writer is not None else None

    def on_added(self, stream: Stream) -> None:
        if not self.records(stream):
            return
        if self._writer is None:
            self._writer = DiskWriter(self._settings)
        old = self._recorders.pop(stream.id, None)
        if old is not None:
            old.close()
        recorder = Recorder(stream, self._muxers, self._writer, self._settings)
        self._recorders[stream.id] = recorder
        recorder.start()

    def on_removed(self, stream: Stream) -> None:
        recorder = self._recorders.get(stream.id)
        if recorder is not None and recorder.stream is stream:
            del self._recorders[stream.id]
            recorder.close()

    def close(self) -> None:
        for recorder in self._recorders.values():
            recorder.close()
        self._recorders.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

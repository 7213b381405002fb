"""One thread per stream: open the source, normalise its packets, hand them to the loop.

The thread never blocks on the event loop: it posts with `call_soon_threadsafe` and, when
the loop falls behind by more than `backlog` items, drops media until the next keyframe
instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import av

from media_server.codecs import h264, h265
from media_server.ingest.audio import AudioPath
from media_server.ingest.backoff import Backoff
from media_server.ingest.reactor import Entry
from media_server.ingest.source import PermanentSourceError, Polled, Source, SourceError
from media_server.ingest.timeline import Timeline
from media_server.ingest.transcoder import ShareOnDemand, Transcoder
from media_server.model.media import (
    TIME_BASE,
    AccessUnit,
    EffectiveMode,
    SourceInfo,
    SourcePacket,
    StreamState,
)
from media_server.model.registration import Mode, ReconnectPolicy
from media_server.procstat import name_thread

log = logging.getLogger(__name__)


class IngestSink(Protocol):
    """The hub side of a stream; every method is called on the event loop."""

    def on_state(self, state: StreamState, error: str | None) -> None: ...

    def on_info(self, info: SourceInfo, mode: EffectiveMode) -> None: ...

    def on_unit(self, unit: AccessUnit) -> None: ...

    def on_frame(self, frame: av.VideoFrame) -> None: ...

    def on_audio(self, unit: AccessUnit) -> None: ...

    def on_source_audio(self, unit: AccessUnit) -> None:
        """The camera's audio as it came, where viewers get it transcoded."""

    @property
    def wants_source_audio(self) -> bool: ...

    def on_transcoded_unit(self, unit: AccessUnit) -> None:
        """An H.265 stream's H.264 transcode, for viewers that take only H.264."""

    @property
    def wants_transcode(self) -> bool:
        """Whether any viewer of an H.265 stream passed through takes its H.264 transcode."""
        ...


def choose_mode(requested: Mode, info: SourceInfo) -> EffectiveMode:
    """Passthrough when browsers can decode the source untouched, else transcode. H.265
    passes through; its viewers that take only H.264 share a transcode."""
    passable = ("h264", "hevc")
    if requested == "passthrough":
        if info.codec not in passable:
            raise PermanentSourceError(
                f"passthrough needs H.264 or H.265, the source sends {info.codec}"
            )
        return "passthrough"
    if requested == "transcode":
        return "transcode"
    return "passthrough" if info.codec in passable and info.browser_safe else "transcode"


class IngestCounters:
    """Written by the ingest thread only, read by anyone (plain ints are safe under the GIL)."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.frames_decoded = 0
        self.frames_encoded = 0
        self.audio_packets = 0
        self.audio_bytes = 0
        self.audio_frames_encoded = 0
        self.decode_errors = 0
        self.dropped_backlog = 0
        self.reconnects = 0
        self.fps: float | None = None
        self.bitrate: int | None = None  # ingress bits/s of the video, same window
        self._window = (time.monotonic(), 0, 0)  # (since, video frames, bytes at since)

    def frame(self) -> None:
        """Count a video frame (after its bytes); `fps` and `bitrate` are the rates over
        the last window of 2 s or more, so reading them changes nothing."""
        since, frames, bytes_then = self._window
        now = time.monotonic()
        if now - since >= 2.0:
            self.fps = round((frames + 1) / (now - since), 2)
            self.bitrate = round((self.bytes - bytes_then) * 8 / (now - since))
            self._window = (now, 0, self.bytes)
        else:
            self._window = (since, frames + 1, bytes_then)

    def restart_window(self) -> None:
        """A new session: its rates count from now."""
        self._window = (time.monotonic(), 0, self.bytes)


class IngestWorker:
    def __init__(
        self,
        name: str,
        make_source: Callable[[threading.Event], Source],
        requested_mode: Mode,
        sink: IngestSink,
        loop: asyncio.AbstractEventLoop,
        policy: ReconnectPolicy,
        backlog: int,
        bitrate: int,
        shared: bool = True,
        publish_frames: bool = True,
        nice: int = 0,
    ) -> None:
        self.name = name
        self._nice = nice
        self._make_source = make_source
        self._requested = requested_mode
        self._sink = sink
        self._loop = loop
        self._policy = policy
        #: The H.264 encodes' bits/s: a transcoded stream's (where `shared`; else aiortc
        #: encodes per viewer), and an H.265 stream's transcode made on demand.
        self._bitrate = bitrate
        self._shared_bitrate = bitrate if shared else None
        self._publish_frames = publish_frames or not shared
        self._backlog = backlog
        self._stop = threading.Event()
        #: Items posted, counted by whichever ingest thread posts (a stream read by the
        #: shared thread may post from it and from its own): `next` is atomic.
        self._posts = itertools.count(1)
        self._posted = 0
        self._delivered = 0  # written by the loop
        self.counters = IngestCounters()
        #: Packets the shared reading thread leaves to this stream's own (decoding);
        #: None wakes it to look at why (the session ended, or stop).
        self._handoff: queue.SimpleQueue[SourcePacket | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"ingest-{name}", daemon=True)

    # -- control (event loop side) -------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._handoff.put(None)  # wakes a thread waiting on the shared reader's session

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- thread side ----------------------------------------------------------------------
    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        def deliver() -> None:
            self._delivered += 1
            if not self._stop.is_set():  # a worker told to stop has nothing more to say
                fn(*args)

        self._posted = next(self._posts)
        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: the process is going away
            self._stop.set()

    def _congested(self) -> bool:
        return self._posted - self._delivered > self._backlog

    def _run(self) -> None:
        backoff = Backoff(self._policy)
        timeline = Timeline()
        error: str | None = None
        last_error: str | None = None
        first = True
        name_thread(f"ingest-{self.name}")
        if self._nice:
            # Linux schedules threads, not processes: with a hundred ingest threads the
            # event loop's thread would get a hundredth of the process's turn whenever
            # the cores are busy. A lower priority for ingest keeps the loop responsive.
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
            except OSError as exc:  # a sandbox may refuse it: run at the usual priority
                log.warning("stream %s: ingest niceness not set (%s)", self.name, exc)
        self._post(self._sink.on_state, StreamState.STARTING, None)
        while not self._stop.is_set():
            if not first:
                self.counters.reconnects += 1
            source = self._make_source(self._stop)
            try:
                info = source.open()
                self._pump(source, info, timeline, backoff)
                error = "source ended"
            except PermanentSourceError as exc:
                error = str(exc)
                backoff.trip()
            except SourceError as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug must not end the stream for good
                log.exception("stream %s: ingest error", self.name)
                error = f"internal error: {type(exc).__name__}"
            first = False
            if self._stop.is_set():
                source.close()
                break
            timeline.restart()
            delay = backoff.failure()
            # Say so before closing: closing a hung session can itself take a timeout.
            state = StreamState.FAILED if backoff.open else StreamState.RECONNECTING
            self._post(self._sink.on_state, state, error)
            source.close()
            # A camera that stays down must not flood the log: the first failures and any
            # change of reason at INFO, the rest at DEBUG (states and metrics still count).
            level = logging.INFO if backoff.attempts <= 3 or error != last_error else logging.DEBUG
            last_error = error
            log.log(
                level,
                "stream %s: %s; attempt %d failed, next in %.1f s",
                self.name,
                error,
                backoff.attempts,
                delay,
            )
            if self._stop.wait(delay):
                break

    def _pump(self, source: Source, info: SourceInfo, timeline: Timeline, backoff: Backoff) -> None:
        """Read until the source ends or stop is asked; raise SourceError on failure."""
        self.counters.restart_window()
        pump = _Pump(self, info, timeline, backoff)
        polled = source.polled()
        if polled is None:
            pump.run(source)
        else:
            self._on_reactor(pump, polled)

    def _on_reactor(self, pump: _Pump, polled: Polled) -> None:
        """The session is read by the shared thread (ingest/reactor.py), which handles
        what is light (passthrough) as it comes; what is not (decoding) comes back to
        this thread through a bounded queue. Returns when stop is asked; raises what
        ended the session."""
        handoff = self._handoff
        while not handoff.empty():  # what an earlier session left
            handoff.get_nowait()
        ended: list[BaseException] = []

        def deliver(packets: list[SourcePacket]) -> None:
            for packet in packets:
                if pump.light(packet):
                    pump.take(packet)
                elif handoff.qsize() < self._backlog:
                    handoff.put(packet)
                else:  # this thread fell behind: never queue without bound
                    self.counters.dropped_backlog += 1
                    pump.need_keyframe()

        def end(exc: BaseException) -> None:
            ended.append(exc)
            handoff.put(None)

        entry = Entry(polled, deliver, end)
        polled.reactor.add(entry)
        try:
            while not self._stop.is_set() and (packet := handoff.get()) is not None:
                pump.take(packet)
        finally:
            polled.reactor.remove(entry)  # its sockets are ours again, to close
        if ended:
            raise ended[0]

    def _audio(self, audio: AudioPath, packet: SourcePacket, timeline: Timeline) -> None:
        counters = self.counters
        counters.audio_packets += 1
        counters.audio_bytes += len(packet.data)
        pts90 = timeline.follow(packet.pts, float(packet.time_base))
        if pts90 is None or self._congested():
            return
        if audio.info.mode == "transcode" and self._sink.wants_source_audio:
            self._post(self._sink.on_source_audio, audio.as_sent(packet.data, pts90))
        for unit in audio.push(packet.data, pts90):
            self._post(self._sink.on_audio, unit)
        counters.audio_frames_encoded = audio.frames_encoded

    @staticmethod
    def _with_sps(info: SourceInfo, params: bytes, reordered: bool) -> SourceInfo:
        """What new parameter sets say of the stream (they become its extradata)."""
        codec = _CODECS.get(info.codec)
        sps = codec.find_sps(params) if codec is not None else None
        if codec is None or sps is None:
            return info
        return replace(
            info,
            width=sps.width,
            height=sps.height,
            fps=sps.fps or info.fps,
            profile=sps.profile_name,
            extradata=params,
            browser_safe=codec.browser_safe(sps) and not reordered,
        )


class _Pump:
    """One source session's packets on their way out: keyframes and parameter sets, the
    mode once the first keyframe shows what the source is, then passthrough units, or
    decoded frames and the shared encoder's units."""

    def __init__(
        self, worker: IngestWorker, info: SourceInfo, timeline: Timeline, backoff: Backoff
    ) -> None:
        self._worker = worker
        self._sink = worker._sink
        self._counters = worker.counters
        self._info = info
        self._timeline = timeline
        self._backoff = backoff
        self._codec = _CODECS.get(info.codec)
        self._params = self._codec.parameter_sets(info.extradata) if self._codec else b""
        self._mode: EffectiveMode | None = None
        self._transcoder = Transcoder(info.codec, worker._shared_bitrate)
        hevc = info.codec == "hevc"
        self._shared = ShareOnDemand(info.codec, worker._bitrate) if hevc else None
        #: Whether video is handled on the worker's own thread (decoding) from now on.
        self._decoding = False
        self._need_key = True
        self._reordered = False
        audio = info.audio
        self._audio = AudioPath(audio) if audio and audio.mode != "off" else None
        self._last_src_pts: int | None = None

    def run(self, source: Source) -> None:
        self._decoding = True  # every packet is this thread's
        while not self._worker._stop.is_set():
            read = source.read()
            if read is None:
                return
            self.take(read)

    def take(self, read: SourcePacket) -> None:
        if read.track == "audio":
            if self._audio is not None and self._mode is not None:  # video sets the clock
                self._worker._audio(self._audio, read, self._timeline)
            return
        self._video(read)

    def light(self, read: SourcePacket) -> bool:
        """Whether handling `read` is cheap (nothing decoded or encoded): what a shared
        reading thread may do itself. Each track stays with one thread for the session
        (video moves at most once, for good, when it turns out to need decoding), so
        no track's state is ever handled by two threads at once."""
        if read.track == "audio":
            return self._audio is None or self._audio.info.mode == "passthrough"
        if not self._decoding and (
            self._mode == "transcode" or (self._shared is not None and self._sink.wants_transcode)
        ):
            self._decoding = True
        return not self._decoding

    def need_keyframe(self) -> None:
        self._need_key = True

    def _video(self, packet: SourcePacket) -> None:
        counters = self._counters
        data, key = self._keyframe(packet.data, packet.keyframe)
        if self._mode is None and not self._start(key):
            return  # nothing decodes before the first keyframe
        self._check_order(packet.pts)
        time_base = float(packet.time_base)
        pts = self._timeline.map(packet.pts, time_base)
        counters.frame()
        if self._worker._congested():
            counters.dropped_backlog += 1
            self._need_key = True
            return
        if self._need_key and not key:
            return
        self._need_key = False
        unit = AccessUnit(data, pts, TIME_BASE, key, packet.capture)
        if self._mode == "passthrough":
            self._worker._post(self._sink.on_unit, unit)
            if self._shared is not None:
                self._share(self._shared, unit)
        else:
            self._transcode(unit)

    def _keyframe(self, data: bytes, key: bool) -> tuple[bytes, bool]:
        """Count the packet; for H.264 and H.265, whether it is a keyframe (IDR; IRAP),
        with the parameter sets put in front of one that lacks them, and a change of
        them noted."""
        counters = self._counters
        counters.packets += 1
        counters.bytes += len(data)
        codec = self._codec
        if codec is not None:
            types = codec.nal_types(data)
            key = not types.isdisjoint(codec.keys)
            if key and codec.sps in types:
                fresh = codec.parameter_sets(data)
                if fresh != self._params:
                    self._params = fresh
                    self._info = IngestWorker._with_sps(self._info, fresh, self._reordered)
                    if self._mode is not None:
                        self._worker._post(self._sink.on_info, self._info, self._mode)
            elif key and self._params:
                data = self._params + data
        if key:
            counters.keyframes += 1
        return data, key

    def _start(self, key: bool) -> bool:
        """At the first keyframe: choose the mode, and say the stream is live."""
        if not key:
            return False
        self._mode = choose_mode(self._worker._requested, self._info)
        self._worker._post(self._sink.on_info, self._info, self._mode)
        self._worker._post(self._sink.on_state, StreamState.LIVE, None)
        self._backoff.success()
        return True

    def _check_order(self, src_pts: int | None) -> None:
        """Presentation order that differs from decode order means B-frames, which
        browsers cannot take as they are: in auto mode, decode from the next keyframe."""
        last = self._last_src_pts
        if src_pts is not None and last is not None and src_pts < last:
            self._reordered = True
            if self._mode == "passthrough" and self._worker._requested == "auto":
                self._info = replace(self._info, browser_safe=False)
                self._mode = "transcode"
                self._need_key = True
                self._worker._post(self._sink.on_info, self._info, self._mode)
        if src_pts is not None:
            self._last_src_pts = src_pts

    def _transcode(self, unit: AccessUnit) -> None:
        """Decode; hand frames to viewers whose own encoder takes them, and encode them
        once for the rest."""
        counters, worker = self._counters, self._worker
        try:
            frames = self._transcoder.decode(unit)
        except av.FFmpegError:
            counters.decode_errors += 1
            self._need_key = True
            return
        for frame in frames:
            counters.frames_decoded += 1
            if worker._publish_frames:
                worker._post(self._sink.on_frame, frame)
            for encoded in self._transcoder.encode(frame, self._fps):
                counters.frames_encoded += 1
                worker._post(self._sink.on_unit, encoded)

    def _share(self, shared: ShareOnDemand, unit: AccessUnit) -> None:
        """An H.265 stream passed through: its H.264 viewers' one transcode, made on this
        thread while any of them watch (`light` moved video here when the first came)."""
        counters, worker = self._counters, self._worker
        try:
            frames = shared.take(unit, self._decoding and self._sink.wants_transcode)
        except av.FFmpegError:
            counters.decode_errors += 1
            return
        for frame in frames:
            counters.frames_decoded += 1
            for encoded in shared.encode(frame, self._fps):
                counters.frames_encoded += 1
                worker._post(self._sink.on_transcoded_unit, encoded)

    @property
    def _fps(self) -> float:
        return self._info.fps or self._counters.fps or 30.0


class _Sps(Protocol):
    """What either codec's SPS says that the stream's info restates."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def fps(self) -> float | None: ...

    @property
    def profile_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _Codec:
    """What the pump needs to know of a codec's NAL units, H.264's or H.265's."""

    nal_types: Callable[[bytes], set[int]]
    parameter_sets: Callable[[bytes], bytes]
    keys: range | tuple[int, ...]
    sps: int
    find_sps: Callable[[bytes], _Sps | None]
    browser_safe: Callable[[Any], bool]


_CODECS = {
    "h264": _Codec(
        h264.nal_types,
        h264.parameter_sets,
        (h264.NAL_IDR,),
        h264.NAL_SPS,
        h264.find_sps,
        h264.browser_safe,
    ),
    "hevc": _Codec(
        h265.nal_types,
        h265.parameter_sets,
        h265.NAL_IRAP,
        h265.NAL_SPS,
        h265.find_sps,
        h265.browser_safe,
    ),
}

"""One fragmented-MP4 muxer per stream: what its MSE viewers and HLS players all share.

It reads the stream like any consumer (video units from the cached keyframe on, and the
audio fMP4 takes: `mp4.audio`) and makes each picture a fragment of its own the moment it
comes: the interval before it stands in for its duration, and the next fragment's decode
time is exact again, so no picture waits for the next one. The audio that came since the
last picture goes just before it, as a fragment of its own, so a reader that cannot play
it takes the video fragments alone with an init segment of the video track only.

Its clock starts at 0 on the first keyframe and runs on by the stream's own intervals; a
jump (a reconnect, a camera's clock reset) moves on by one picture instead, so readers see
one timeline however the source comes and goes. A new picture size or new parameter sets
make a new init segment, which readers send before the keyframe that needs it.

Memory: the fragments since the last keyframe, which a new reader starts from, within the
hub's GOP cache bounds (`hub.gop_cache_units`, `hub.gop_cache_bytes`), and at most
`MAX_PENDING_AUDIO` audio frames waiting for the next picture. What readers keep is theirs
to bound (`egress.mse`, `egress.hls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from media_server.codecs import opus
from media_server.model.media import CLOCK_RATE, AccessUnit
from media_server.mp4 import fmp4
from media_server.mp4.audio import fmp4_audio
from media_server.streams.consumer import Consumer
from media_server.streams.fanout import StreamEnded, Subscriber
from media_server.streams.stream import Stream

log = logging.getLogger(__name__)

#: A jump in the stream's timestamps larger than this is a new timeline, not a gap.
MAX_INTERVAL = 5 * CLOCK_RATE
#: Audio frames kept for the next picture (a stream whose video stalls sends them alone).
MAX_PENDING_AUDIO = 50
AAC_FRAME = 1024


@dataclass(frozen=True, slots=True)
class Init:
    """An init segment, with and without the audio track, and what MSE names them by."""

    version: int
    video: fmp4.Video
    audio: fmp4.AudioTrack | fmp4.OpusTrack | None
    data: bytes  # video and audio (as `video_only` where there is no audio)
    video_only: bytes

    def codecs(self, audio: bool = True) -> str:
        """The RFC 6381 codecs string of what a reader gets."""
        names = [self.video.codecs]
        if audio and self.audio is not None:
            names.append(self.audio.codecs)
        return ", ".join(names)

    def segment(self, audio: bool = True) -> bytes:
        return self.data if audio else self.video_only


@dataclass(frozen=True, slots=True)
class Fragment:
    """One picture's fragment (`video`), or the audio since the one before."""

    data: bytes
    video: bool
    keyframe: bool  # a video fragment a reader may start at
    start: int  # decode time on the muxer's clock (90 kHz)
    duration: int  # 90 kHz: a picture's interval, or the audio's length
    init: Init  # the init segment it follows
    made: float  # wall-clock time it was made (HLS program date time)


class Reader(Protocol):
    """An MSE viewer or the HLS playlist: takes each fragment as it is made."""

    def on_fragment(self, fragment: Fragment) -> None: ...

    def on_end(self) -> None:
        """The stream went away; nothing more comes."""


class Muxer:
    """`transcoded`: the H.264 transcode of an H.265 stream (`hvc1`, passed through, is for
    readers whose MediaSource plays it)."""

    def __init__(
        self, stream: Stream, gop_units: int, gop_bytes: int, transcoded: bool = False
    ) -> None:
        self.stream = stream
        self._consumer: Consumer = stream.attach("muxer")
        if transcoded:
            self._consumer.take_transcode()
        self._gop_units = gop_units
        self._gop_bytes = gop_bytes
        self.init: Init | None = None
        self._gop: list[Fragment] = []
        self._gop_size = 0
        self._readers: list[Reader] = []
        self._sequence = 0
        self._last_pts: int | None = None  # the last picture's, on the stream's clock
        self._last_start = 0  # ...and on ours
        self._interval = CLOCK_RATE // 30
        self._offset = 0  # our clock minus the stream's (90 kHz), for audio
        self._audio_sub: Subscriber | None = None
        self._audio_as_sent = False
        self._audio_next: int | None = None  # the next audio decode time (its timescale)
        self._pending: list[fmp4.Sample] = []
        self._pending_start = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()  # set once there is an init segment
        self.ended = False

    @property
    def transcoded(self) -> bool:
        return self._consumer.transcoded

    def start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._read_video()))
        # Muxed in one codec (or the transcode of one): a change ends it, and its readers
        # start again on a new muxer.
        self.stream.codec_watchers.add(self._end)

    # -- readers ------------------------------------------------------------------------
    def gop(self) -> list[Fragment]:
        """The fragments since the last keyframe: where a new reader starts."""
        return list(self._gop)

    def add(self, reader: Reader) -> None:
        self._readers.append(reader)
        if self.ended:
            reader.on_end()

    def remove(self, reader: Reader) -> None:
        with contextlib.suppress(ValueError):
            self._readers.remove(reader)

    # -- input --------------------------------------------------------------------------
    async def _read_video(self) -> None:
        sub = self._consumer.video("units")
        try:
            while True:
                item = await sub.get()
                if isinstance(item, AccessUnit):
                    self._on_video(item)
        except StreamEnded:
            pass
        except Exception:
            log.exception("stream %s: the fMP4 muxer failed", self.stream.id)
        finally:
            self._end()

    async def _read_audio(self, sub: Subscriber) -> None:
        with contextlib.suppress(StreamEnded):
            while True:
                item = await sub.get()
                if isinstance(item, AccessUnit):
                    self._on_audio(item)

    def _new_init(self, unit: AccessUnit) -> Init | None:
        """The init segment a keyframe needs, if not the one readers have."""
        hevc = self._consumer.video_codec == "hevc"
        video = fmp4.HevcTrack.of(unit.data) if hevc else fmp4.VideoTrack.of(unit.data)
        old = self.init
        if video is None or (old is not None and old.video == video):
            return None
        self._choose_audio()
        audio: fmp4.AudioTrack | fmp4.OpusTrack | None = None
        source = self.stream.info.audio if self.stream.info else None
        if self._audio_sub is not None and source is not None:
            if self._audio_as_sent:
                audio = fmp4.AudioTrack(source.extradata, source.sample_rate, source.channels)
            else:
                channels = source.channels if source.mode == "passthrough" else 2
                audio = fmp4.OpusTrack(channels if channels in (1, 2) else 2)
        video_only = fmp4.init_segment([video])
        data = fmp4.init_segment([video, audio]) if audio else video_only
        return Init((old.version + 1) if old else 1, video, audio, data, video_only)

    def _choose_audio(self) -> None:
        """Take the audio fMP4 carries for this stream now, from its hub."""
        info = self.stream.info
        choice, _ = fmp4_audio(info.audio if info else None, not self.stream.ingest_here)
        as_sent = choice == "aac"
        if self._audio_sub is not None and (choice is None or as_sent != self._audio_as_sent):
            self._consumer.drop(self._audio_sub)
            self._audio_sub = None
        if choice is not None and self._audio_sub is None:
            self._audio_as_sent = as_sent
            self._audio_sub = self._consumer.audio(as_sent=as_sent)
            self._tasks.append(asyncio.ensure_future(self._read_audio(self._audio_sub)))
        self._audio_next = None
        self._pending.clear()

    def _on_video(self, unit: AccessUnit) -> None:
        if unit.keyframe and (init := self._new_init(unit)) is not None:
            self.init = init
            self.ready.set()
        init = self.init
        if init is None:
            return  # nothing to start from before the first keyframe
        pts = int(unit.pts * unit.time_base * CLOCK_RATE)
        if self._last_pts is None:
            start = 0
        else:
            delta = pts - self._last_pts
            if 0 < delta <= MAX_INTERVAL:
                self._interval = delta
            start = self._last_start + self._interval
        self._last_pts, self._last_start = pts, start
        self._offset = start - pts
        self._flush_audio()
        hevc = isinstance(init.video, fmp4.HevcTrack)
        sample = fmp4.Sample(fmp4.avcc_sample(unit.data, hevc), self._interval, unit.keyframe)
        run = fmp4.Run(1, start, [sample])
        self._emit(True, unit.keyframe, start, self._interval, [run])

    def _on_audio(self, unit: AccessUnit) -> None:
        init = self.init
        track = init.audio if init is not None else None
        if track is None or self._last_pts is None:
            return  # the video sets the clock
        duration = AAC_FRAME if isinstance(track, fmp4.AudioTrack) else opus.samples(unit.data)
        if duration <= 0:
            return
        rate = track.timescale
        at = int((unit.pts * unit.time_base * CLOCK_RATE + self._offset) * rate / CLOCK_RATE)
        if self._audio_next is None or at > self._audio_next + rate // 10:
            self._flush_audio()  # a gap: what follows starts anew
            self._audio_next = at
        elif at < self._audio_next - rate // 10:
            return  # behind what went out already: its time has passed
        if not self._pending:
            self._pending_start = self._audio_next
        self._pending.append(fmp4.Sample(unit.data, duration, True))
        self._audio_next += duration
        if len(self._pending) >= MAX_PENDING_AUDIO:
            self._flush_audio()

    def _flush_audio(self) -> None:
        if not self._pending or self.init is None or self.init.audio is None:
            self._pending.clear()
            return
        rate = self.init.audio.timescale
        samples, self._pending = self._pending, []
        start = self._pending_start * CLOCK_RATE // rate
        length = sum(s.duration for s in samples) * CLOCK_RATE // rate
        self._emit(False, False, start, length, [fmp4.Run(2, self._pending_start, samples)])

    def _emit(
        self, video: bool, key: bool, start: int, duration: int, runs: list[fmp4.Run]
    ) -> None:
        assert self.init is not None
        self._sequence += 1
        data = fmp4.fragment(self._sequence, runs)
        fragment = Fragment(data, video, key, start, duration, self.init, time.time())
        if key:
            self._gop, self._gop_size = [], 0
        if key or self._gop:
            self._gop.append(fragment)
            self._gop_size += len(data)
            if len(self._gop) > self._gop_units or self._gop_size > self._gop_bytes:
                self._gop, self._gop_size = [], 0  # too long to replay: wait for a keyframe
        for reader in list(self._readers):
            reader.on_fragment(fragment)

    # -- end ----------------------------------------------------------------------------
    def _end(self) -> None:
        self.stream.codec_watchers.discard(self._end)
        if self.ended:
            return
        self.ended = True
        self._gop = []
        for reader in list(self._readers):
            reader.on_end()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._consumer.close()
        self._end()


class Muxers:
    """The muxer of each stream that has MSE viewers or HLS players (two for an H.265
    stream: as it is, and its H.264 transcode); made for the first, closed with the last."""

    def __init__(self, make: Callable[[Stream, bool], Muxer]) -> None:
        self._make = make
        self._muxers: dict[tuple[str, bool], tuple[Muxer, int]] = {}
        #: Messages (MSE) or responses (HLS) and their bytes sent, by stream and kind.
        self._out: dict[tuple[str, str], tuple[int, int]] = {}

    def count(self, stream_id: str, kind: str, size: int) -> None:
        sent, octets = self._out.get((stream_id, kind), (0, 0))
        self._out[stream_id, kind] = (sent + 1, octets + size)

    def egress(self, stream_ids: set[str]) -> dict[tuple[str, str], tuple[int, int]]:
        """What went out to MSE and HLS viewers of these streams (forgetting the rest:
        the removed streams')."""
        for key in [key for key in self._out if key[0] not in stream_ids]:
            del self._out[key]
        return dict(self._out)

    def acquire(self, stream: Stream, hevc: bool = True) -> Muxer:
        """The stream's muxer for a reader that plays H.265 (`hevc`) or not: an H.265
        stream's transcode for the latter."""
        key = (stream.id, transcoded(stream, hevc))
        entry = self._muxers.get(key)
        if entry is None or entry[0].stream is not stream or entry[0].ended:
            if entry is not None:
                entry[0].close()
            muxer = self._make(stream, key[1])
            muxer.start()
            entry = (muxer, 0)
        self._muxers[key] = (entry[0], entry[1] + 1)
        return entry[0]

    def release(self, muxer: Muxer) -> None:
        key = (muxer.stream.id, muxer.transcoded)
        entry = self._muxers.get(key)
        if entry is None or entry[0] is not muxer:
            muxer.close()  # replaced already: it serves nobody
            return
        if entry[1] <= 1:
            del self._muxers[key]
            muxer.close()
        else:
            self._muxers[key] = (muxer, entry[1] - 1)

    def close(self) -> None:
        for muxer, _ in self._muxers.values():
            muxer.close()
        self._muxers.clear()


def transcoded(stream: Stream, hevc: bool) -> bool:
    """Whether a reader that plays H.265 or not (`hevc`) takes the stream's H.264
    transcode: an H.265 stream passed through, to a reader that does not play it."""
    return stream.video_codec == "hevc" and not hevc

"""A registered stream: its registration, live state and hub, fed by its ingest worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import av

from media_server.config import TRANSCODE_ENCODES, Settings
from media_server.ingest import IngestCounters, IngestWorker, SourceFactory
from media_server.model.clock import CaptureClock
from media_server.model.media import AccessUnit, EffectiveMode, SourceInfo, StreamState
from media_server.model.registration import Registration
from media_server.mp4.audio import fmp4_audio
from media_server.streams.changes import Changes
from media_server.streams.consumer import (
    CONSUMER_KINDS,
    HOLDING,
    WATCHING,
    Consumer,
    ConsumerKind,
)
from media_server.streams.delivery import delivery
from media_server.streams.fanout import Hub
from media_server.streams.snapshot import Snapshots
from media_server.streams.view import STATUS_FIELDS, Counters, ManagedBy, StreamView
from media_server.urls import redact_url

log = logging.getLogger(__name__)


class Ingest(Protocol):
    """What feeds a stream's hubs: a camera's worker thread, or (on a cluster node that does
    not ingest the stream) a relay from the node that does."""

    counters: IngestCounters

    @property
    def alive(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


#: Makes the relay that feeds a stream on a node that does not ingest it.
RelayFactory = Callable[["Stream"], Ingest]


class Stream:
    def __init__(
        self,
        registration: Registration,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        make_source: SourceFactory,
        changes: Changes | None = None,
        make_relay: RelayFactory | None = None,
    ) -> None:
        self.registration = registration
        self._make_relay = make_relay
        #: Whether its camera feeds it here, or a relay from another node of a cluster
        #: (which one is the cluster's to decide: `set_ingest_here`).
        self.ingest_here = make_relay is None
        #: Who consumes the stream now, by kind (what the API, metrics and console show).
        self.consumers: Counter[ConsumerKind] = Counter()
        #: Those of them that take the H.264 transcode of an H.265 stream, by kind.
        self.transcoded: Counter[ConsumerKind] = Counter()
        self._switching = asyncio.Lock()  # one change of ingest at a time
        self._stopped = False  # removed: nothing starts again
        #: Who declared it: "api" (the registry), "config" (the config file) or "demo".
        self.managed_by: ManagedBy = "api"
        self.changes = changes or Changes()
        self._settings = settings
        self._loop = loop
        self._make_source = make_source
        self.state = StreamState.IDLE
        self.error: str | None = None
        self.info: SourceInfo | None = None
        self.effective_mode: EffectiveMode | None = None
        self.created_at = time.time()
        self.state_since = time.time()
        self.units_out = 0
        self.frames_out = 0
        hub = settings.hub
        self.hub = Hub(
            hub.viewer_queue, hub.gop_cache_units, hub.gop_cache_bytes, hub.viewer_frames
        )
        # Audio: every unit stands alone, so nothing is cached for new listeners.
        self.audio_hub = Hub(hub.viewer_queue, 0, 0, 0)
        #: The camera's audio as it came, where viewers get another codec (AAC): for fMP4.
        self.source_audio_hub = Hub(hub.viewer_queue, 0, 0, 0)
        #: An H.265 stream's one H.264 transcode, while consumers that decode only H.264
        #: take it (the ingest thread makes it only then).
        self.transcode_hub = Hub(
            hub.viewer_queue, hub.gop_cache_units, hub.gop_cache_bytes, hub.viewer_frames
        )
        #: The stream's timestamps on its camera's clock, for sender reports to viewers.
        self.capture = CaptureClock()
        self.snapshots = Snapshots(self)
        self._info_known = asyncio.Event()
        #: Told when the codec of its video units changes (a camera reconfigured, or an
        #: H.265 camera found to send B-frames and transcoded from then on): whoever
        #: negotiated or muxed the old codec (or its transcode) starts again.
        self.codec_watchers: set[Callable[[], None]] = set()
        self.worker: Ingest | None = None
        self._holders = 0
        self._linger: asyncio.TimerHandle | None = None
        self._idling: asyncio.Task[None] | None = None
        #: How often the stream entered each state (a metric; transitions are also logged).
        self.transitions: dict[StreamState, int] = dict.fromkeys(StreamState, 0)

    @property
    def id(self) -> str:
        return self.registration.id

    @property
    def _transcode_encodes(self) -> set[str]:
        """Where this stream's transcode is encoded: the default, and the canary's."""
        canary = self._settings.canary
        chosen: set[str] = {self._settings.transcode.encode} | {
            encode for encode in TRANSCODE_ENCODES if canary.gives(encode)
        }
        if self.clustered:
            chosen.add("shared")  # a relay carries encoded units to the other nodes
        return chosen

    @property
    def on_demand(self) -> bool:
        """Ingest only while someone watches: an on-demand camera, or a relay to an edge."""
        return self.registration.on_demand or not self.ingest_here

    @property
    def clustered(self) -> bool:
        """Ingested by one node of a cluster, relayed to the others (not the local demo)."""
        return self._make_relay is not None

    @property
    def media_transport(self) -> str:
        """What carries this stream to most viewers (labels figures in API and harness)."""
        return delivery(self._settings, self.effective_mode or self.registration.mode)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._stopped or (self.worker is not None and self.worker.alive):
            return
        if not self.ingest_here:
            assert self._make_relay is not None
            self.worker = self._make_relay(self)
            self.worker.start()
            return
        self.worker = IngestWorker(
            self.id,
            self._make_source,
            self.registration.mode,
            self,
            self._loop,
            self.registration.reconnect or self._settings.ingest.reconnect,
            self._settings.hub.ingest_backlog,
            self._settings.transcode.bitrate,
            "shared" in self._transcode_encodes,
            "per_viewer" in self._transcode_encodes,
            self._settings.ingest.thread_nice,
        )
        self.worker.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop ingest and end every viewer's track; waits for the thread off the loop."""
        self._stopped = True
        self._cancel_linger()
        for hub in self._hubs:
            hub.end_all()
        await self._stop_worker(timeout)
        self._set_state(StreamState.STOPPED, None)

    @property
    def _hubs(self) -> tuple[Hub, ...]:
        return (self.hub, self.audio_hub, self.source_audio_hub, self.transcode_hub)

    def _clear_video(self) -> None:
        """What the video hubs cached belongs to a source session that is over."""
        self.hub.clear_cache()
        self.transcode_hub.clear_cache()

    async def _stop_worker(self, timeout: float) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        worker.stop()
        # Poll rather than join in an executor: a camera that hangs on close would hold an
        # executor thread, and aiortc encodes in that same pool.
        deadline = self._loop.time() + timeout
        while worker.alive and self._loop.time() < deadline:
            await asyncio.sleep(0.05)
        if worker.alive:
            log.warning(
                "stream %s: ingest thread still closing after %.1f s",
                self.id,
                timeout,
                extra={"stream_id": self.id},
            )

    async def set_ingest_here(self, here: bool) -> None:
        """Become (or stop being) the cluster node that ingests this stream from its camera.

        Viewers stay: their hub is fed again by whichever ingest follows, from the next
        keyframe. A node that lost its lease stops reading the camera here, at once.
        """
        if here == self.ingest_here:
            return
        self.ingest_here = here
        async with self._switching:  # the last switch asked for wins, after the others
            self._cancel_linger()
            await self._stop_worker(self._settings.ingest.read_timeout + 1)
            if self._stopped:
                return
            self._clear_video()
            if self._holders or not self.on_demand:
                self.start()
            else:
                self._set_state(StreamState.IDLE, None)
            self.changes.notify()

    # -- consumers; on demand, the camera is open only while someone consumes -------------
    def attach(self, kind: ConsumerKind) -> Consumer:
        """A consumer of the stream (see streams/consumer.py); close it when done."""
        return Consumer(self, kind)

    def _attached(self, kind: ConsumerKind) -> None:
        self.consumers[kind] += 1
        if kind in HOLDING:
            self._hold()
        else:
            self.changes.notify()

    def _detached(self, kind: ConsumerKind) -> None:
        self.consumers[kind] = max(0, self.consumers[kind] - 1)
        if kind in HOLDING:
            self._let_go()
        else:
            self.changes.notify()

    def _hold(self) -> None:
        """Someone needs the stream: an on-demand stream opens its source."""
        self._holders += 1
        self.changes.notify()
        self._cancel_linger()
        if self.on_demand and self.worker is None:
            self.start()

    def _let_go(self) -> None:
        """The last to let go lets an on-demand stream idle after a while."""
        self._holders = max(0, self._holders - 1)
        self.changes.notify()
        if self.on_demand and self._holders == 0 and self.worker is not None:
            linger = self._settings.ingest.on_demand_linger
            self._linger = self._loop.call_later(linger, self._go_idle)

    def _cancel_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _go_idle(self) -> None:
        self._linger = None

        async def idle() -> None:
            await self._stop_worker(self._settings.ingest.read_timeout + 1)
            if self.worker is None:  # no viewer came back meanwhile
                self._clear_video()
                self._set_state(StreamState.IDLE, None)

        self._idling = self._loop.create_task(idle())

    async def wait_info(self, timeout: float) -> SourceInfo | None:
        """What the source is, waiting up to `timeout` s for a starting stream to find out
        (a viewer's answer depends on it: whether there is audio, and in which codec).
        The wait holds the stream, so one that starts for its viewers (on demand, or
        relayed from the node that ingests it) starts now, not after the wait."""
        if self.info is None:
            self._hold()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._info_known.wait(), timeout)
            finally:
                self._let_go()
        return self.info

    # -- IngestSink (called on the loop) -----------------------------------------------
    def on_state(self, state: StreamState, error: str | None) -> None:
        if state == StreamState.RECONNECTING:
            self._clear_video()
            self.capture.forget()
        self._set_state(state, error)

    def on_info(self, info: SourceInfo, mode: EffectiveMode) -> None:
        before = self.video_codec
        if mode != self.effective_mode:
            self._clear_video()  # what was cached belongs to the other media path
        self.info = info
        self.effective_mode = mode
        self._info_known.set()
        self.changes.notify()
        if before is not None and self.video_codec != before:
            for watcher in list(self.codec_watchers):
                watcher()

    def on_unit(self, unit: AccessUnit) -> None:
        self.units_out += 1
        self.capture.follow(unit.pts, unit.time_base, unit.capture)
        self.hub.publish_unit(unit)

    def on_audio(self, unit: AccessUnit) -> None:
        self.audio_hub.publish_unit(unit)

    def on_source_audio(self, unit: AccessUnit) -> None:
        self.source_audio_hub.publish_unit(unit)

    @property
    def wants_source_audio(self) -> bool:
        """Whether anyone takes the camera's own audio (read from the ingest thread)."""
        return bool(self.source_audio_hub.subscribed)

    def on_transcoded_unit(self, unit: AccessUnit) -> None:
        self.transcode_hub.publish_unit(unit)

    @property
    def wants_transcode(self) -> bool:
        """Whether any consumer takes the H.264 transcode (read from the ingest thread)."""
        return any(self.transcoded.values())

    @property
    def video_codec(self) -> str | None:
        """The codec of the units its hub carries (FFmpeg's name): the camera's passed
        through, or H.264 transcoded; None until the source is known."""
        if self.info is None:
            return None
        return "h264" if self.effective_mode == "transcode" else self.info.codec

    def _transcoding(self, kind: ConsumerKind, change: int) -> None:
        self.transcoded[kind] = max(0, self.transcoded[kind] + change)
        self.changes.notify()

    def on_frame(self, frame: av.VideoFrame) -> None:
        self.frames_out += 1
        self.hub.publish_frame(frame)

    def _set_state(self, state: StreamState, error: str | None) -> None:
        if state == self.state and error == self.error:
            return
        if state != self.state:
            reason = f" ({error})" if error else ""
            log.info(
                "stream %s: %s -> %s%s",
                self.id,
                self.state,
                state,
                reason,
                extra={"stream_id": self.id},
            )
            self.transitions[state] += 1
        self.state = state
        self.error = error
        self.state_since = time.time()
        self.changes.notify()

    # -- view -----------------------------------------------------------------------------
    def view(self) -> StreamView:
        """What the API shows of the stream; reads state, changes none."""
        info = self.info
        audio = info.audio if info else None
        counters = self.worker.counters if self.worker else None
        live = self.state == StreamState.LIVE
        fmp4, note = fmp4_audio(audio, relayed=not self.ingest_here)
        fields = {
            **dict(self.registration),
            "url": redact_url(self.registration.url),
            "managed_by": self.managed_by,
            "state": self.state,
            "error": self.error,
            "viewers": self.consumers["viewer"],
            "consumers": {kind: self.consumers[kind] for kind in CONSUMER_KINDS},
            "codec": info.codec if info else None,
            "video_codecs": self._video_codecs(),
            "profile": info.profile if info else None,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "fps": (counters.fps if counters and counters.fps else None)
            or (info.fps if info else None),
            "bitrate": counters.bitrate if counters and live else None,
            "audio_codec": audio.codec if audio else None,
            "audio_sample_rate": audio.sample_rate if audio else None,
            "audio_channels": audio.channels if audio else None,
            "audio_mode": audio.mode if audio else None,
            "fmp4_audio": fmp4,
            "fmp4_note": note,
            "effective_mode": self.effective_mode,
            "ingest_client": info.client if info else None,
            "media_transport": self.media_transport,
            "created_at": self.created_at,
            "state_since": self.state_since,
            "counters": Counters(
                packets_in=counters.packets if counters else 0,
                bytes_in=counters.bytes if counters else 0,
                keyframes_in=counters.keyframes if counters else 0,
                frames_decoded=counters.frames_decoded if counters else 0,
                frames_encoded=counters.frames_encoded if counters else 0,
                reconnects=counters.reconnects if counters else 0,
                ingest_dropped=counters.dropped_backlog if counters else 0,
                units_out=self.units_out,
                frames_out=self.frames_out,
                viewer_dropped=self.hub.dropped + self.transcode_hub.dropped,
                audio_packets_in=counters.audio_packets if counters else 0,
                audio_frames_encoded=counters.audio_frames_encoded if counters else 0,
            ),
        }
        return StreamView.model_construct(**fields)

    def _video_codecs(self) -> dict[str, dict[str, int]]:
        """Who gets which video codec, by watching kind (an H.265 stream's H.264 viewers
        take its transcode)."""
        own = self.video_codec
        if own is None:
            return {}
        shown: dict[str, dict[str, int]] = {}
        for kind in WATCHING:
            transcoded = self.transcoded[kind]
            counts = {own: self.consumers[kind] - transcoded, "h264": transcoded}
            if own == "h264":
                counts = {own: self.consumers[kind]}
            counts = {codec: n for codec, n in counts.items() if n > 0}
            if counts:
                shown[kind] = counts
        return shown

    def status(self) -> dict[str, Any]:
        """What the origin publishes of this stream to the other nodes."""
        return self.view().model_dump(mode="json", include=set(STATUS_FIELDS))

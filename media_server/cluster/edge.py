"""The edge's end of the internal link: feeds a stream on a node that does not ingest it.

It takes the place of the camera's worker thread (see `Ingest`): it reports the same
states and publishes the origin's units to the local hubs, on the event loop, where the
local viewers take them. Timestamps go through a `Timeline` like a camera's, so when the
origin changes (it died, another node took the camera over) viewers see time move on
and resume at the next keyframe, with their sessions intact. For an H.265 stream it asks
the origin for the H.264 transcode while local viewers take it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from media_server.cluster import wire
from media_server.ingest.audio import AudioPath
from media_server.ingest.timeline import Timeline
from media_server.ingest.worker import IngestCounters, IngestSink
from media_server.model.media import CLOCK_RATE, TIME_BASE, AccessUnit, SourceInfo, StreamState

log = logging.getLogger(__name__)

#: Seconds between attempts to reach the origin.
RETRY = 0.5
MAX_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Origin:
    node: str
    url: str
    lease: int


class RelayIngest:
    def __init__(
        self,
        stream_id: str,
        sink: IngestSink,
        locate: Callable[[str], Origin | None],
        session: aiohttp.ClientSession,
        secret: str,
        read_timeout: float,
    ) -> None:
        self.stream_id = stream_id
        self._sink = sink
        self._locate = locate
        self._session = session
        self._secret = secret
        self._read_timeout = read_timeout
        self._task: asyncio.Task[None] | None = None
        self.counters = IngestCounters()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        self._sink.on_state(StreamState.STARTING, None)
        timeline = Timeline()
        first = True
        while True:
            origin = self._locate(self.stream_id)
            if origin is None:
                error = "no node ingests the stream yet"
            else:
                try:
                    error = await self._relay(origin, timeline)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    error = f"relay from node {origin.node}: {exc or type(exc).__name__}"
                except Exception as exc:  # a bug must not end the stream here for good
                    log.exception("stream %s: relay error", self.stream_id)
                    error = f"internal error: {type(exc).__name__}"
            if not first:
                self.counters.reconnects += 1
            first = False
            timeline.restart()
            self._sink.on_state(StreamState.RECONNECTING, error)
            log.debug("stream %s: %s", self.stream_id, error)
            await asyncio.sleep(RETRY)

    async def _relay(self, origin: Origin, timeline: Timeline) -> str:
        """Take units until the link ends; what ended it."""
        url = f"{origin.url}/internal/v1/relay/{quote(self.stream_id, safe='')}"
        async with self._session.ws_connect(
            url,
            params={"lease": str(origin.lease)},
            headers={"Authorization": f"Bearer {self._secret}"},
            heartbeat=self._read_timeout,
            receive_timeout=self._read_timeout,
            max_msg_size=MAX_MESSAGE,
        ) as ws:
            info: SourceInfo | None = None
            audio: AudioPath | None = None
            live = False
            asked = False  # whether the origin was asked for the transcode
            counters = self.counters
            counters.restart_window()
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    info = wire.parse_info(message.data)
                    audio = AudioPath(info.audio) if info.audio else None
                    self._sink.on_info(info, "passthrough")
                    continue
                if message.type != aiohttp.WSMsgType.BINARY:
                    break
                if info is None:
                    raise ValueError("the origin sent media before describing it")
                unit = wire.unpack(message.data)
                if self._sink.wants_transcode != asked:
                    asked = not asked
                    await ws.send_str(wire.ask_transcode(asked))
                if unit.kind == wire.AUDIO:
                    if audio is not None:
                        self._audio(audio, unit, timeline)
                    continue
                if unit.kind == wire.TRANSCODE:
                    self._transcoded(unit, timeline)
                    continue
                counters.packets += 1
                counters.bytes += len(unit.data)
                counters.keyframes += unit.keyframe
                pts = timeline.map(unit.pts, 1 / CLOCK_RATE)
                self._sink.on_unit(AccessUnit(unit.data, pts, TIME_BASE, unit.keyframe))
                if not live and unit.keyframe:
                    live = True
                    self._sink.on_state(StreamState.LIVE, None)
                counters.frame()
            if ws.close_code == wire.NOT_ORIGIN:
                return f"node {origin.node} no longer ingests the stream"
            return f"node {origin.node} ended the relay"

    def _transcoded(self, unit: wire.Unit, timeline: Timeline) -> None:
        """The H.264 transcode, on the clock the stream's own video set."""
        pts = timeline.follow(unit.pts, 1 / CLOCK_RATE)
        if pts is not None:
            self._sink.on_transcoded_unit(AccessUnit(unit.data, pts, TIME_BASE, unit.keyframe))

    def _audio(self, audio: AudioPath, unit: wire.Unit, timeline: Timeline) -> None:
        pts90 = timeline.follow(unit.pts, 1 / audio.info.sample_rate)
        if pts90 is None:  # before the first video: no clock to put it on yet
            return
        self.counters.audio_packets += 1
        self.counters.audio_bytes += len(unit.data)
        self._sink.on_audio(audio.passed_through(unit.data, pts90))

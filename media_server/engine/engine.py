"""The gateway's fan-out engine: a feed per stream, lanes, and the RTCP clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from media_server.engine import rtcp
from media_server.engine.feed import Feed
from media_server.engine.lanes import Lanes
from media_server.engine.sendpath import load
from media_server.engine.viewer import EngineViewer
from media_server.streams.stream import Stream

log = logging.getLogger(__name__)

#: Sender reports to every viewer this often (seconds): RTCP's usual interval.
SR_INTERVAL = 1.0
#: `near-wrap`: sequence numbers wrap after this many packets, timestamps after 3 s.
NEAR_WRAP_PACKETS = 300
NEAR_WRAP_TICKS = 3 * 90_000


@dataclass(frozen=True)
class EngineConfig:
    send_path: Literal["native", "python"]
    lanes: int  # 0: one per core
    lane_depth: int
    history: int  # packets per stream NACKs can be answered from
    gop_units: int
    gop_bytes: int
    gso: bool = True
    lane_max_lag: float = 0.25
    start: Literal["random", "near-wrap"] = "random"


@dataclass
class EngineStats:
    viewers: int = 0
    packets: int = 0
    octets: int = 0
    dropped: int = 0
    retransmits: int = 0
    nacks: int = 0
    plis: int = 0
    replays: int = 0
    restarts: int = 0


class Engine:
    def __init__(self, config: EngineConfig, streams: Callable[[str], Stream | None]) -> None:
        self.path = load(config.send_path)
        count = (config.lanes or os.cpu_count() or 1) if self.path.threaded else 0
        self.lanes = Lanes(count, config.lane_depth, config.lane_max_lag)
        self._config = config
        self.gso = config.gso
        self._streams = streams
        self._feeds: dict[str, Feed] = {}  # the current feed of each stream
        self._viewers: dict[EngineViewer, Feed] = {}  # each viewer's own (a stream
        # removed and registered again under its id gets a new hub, and a new feed)
        self._ticker: asyncio.Task[None] | None = None
        self._ended = EngineStats()  # what viewers that left had done
        #: Told of each receiver report a viewer sends (loss, jitter, round trip).
        self.on_report: list[Callable[[EngineViewer], None]] = []
        log.info("engine: %s send path, %d lane(s)", self.path.name, self.lanes.count)

    def start(self, stream_id: str) -> tuple[int, int]:
        """A new viewer's first sequence number and timestamp offset (the stream's feed is
        made now, so a near-wrap start is counted from what the viewer will be sent first).
        Raises LookupError for a stream that is gone."""
        feed = self._feed(stream_id)
        if self._config.start == "near-wrap":
            first = feed.first_timestamp()
            return 0x10000 - NEAR_WRAP_PACKETS, (-NEAR_WRAP_TICKS - first) & 0xFFFFFFFF
        return random.getrandbits(16), random.getrandbits(32)

    def _feed(self, stream_id: str) -> Feed:
        stream = self._streams(stream_id)
        if stream is None:
            raise LookupError(stream_id)
        feed = self._feeds.get(stream_id)
        if feed is None or feed.consumer.stream is not stream:
            c = self._config
            consumer = stream.attach("fanout")
            feed = Feed(consumer, self.path, self.lanes, c.history, c.gop_units, c.gop_bytes)
            self._feeds[stream_id] = feed
            if self._ticker is None:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return feed

    def add(self, stream_id: str, viewer: EngineViewer) -> None:
        try:
            feed = self._feed(stream_id)
        except LookupError:
            self.lanes.release(viewer.lane)
            if viewer.on_lost is not None:
                viewer.on_lost("stream removed")
            return
        self._viewers[viewer] = feed
        feed.add(viewer)

    def remove(self, viewer: EngineViewer) -> None:
        feed = self._viewers.pop(viewer, None)
        if feed is None:
            return
        self.lanes.release(viewer.lane)
        self._count(self._ended, viewer)
        feed.remove(viewer)
        if not feed.viewers:
            self._close_feed(feed)

    def _close_feed(self, feed: Feed) -> None:
        """Nobody left: stop packetizing for nobody."""
        self._ended.restarts += feed.restarts
        feed.close()
        for stream_id, current in list(self._feeds.items()):
            if current is feed:
                del self._feeds[stream_id]

    def rtcp(self, viewer: EngineViewer, packet: Any) -> None:
        feed = self._viewers.get(viewer)
        if feed is not None and rtcp.handle(viewer, feed, packet):
            for callback in self.on_report:
                callback(viewer)

    def stats(self) -> EngineStats:
        """Totals since start, for /metrics (counters only grow)."""
        s = EngineStats(
            viewers=len(self._viewers),
            packets=self._ended.packets,
            octets=self._ended.octets,
            dropped=self._ended.dropped,
            retransmits=self._ended.retransmits,
            nacks=self._ended.nacks,
            plis=self._ended.plis,
            replays=self._ended.replays,
            restarts=self._ended.restarts + sum(f.restarts for f in set(self._viewers.values())),
        )
        for viewer in self._viewers:
            self._count(s, viewer)
        return s

    @staticmethod
    def _count(into: EngineStats, viewer: EngineViewer) -> None:
        packets, octets, dropped, retransmits, errors, *_ = viewer.tx.sender_info()
        into.packets += packets
        into.octets += octets
        into.dropped += dropped + errors
        into.retransmits += retransmits
        into.nacks += viewer.nacks
        into.plis += viewer.plis
        into.replays += viewer.replays

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(SR_INTERVAL)
            for feed in list(self._feeds.values()):  # made for a viewer that never came
                if not feed.viewers:
                    self._close_feed(feed)
            for viewer, feed in list(self._viewers.items()):
                reason = viewer.follow_route()
                if reason is not None:
                    log.info("engine: a viewer's route is gone (%s)", reason)
                    viewer.tx.close()
                    if viewer.on_lost is not None:
                        viewer.on_lost(reason)
                    continue
                viewer.tx.send_rtcp(rtcp.sender_report(viewer, feed.consumer.stream.capture))

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for feed in {*self._feeds.values(), *self._viewers.values()}:
            feed.close()
        self._feeds.clear()
        await asyncio.get_running_loop().run_in_executor(None, self.lanes.close)

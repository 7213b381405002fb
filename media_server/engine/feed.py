"""One stream's engine viewers: packetize each unit once, hand it to every viewer's lane.

A new viewer starts from the cached GOP (packetized already), or waits for the next
keyframe when there is none. A viewer whose decoder lost its way (PLI/FIR) is sent the GOP
again, its timestamps squeezed in before the next live unit so its timeline never jumps.
"""

from __future__ import annotations

import time

from media_server.engine.lanes import Lanes
from media_server.engine.sendpath import SendPath
from media_server.engine.units import History, Packetized, Packetizer
from media_server.engine.viewer import EngineViewer
from media_server.model.media import AccessUnit
from media_server.streams.consumer import Consumer

#: One frame at 30 fps in the 90 kHz clock, until the stream shows its own interval.
DEFAULT_INTERVAL = 3000
#: At most one GOP replay per viewer in this many seconds (PLI storms cost the sender).
REPLAY_EVERY = 0.5


class Feed:
    """Lives on the event loop: a consumer of its stream (kind fanout) that taps every
    unit as it is published."""

    def __init__(
        self,
        consumer: Consumer,
        path: SendPath,
        lanes: Lanes,
        history: int,
        gop_units: int,
        gop_bytes: int,
    ) -> None:
        self.consumer = consumer
        self._path = path
        self._lanes = lanes
        self._packetizer = Packetizer()
        self.history = History(history)
        self._gop_units = gop_units
        self._gop_bytes = gop_bytes
        self._gop: list[Packetized] = []
        self._gop_size = 0
        self._live: set[EngineViewer] = set()
        self._waiting: set[EngineViewer] = set()  # until a keyframe
        self._groups: dict[int, tuple[object, ...]] | None = None
        self._last: Packetized | None = None
        self._interval = DEFAULT_INTERVAL
        self.restarts = 0  # viewers sent back to a keyframe because their lane was full
        picture = consumer.picture()
        if isinstance(picture, list):  # seed: the first viewers need not wait a GOP
            for unit in picture:
                self.on_unit(unit)
        consumer.tap(self)

    # -- Tap -------------------------------------------------------------------------
    @property
    def viewers(self) -> int:
        return len(self._live) + len(self._waiting)

    @property
    def dropped(self) -> int:
        return self.restarts

    def on_unit(self, unit: AccessUnit) -> None:
        packed = self._packetizer.packetize(unit, self.consumer.video_codec == "hevc")
        self.history.add(packed)
        self._cache(packed)
        if self._last is not None:
            step = (packed.timestamp - self._last.timestamp) & 0xFFFFFFFF
            if 0 < step < 90_000:
                self._interval = step
        self._last = packed
        joining: set[EngineViewer] = set()
        if packed.keyframe and self._waiting:
            joining, self._waiting = self._waiting, set()
            self._live |= joining
            self._groups = None
        for lane in list(self._lane_groups()):
            if self._lanes.behind(lane, self):
                self._restart_lane(lane)
        for lane, group in self._lane_groups().items():
            self._submit(lane, group, packed, packed.timestamp)
        for viewer in joining & self._live:  # the rest were fed before, or restart now
            self._fed(viewer)

    def on_reset(self) -> None:
        self._gop = []
        self._gop_size = 0

    # -- viewers ------------------------------------------------------------------------
    def add(self, viewer: EngineViewer) -> None:
        if self._gop:
            for unit in self._gop:
                self._submit_one(viewer, unit, unit.timestamp)
            self._live.add(viewer)
            self._groups = None
            self._fed(viewer)
        else:
            self._waiting.add(viewer)

    def remove(self, viewer: EngineViewer) -> None:
        self._live.discard(viewer)
        self._waiting.discard(viewer)
        self._groups = None

    def first_timestamp(self) -> int:
        """The timestamp a viewer joining now is sent first (its GOP's, or the latest)."""
        if self._gop:
            return self._gop[0].timestamp
        return self._last.timestamp if self._last is not None else 0

    def close(self) -> None:
        self.consumer.close()
        self.history.clear()
        self.on_reset()

    def replay(self, viewer: EngineViewer) -> bool:
        """Answer a picture loss with the cached GOP; False when there is none to send
        (the viewer then waits for the camera's next keyframe) or it was just sent."""
        now = time.monotonic()
        if not self._gop or self._last is None or now - viewer.last_replay < REPLAY_EVERY:
            return False
        viewer.last_replay = now
        step = max(1, self._interval // (len(self._gop) + 1))
        base = self._last.timestamp
        for i, unit in enumerate(self._gop):
            self._submit_one(viewer, unit, (base + (i + 1) * step) & 0xFFFFFFFF)
        return True

    # -- internals ----------------------------------------------------------------------
    def _cache(self, packed: Packetized) -> None:
        size = sum(len(p) for p in packed.payloads)
        if packed.keyframe:
            self._gop = [packed]
            self._gop_size = size
        elif self._gop:
            self._gop.append(packed)
            self._gop_size += size
            if len(self._gop) > self._gop_units or self._gop_size > self._gop_bytes:
                self.on_reset()  # too long to replay: new viewers wait for a keyframe

    def _submit_one(self, viewer: EngineViewer, unit: Packetized, timestamp: int) -> None:
        self._submit(viewer.lane, (viewer.tx,), unit, timestamp)

    def _submit(self, lane: int, txs: tuple[object, ...], unit: Packetized, ts: int) -> None:
        send = self._path.send_unit
        self._lanes.submit(lane, self, send, txs, unit.payloads, ts, unit.first)

    def _lane_groups(self) -> dict[int, tuple[object, ...]]:
        if self._groups is None:
            groups: dict[int, list[object]] = {}
            for viewer in self._live:
                groups.setdefault(viewer.lane, []).append(viewer.tx)
            self._groups = {lane: tuple(txs) for lane, txs in groups.items()}
        return self._groups

    def _restart_lane(self, lane: int) -> None:
        """The lane lost a job of ours (late or refused): its viewers missed a unit, so
        they restart at the next keyframe."""
        behind = {v for v in self._live if v.lane == lane}
        self.restarts += len(behind)
        self._live -= behind
        self._waiting |= behind
        self._groups = None

    @staticmethod
    def _fed(viewer: EngineViewer) -> None:
        if viewer.on_first is not None:
            viewer.on_first()
            viewer.on_first = None

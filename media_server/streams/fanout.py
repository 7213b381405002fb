"""Per-stream fan-out: a GOP cache and one bounded queue per viewer.

Publishing never waits: a viewer whose queue is full loses what is queued and resumes at
the next keyframe (passthrough) or loses its oldest frame (transcode). So a slow viewer
costs only itself, and a new viewer starts from the cached keyframe instead of waiting up
to a whole GOP for the camera's next one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Literal, Protocol

import av

from media_server.model.media import AccessUnit

Item = AccessUnit | av.VideoFrame
#: What a picture can be made from: the units since a keyframe, or a decoded frame.
Picture = list[AccessUnit] | av.VideoFrame | None

#: What a viewer takes: encoded units, decoded frames, or whatever the stream carries.
Wants = Literal["units", "frames", "any"]


class StreamEnded(Exception):
    """The stream was removed or its media kind changed; the viewer must stop."""


class Subscriber:
    """One viewer's queue. Filled by the hub, drained by the viewer's track."""

    def __init__(self, capacity: int, frame_capacity: int, wants: Wants = "any") -> None:
        self.wants = wants
        self._items: deque[Item] = deque()
        self._capacity = capacity
        self._frame_capacity = frame_capacity
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self.need_keyframe = True
        self.dropped = 0
        self.delivered = 0

    def push(self, item: Item, keyframe: bool) -> None:
        if isinstance(item, AccessUnit):
            if keyframe:
                self.need_keyframe = False
            elif self.need_keyframe:
                self.dropped += 1
                return
            if len(self._items) >= self._capacity:
                # Behind by a whole queue: skip to the next keyframe, never stall the hub.
                self.dropped += len(self._items) + 1
                self._items.clear()
                if not keyframe:
                    self.need_keyframe = True
                    return
        else:
            # Decoded frames are large: few are kept, and a late viewer gets the newest.
            while len(self._items) >= self._frame_capacity:
                self._items.popleft()
                self.dropped += 1
        self._items.append(item)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._items.clear()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Item:
        while not self._items:
            if self._ended:
                raise StreamEnded
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.delivered += 1
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class Tap(Protocol):
    """Takes every unit as it is published, with no queue of its own: the fan-out engine,
    which packetizes once and sends to its viewers itself (media_server/engine)."""

    @property
    def dropped(self) -> int: ...
    def on_unit(self, unit: AccessUnit) -> None: ...
    def on_reset(self) -> None:
        """The cached GOP no longer leads to what comes next (the source changed)."""


class Hub:
    """Fan-out for one stream; lives on the event loop."""

    def __init__(
        self, viewer_queue: int, gop_units: int, gop_bytes: int, viewer_frames: int = 4
    ) -> None:
        self._viewer_queue = viewer_queue
        self._viewer_frames = viewer_frames
        self._gop_units = gop_units
        self._gop_bytes = gop_bytes
        self._gop: list[AccessUnit] = []
        self._gop_size = 0
        self._gop_valid = False
        self._last_frame: av.VideoFrame | None = None
        self._subscribers: set[Subscriber] = set()
        self._taps: list[Tap] = []
        self._ended = False

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscribers) + sum(t.dropped for t in self._taps)

    def add_tap(self, tap: Tap) -> None:
        self._taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    def subscribe(self, wants: Wants = "any") -> Subscriber:
        """Called at a viewer's first read, so a viewer that never reads is never fed."""
        sub = Subscriber(max(self._viewer_queue, len(self._gop)), self._viewer_frames, wants)
        if self._ended:  # the stream is gone: a late viewer ends at once
            sub.end()
            return sub
        if self._gop_valid and wants != "frames":
            for unit in self._gop:
                sub.push(unit, unit.keyframe)
        elif self._last_frame is not None and wants != "units":
            sub.push(self._last_frame, True)
        self._subscribers.add(sub)
        return sub

    @property
    def subscribed(self) -> int:
        return len(self._subscribers)

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def picture(self) -> Picture:
        """What the latest picture can be made from: the units since the last keyframe,
        or the last decoded frame (streams that publish frames only), or nothing yet."""
        if self._gop_valid:
            return list(self._gop)
        return self._last_frame

    def publish_unit(self, unit: AccessUnit) -> None:
        if unit.keyframe:
            self._gop = [unit]
            self._gop_size = unit.size
            self._gop_valid = True
        elif self._gop_valid:
            self._gop.append(unit)
            self._gop_size += unit.size
            if len(self._gop) > self._gop_units or self._gop_size > self._gop_bytes:
                # Too long to replay: new viewers wait for the next keyframe instead.
                self._drop_gop()
        for sub in self._subscribers:
            if sub.wants != "frames":
                sub.push(unit, unit.keyframe)
        for tap in self._taps:
            tap.on_unit(unit)

    def publish_frame(self, frame: av.VideoFrame) -> None:
        self._last_frame = frame
        for sub in self._subscribers:
            if sub.wants != "units":
                sub.push(frame, True)

    def clear_cache(self) -> None:
        """Forget what new viewers would be given first (the source changed)."""
        self._drop_gop()
        self._last_frame = None
        for tap in self._taps:
            tap.on_reset()

    def _drop_gop(self) -> None:
        self._gop = []
        self._gop_size = 0
        self._gop_valid = False

    def end_all(self) -> None:
        """The stream is going away: every viewer's track ends, and so will later ones."""
        self._ended = True
        for sub in self._subscribers:
            sub.end()
        self._subscribers.clear()
        self.clear_cache()

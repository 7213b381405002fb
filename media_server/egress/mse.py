"""One MSE viewer: what its WebSocket is to send, from the stream's muxer.

It starts at the muxer's cached GOP (so its first picture comes at once, as WebRTC's
does), sends an init segment before the first fragment that follows it (again when the
stream's picture changes), and keeps at most `max_bytes` queued. A viewer that falls
further behind loses what is queued and starts again at the next keyframe: the stream
and the other viewers never wait for it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from media_server.egress.muxer import Fragment, Init, Muxer

Message = Init | Fragment


class MseViewer:
    def __init__(self, muxer: Muxer, opus: bool, max_bytes: int) -> None:
        self.muxer = muxer
        #: Whether its client plays Opus in MP4 (one that cannot gets no Opus track).
        self.opus = opus
        self._max_bytes = max_bytes
        self._queue: deque[Message] = deque()
        self._queued = 0
        self._init: Init | None = None  # the last init segment queued
        self._need_keyframe = True
        self._waiter: asyncio.Future[None] | None = None
        self.ended = False

    def start(self) -> None:
        for fragment in self.muxer.gop():
            self.on_fragment(fragment)
        self.muxer.add(self)

    def takes_audio(self, init: Init) -> bool:
        return init.audio is not None and (self.opus or init.audio.codecs != "opus")

    def close(self) -> None:
        self.muxer.remove(self)
        self.on_end()

    def on_fragment(self, fragment: Fragment) -> None:
        if not fragment.video and not self.takes_audio(fragment.init):
            return
        if self._need_keyframe and not fragment.keyframe:
            return
        if self._queued + len(fragment.data) > self._max_bytes:
            self._queue.clear()
            self._queued = 0
            self._need_keyframe = True
            if not fragment.keyframe:
                return
        self._need_keyframe = False
        if fragment.init is not self._init:
            self._init = fragment.init
            self._queue.append(fragment.init)
        self._queue.append(fragment)
        self._queued += len(fragment.data)
        self._wake()

    def on_end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Message | None:
        """What to send next: an init segment (with its codecs) or a fragment; None at
        the end."""
        while not self._queue:
            if self.ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._queue.popleft()
        if isinstance(message, Fragment):
            self._queued -= len(message.data)
        return message

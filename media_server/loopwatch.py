"""Event-loop health: how late the loop wakes up, and a watchdog for when it stops.

A coroutine ticks on the loop and records lag. A watchdog thread, which keeps running
while the loop is stuck, logs the main thread's stack once per block so an operator sees
what blocked it; liveness reports a block seen within the recent window.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections import deque

log = logging.getLogger(__name__)

TICK = 0.25


class LoopMonitor:
    def __init__(self, block_threshold: float = 2.0, window: float = 30.0) -> None:
        self.block_threshold = block_threshold
        self.window = window
        self.lag = 0.0
        self._last_tick = time.monotonic()
        self._blocks: deque[tuple[float, float]] = deque(maxlen=64)  # (when, how long)
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main_ident = threading.main_thread().ident

    def start(self) -> None:
        self._last_tick = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._tick())
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self.lag = max(0.0, loop.time() - started - TICK)
            if self.lag >= self.block_threshold:
                self._blocks.append((now, self.lag))
            self._last_tick = now

    def _watch(self) -> None:
        reported = False
        while not self._stop.wait(TICK):
            stalled = time.monotonic() - self._last_tick
            if stalled >= self.block_threshold and not reported:
                reported = True
                frame = sys._current_frames().get(self._main_ident or 0)
                stack = "".join(traceback.format_stack(frame)) if frame else "(no stack)"
                log.warning("event loop blocked for %.1f s; main thread at:\n%s", stalled, stack)
            elif stalled < self.block_threshold:
                reported = False

    @property
    def stalled_for(self) -> float:
        """Seconds since the loop last ticked (grows while it is blocked)."""
        return max(0.0, time.monotonic() - self._last_tick - TICK)

    def recent_block(self) -> float:
        """Longest block within the window, seconds (0 when none)."""
        horizon = time.monotonic() - self.window
        return max((took for when, took in self._blocks if when >= horizon), default=0.0)

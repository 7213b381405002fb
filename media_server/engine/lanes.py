"""Lanes: threads that run the native send path, each viewer always in the same lane.

A viewer's packets must leave in order, so it stays in one lane; a stream's viewers are
spread over the lanes, so one stream's fan-out uses every core (the send path releases the
GIL). Each lane's queue is bounded: a lane that falls behind loses jobs, and their viewers
are told to start again from a keyframe, so a slow lane never holds the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from media_server.procstat import name_thread

log = logging.getLogger(__name__)

Job = tuple[Callable[..., Any], tuple[Any, ...]]


class Lanes:
    def __init__(self, count: int, depth: int) -> None:
        """`count` threads; 0 runs every job at once on the caller's thread."""
        self._queues: list[queue.Queue[Job | None]] = [queue.Queue(depth) for _ in range(count)]
        self._threads = [
            threading.Thread(target=self._run, args=(q, i), name=f"engine-lane-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        self._load = [0] * max(count, 1)
        self.dropped_jobs = 0
        for thread in self._threads:
            thread.start()

    @property
    def count(self) -> int:
        return len(self._queues)

    def assign(self) -> int:
        """The lane for a new viewer: the one with fewest viewers."""
        lane = min(range(len(self._load)), key=self._load.__getitem__)
        self._load[lane] += 1
        return lane

    def release(self, lane: int) -> None:
        self._load[lane] -= 1

    def submit(self, lane: int, fn: Callable[..., Any], *args: Any) -> bool:
        """Run `fn(*args)` in `lane` after what it already holds; False if the lane is full."""
        if not self._queues:
            fn(*args)
            return True
        try:
            self._queues[lane].put_nowait((fn, args))
        except queue.Full:
            self.dropped_jobs += 1
            return False
        return True

    def backlog(self) -> int:
        return sum(q.qsize() for q in self._queues)

    def close(self) -> None:
        for q in self._queues:
            while True:
                try:
                    q.put_nowait(None)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        q.get_nowait()
        for thread in self._threads:
            thread.join(timeout=2)

    @staticmethod
    def _run(jobs: queue.Queue[Job | None], index: int) -> None:
        name_thread(f"engine-lane-{index}")
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:
                log.exception("engine lane job failed")

"""Lanes: threads that run the native send path, each viewer always in the same lane.

A viewer's packets must leave in order, so it stays in one lane; a stream's viewers are
spread over the lanes, so one stream's fan-out uses every core (the send path releases the
GIL). A lane never holds anything up: a job that waited longer than `max_lag` is skipped
(sending it late would only add delay), and a full queue refuses new ones. Either way the
job's owner (a stream's feed) learns it and sends those viewers back to a keyframe.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from media_server.procstat import name_thread

log = logging.getLogger(__name__)

#: fn, its arguments, who submitted it, when.
Job = tuple[Callable[..., Any], tuple[Any, ...], object, float]


class Lanes:
    def __init__(self, count: int, depth: int, max_lag: float = 0.25) -> None:
        """`count` threads; 0 runs every job at once on the caller's thread."""
        self._queues: list[queue.Queue[Job | None]] = [queue.Queue(depth) for _ in range(count)]
        self._max_lag = max_lag
        #: Per lane, the owners whose jobs were skipped or refused since they last asked.
        self._behind: list[set[object]] = [set() for _ in range(max(count, 1))]
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"engine-lane-{i}", daemon=True)
            for i in range(count)
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

    def submit(self, lane: int, owner: object, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` in `lane` after what it already holds (at once without threads)."""
        if not self._queues:
            fn(*args)
            return
        try:
            self._queues[lane].put_nowait((fn, args, owner, time.monotonic()))
        except queue.Full:
            self._lost(lane, owner)

    def behind(self, lane: int, owner: object) -> bool:
        """Whether a job of `owner` in `lane` was lost since the last time it asked."""
        lost = self._behind[lane]
        if owner in lost:
            lost.discard(owner)
            return True
        return False

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

    def _lost(self, lane: int, owner: object) -> None:
        self.dropped_jobs += 1
        self._behind[lane].add(owner)  # one bytecode under the GIL: safe from any thread

    def _run(self, index: int) -> None:
        name_thread(f"engine-lane-{index}")
        jobs = self._queues[index]
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, owner, queued = job
            if time.monotonic() - queued > self._max_lag:
                self._lost(index, owner)
                continue
            try:
                fn(*args)
            except Exception:
                log.exception("engine lane job failed")

"""This process's CPU and memory, read from the kernel, for `/stats`."""

from __future__ import annotations

import ctypes
import os
import resource
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory now (not the peak that getrusage reports)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except OSError:  # not Linux: the peak is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CpuMeter:
    """CPU use as % of one core, over the time since the last reading at least 1 s ago."""

    def __init__(self) -> None:
        self._sample = (time.monotonic(), time.process_time())
        self._percent = 0.0

    def percent(self) -> float:
        now, cpu = time.monotonic(), time.process_time()
        when, before = self._sample
        if now - when >= 1.0:
            self._percent = (cpu - before) / (now - when) * 100
            self._sample = (now, cpu)
        return self._percent

    @staticmethod
    def seconds() -> float:
        return time.process_time()


def name_thread(name: str) -> None:
    """Name the calling thread for the kernel (`/proc/PID/task/TID/comm`, top, py-spy),
    so per-thread CPU can be told apart: the perf harness groups it by these names."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):  # not Linux: names are a convenience
        pass

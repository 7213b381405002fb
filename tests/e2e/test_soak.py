"""500 viewer connect/disconnect cycles leave the gateway's memory where it was.

The first couple of hundred sessions raise RSS to the allocators' working level (measured:
109 MB at start, 131 MB after 100 cycles, then flat at 141-143 MB from 200 to 800
cycles), so the baseline is taken after a warm-up: what must not happen is growth after
that. Slow (about half a minute), and run by CI like every other test.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.gateway import GENEROUS, run_gateway
from tests.support.viewer import Viewer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CYCLES = 500
WARMUP = 200
PARALLEL = 5


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


async def cycle(base_url: str, index: int) -> None:
    viewer = Viewer(base_url, "demo", "whep" if index % 2 else "ws")
    try:
        await viewer.connect()
        await viewer.wait_frames(1, timeout=20)
    finally:
        await viewer.close()


async def run_cycles(base_url: str, count: int) -> None:
    for start in range(0, count, PARALLEL):
        await asyncio.gather(*(cycle(base_url, i) for i in range(start, start + PARALLEL)))


async def settled(http: aiohttp.ClientSession, base_url: str) -> None:
    """Wait until the gateway holds no session (closes finish after the viewer leaves)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        async with http.get(f"{base_url}/api/v1/health/ready") as resp:
            if (await resp.json())["components"]["webrtc"]["sessions"] == 0:
                return
        await asyncio.sleep(0.2)
    raise AssertionError("sessions did not drain after the viewers left")


async def test_connect_disconnect_cycles_do_not_grow_memory(
    http: aiohttp.ClientSession,
) -> None:
    with run_gateway(env=GENEROUS) as gw:
        await run_cycles(gw.base_url, WARMUP)  # allocator arenas and caches fill up first
        await settled(http, gw.base_url)
        await asyncio.sleep(1)
        rss_start, threads_start = rss_kib(gw.pid), threads(gw.pid)
        await run_cycles(gw.base_url, CYCLES)
        await settled(http, gw.base_url)
        await asyncio.sleep(1)
        rss_end, threads_end = rss_kib(gw.pid), threads(gw.pid)
        async with http.get(f"{gw.base_url}/api/v1/streams/demo") as resp:
            demo = await resp.json()
        print(f"RSS {rss_start} -> {rss_end} KiB, threads {threads_start} -> {threads_end}")
        assert demo["viewers"] == 0 and demo["state"] == "live"
        assert rss_end <= rss_start * 1.10, f"RSS grew from {rss_start} to {rss_end} KiB"
        assert threads_end <= threads_start + 2

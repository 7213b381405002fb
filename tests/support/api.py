"""Small REST helpers for tests against a running gateway."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp


async def register(
    http: aiohttp.ClientSession, base_url: str, **body: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{base_url}/api/v1/streams", json=body) as resp:
        return resp.status, await resp.json()


async def wait_state(
    http: aiohttp.ClientSession, base_url: str, stream_id: str, *states: str, timeout: float = 20
) -> dict[str, Any]:
    """Poll until the stream reaches one of `states`; fail with its last view otherwise."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with http.get(f"{base_url}/api/v1/streams/{stream_id}") as resp:
            last = await resp.json()
        if last.get("state") in states:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"stream {stream_id} never reached {states}: {last}")


async def live(
    http: aiohttp.ClientSession, base_url: str, stream_id: str, url: str, **fields: Any
) -> dict[str, Any]:
    """Register a new stream and wait until it plays; its view."""
    status, body = await register(http, base_url, id=stream_id, url=url, **fields)
    assert status == 201, body
    return await wait_state(http, base_url, stream_id, "live")


async def live_with_audio(
    http: aiohttp.ClientSession, base_url: str, stream_id: str, url: str, **fields: Any
) -> dict[str, Any]:
    """Register a camera with sound, wait until it plays; its view once its audio track is
    known (the source says so once it is open)."""
    view = await live(http, base_url, stream_id, url, **fields)
    for _ in range(50):
        if view["audio_codec"]:
            break
        await asyncio.sleep(0.1)
        async with http.get(f"{base_url}/api/v1/streams/{stream_id}") as response:
            view = await response.json()
    return view


async def metric(http: aiohttp.ClientSession, base_url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with http.get(f"{base_url}/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total

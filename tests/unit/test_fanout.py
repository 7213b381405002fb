"""Hub fan-out: GOP replay for new viewers, bounded queues, slow viewers skip to keyframes."""

from __future__ import annotations

import asyncio

import av
import pytest

from media_server.model.media import TIME_BASE, AccessUnit
from media_server.streams.fanout import Hub, Item, StreamEnded, Subscriber


def unit(pts: int, key: bool = False, size: int = 100) -> AccessUnit:
    data = b"\x00\x00\x00\x01" + bytes([0x65 if key else 0x41]) + bytes(size)
    return AccessUnit(data, pts, TIME_BASE, key)


async def take(sub: Subscriber) -> list[Item]:
    out = []
    while len(sub):
        out.append(await sub.get())
    return out


def pts(items: list[Item]) -> list[int | None]:
    return [item.pts for item in items]


async def test_new_viewer_starts_at_cached_keyframe() -> None:
    hub = Hub(viewer_queue=16, gop_units=64, gop_bytes=1 << 20)
    for i in range(5):
        hub.publish_unit(unit(i, key=i == 0))
    hub.publish_unit(unit(5, key=True))
    hub.publish_unit(unit(6))
    sub = hub.subscribe()
    items = await take(sub)
    assert pts(items) == [5, 6]
    assert isinstance(items[0], AccessUnit) and items[0].keyframe


async def test_no_cache_means_wait_for_next_keyframe() -> None:
    hub = Hub(viewer_queue=16, gop_units=3, gop_bytes=1 << 20)
    hub.publish_unit(unit(0, key=True))
    for i in range(1, 6):  # GOP longer than the cache: cache dropped
        hub.publish_unit(unit(i))
    sub = hub.subscribe()
    assert len(sub) == 0
    hub.publish_unit(unit(6))
    assert len(sub) == 0  # a delta frame alone is useless to a new viewer
    hub.publish_unit(unit(7, key=True))
    assert pts(await take(sub)) == [7]


async def test_slow_viewer_skips_to_next_keyframe_without_touching_others() -> None:
    hub = Hub(viewer_queue=8, gop_units=64, gop_bytes=1 << 20)
    hub.publish_unit(unit(0, key=True))
    slow, fast = hub.subscribe(), hub.subscribe()
    assert (await fast.get()).pts == 0
    for i in range(1, 20):
        hub.publish_unit(unit(i))
        await fast.get()
    assert fast.dropped == 0 and len(slow) <= 8
    assert slow.dropped > 0
    hub.publish_unit(unit(20))
    assert len(slow) == 0  # waiting for a keyframe, delta frames refused
    hub.publish_unit(unit(21, key=True))
    hub.publish_unit(unit(22))
    assert pts(await take(slow)) == [21, 22]
    await fast.get()
    await fast.get()
    assert pts(await take(fast)) == [22]


async def test_frames_drop_oldest_when_full() -> None:
    hub = Hub(viewer_queue=64, gop_units=64, gop_bytes=1 << 20, viewer_frames=8)
    sub = hub.subscribe()
    frames = []
    for i in range(12):
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = i
        frames.append(frame)
        hub.publish_frame(frame)
    got = await take(sub)
    assert pts(got) == list(range(4, 12))
    assert sub.dropped == 4
    late = hub.subscribe()
    assert (await late.get()).pts == 11


async def test_end_wakes_a_waiting_viewer() -> None:
    hub = Hub(viewer_queue=8, gop_units=64, gop_bytes=1 << 20)
    sub = hub.subscribe()
    waiter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    hub.end_all()
    with pytest.raises(StreamEnded):
        await waiter
    with pytest.raises(StreamEnded):  # and a viewer subscribing after the end ends at once
        await hub.subscribe().get()

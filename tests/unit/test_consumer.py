"""Consumers of a stream: each attaches the same way, is counted by its kind, holds an
on-demand stream open, and ends its queues when it closes.

The camera here is a loopback port nobody listens on: the on-demand stream's ingest
starts and fails to connect, which is all these tests need of it.
"""

from __future__ import annotations

import asyncio

import pytest

from media_server.config import load_settings
from media_server.ingest.guard import SourceGuard
from media_server.model.media import TIME_BASE, AccessUnit, SourceInfo
from media_server.model.registration import Registration
from media_server.streams.fanout import StreamEnded
from media_server.streams.manager import StreamManager
from tests.support.rtsp import free_port
from tests.unit.test_manager import MemoryRegistry


async def on_demand_stream() -> tuple[StreamManager, str]:
    settings = load_settings(demo=False, ingest={"on_demand_linger": 0.05})
    guard = SourceGuard.from_settings(settings)
    streams = StreamManager(settings, asyncio.get_running_loop(), MemoryRegistry(), guard)
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    await streams.create(Registration(id="od", url=url, on_demand=True))
    return streams, "od"


async def test_counted_by_kind_and_holding_an_on_demand_stream() -> None:
    streams, stream_id = await on_demand_stream()
    stream = streams.get(stream_id)
    assert stream is not None and stream.worker is None
    serving = [stream.attach(kind) for kind in ("fanout", "snapshot", "muxer")]
    assert stream.worker is None  # they serve watchers, or show what there is: no hold
    viewer, relay = stream.attach("viewer"), stream.attach("relay")
    assert stream.worker is not None  # the first consumer opened the camera
    view = stream.view()
    assert view.viewers == 1
    others = {"fanout": 1, "snapshot": 1, "muxer": 1, "mse": 0, "hls": 0, "recorder": 0}
    assert view.consumers == {"viewer": 1, "relay": 1, **others}
    viewer.close()
    viewer.close()  # idempotent: counted off once
    assert stream.view().consumers == {"viewer": 0, "relay": 1, **others}
    for consumer in (relay, *serving):
        consumer.close()
    await asyncio.sleep(0.5)  # past the linger: the camera closes for nobody
    assert stream.worker is None
    await streams.close(1.0)


async def test_queues_start_at_the_keyframe_and_end_with_the_consumer() -> None:
    streams, stream_id = await on_demand_stream()
    stream = streams.get(stream_id)
    assert stream is not None
    stream.hub.publish_unit(AccessUnit(b"\x00\x00\x01\x65key", 0, TIME_BASE, True))
    consumer = stream.attach("viewer")
    video, audio = consumer.video("units"), consumer.audio()
    assert (await video.get()).keyframe  # type: ignore[union-attr]
    waiting = asyncio.ensure_future(audio.get())
    await asyncio.sleep(0)
    consumer.close()
    with pytest.raises(StreamEnded):  # a reader waiting on a queue wakes when it ends
        await waiting
    assert len(video) == 0 and len(stream.hub._subscribers) == 0
    with pytest.raises(StreamEnded):  # a closed consumer gets an ended queue
        await consumer.video("units").get()
    assert len(stream.hub._subscribers) == 0  # ...which the hub never holds
    await streams.close(1.0)


async def test_metrics_count_consumers_by_kind_as_the_api_does() -> None:
    from media_server.metrics import Metrics
    from tests.support.streams import bare_stream

    stream = bare_stream("cam", asyncio.get_running_loop())
    fanout = stream.attach("fanout")
    metrics = Metrics()
    metrics.watch(lambda: [stream], lambda: 0.0, lambda registered: {})
    text = metrics.render().decode()
    assert 'media_server_stream_consumers{kind="fanout",stream="cam"} 1.0' in text
    assert 'media_server_stream_consumers{kind="viewer",stream="cam"} 0.0' in text
    assert stream.view().consumers["fanout"] == 1
    fanout.close()


async def test_the_transcode_is_wanted_while_consumers_take_it_and_counted_by_codec() -> None:
    """An H.265 stream passed through: consumers that take its H.264 transcode are counted
    apart (the view's video_codecs) and the ingest thread makes it only while any do; a
    change of the stream's codec tells whoever negotiated the old one."""
    streams, stream_id = await on_demand_stream()
    stream = streams.get(stream_id)
    assert stream is not None
    hevc = SourceInfo("hevc", 320, 240, 15.0, "main", b"", True)
    stream.on_info(hevc, "passthrough")
    told: list[str] = []
    stream.codec_watchers.add(lambda: told.append(str(stream.video_codec)))
    passed, transcoded = stream.attach("viewer"), stream.attach("viewer")
    assert not stream.wants_transcode
    transcoded.take_transcode()
    transcoded.take_transcode()  # once
    mse = stream.attach("mse")
    mse.take_transcode()
    assert stream.wants_transcode
    assert (passed.video_codec, transcoded.video_codec) == ("hevc", "h264")
    assert stream.view().video_codecs == {"viewer": {"hevc": 1, "h264": 1}, "mse": {"h264": 1}}
    key = AccessUnit(b"\x00\x00\x01\x65key", 0, TIME_BASE, True)
    stream.on_transcoded_unit(key)
    assert transcoded.picture() == [key] and passed.picture() is None  # each its own hub
    transcoded.close()
    mse.close()
    assert not stream.wants_transcode  # the last left: the transcode stops
    assert stream.view().video_codecs == {"viewer": {"hevc": 1}}
    stream.on_info(hevc, "passthrough")
    assert told == []  # the same codec: nobody told
    stream.on_info(hevc, "transcode")  # B-frames found: H.264 from now on
    assert told == ["h264"]
    assert stream.view().video_codecs == {"viewer": {"h264": 1}}
    passed.close()
    await streams.close(1.0)

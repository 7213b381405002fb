"""Recording against a real gateway and camera: a stream's fMP4 written to disk as segment
files that FFmpeg plays, each from a keyframe, named by its UTC start, with the camera's
audio; an on-demand camera that records stays open; one that does not record writes
nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import av
import pytest

from media_server.egress.recorder import parse_name, segment_start
from tests.support.api import live, metric, wait_state
from tests.support.gateway import FAST, GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer, start_rtsp_server

pytestmark = pytest.mark.e2e

SEGMENT = 2.0


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def gw(recordings: Path) -> Iterator[Gateway]:
    env = {
        **GENEROUS,
        **FAST,
        "MEDIA_SERVER_RECORD__DIRECTORY": str(recordings),
        "MEDIA_SERVER_RECORD__SEGMENT_DURATION": str(SEGMENT),
    }
    with run_gateway("--no-demo", env=env) as gw:
        yield gw


def play(path: Path) -> tuple[list[av.VideoFrame], int]:
    """The file's pictures (decoded) and audio frames, as FFmpeg reads them."""
    with av.open(str(path)) as container:
        assert isinstance(container, av.container.InputContainer)
        streams = [container.streams.video[0], *container.streams.audio[:1]]
        pictures, sounds = [], 0
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    pictures.append(frame)
                else:
                    sounds += 1
    return pictures, sounds


def at(frame: av.VideoFrame) -> float:
    assert frame.pts is not None and frame.time_base is not None
    return float(frame.pts * frame.time_base)


async def test_a_recorded_stream_is_kept_as_segments_that_play(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer, recordings: Path
) -> None:
    began = time.time()
    await live(http, gw.base_url, "rec", rtsp.url("/av-opus"), record=True)
    await asyncio.sleep(3 * SEGMENT + 1.5)
    query = {"start": iso(began - 60), "end": iso(time.time() + 1)}
    async with http.get(f"{gw.base_url}/api/v1/streams/rec/recordings", params=query) as resp:
        spans = (await resp.json())["spans"]
    # Segments that follow each other are one span, the one being written included.
    assert len(spans) == 1 and stamp(spans[0]["end"]) - stamp(spans[0]["start"]) > 3 * SEGMENT
    async with http.delete(f"{gw.base_url}/api/v1/streams/rec") as resp:
        assert resp.status == 204  # the last segment ends with the stream
    await asyncio.sleep(0.5)
    files = sorted((recordings / "rec").iterdir())
    assert len(files) >= 3, files
    # Each closed segment is named by its start and its length.
    lengths = [parse_name(f.name) for f in files]
    assert all(n is not None and n[1] is not None for n in lengths), files
    starts = [segment_start(f.name) for f in files]
    assert all(s is not None and began - 1 < s < time.time() for s in starts), files
    for path in files:
        pictures, sounds = play(path)
        assert pictures and pictures[0].key_frame, path  # each starts at a keyframe
        assert {(p.width, p.height) for p in pictures} == {(320, 240)}
        assert sounds > 0, path  # the camera's audio goes along
        seconds = (at(pictures[-1]) - at(pictures[0])) + 1 / 15  # the last picture's too
        if path != files[-1]:  # whole segments: cut at the first keyframe 2 s in (GOP 1 s)
            assert abs(seconds - SEGMENT) < 0.1, (path, seconds)
    print(f"{len(files)} segments: {[f.name for f in files]}")
    times = [datetime.fromtimestamp(s, UTC) for s in starts if s is not None]
    assert times == sorted(times)


async def test_an_on_demand_camera_that_records_stays_open(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer, recordings: Path
) -> None:
    """Recording holds the stream as a viewer would; a stream that does not record is
    left alone and writes nothing."""
    await live(http, gw.base_url, "od-rec", rtsp.url("/small"), on_demand=True, record=True)
    async with http.post(
        f"{gw.base_url}/api/v1/streams",
        json={"id": "od-plain", "url": rtsp.url("/small"), "on_demand": True},
    ) as resp:
        assert resp.status == 201
    await asyncio.sleep(2.0)
    async with http.get(f"{gw.base_url}/api/v1/streams/od-rec") as resp:
        view = await resp.json()
    assert view["state"] == "live" and view["consumers"]["recorder"] == 1, view
    assert view["record"] is True
    await wait_state(http, gw.base_url, "od-plain", "idle")
    assert not (recordings / "od-plain").exists()
    for stream_id in ("od-rec", "od-plain"):
        async with http.delete(f"{gw.base_url}/api/v1/streams/{stream_id}"):
            pass
    files = list((recordings / "od-rec").iterdir())
    assert files and play(files[0])[0]


async def test_a_kill_9_mid_segment_leaves_a_file_that_plays_and_a_restart_goes_on(
    http: aiohttp.ClientSession, rtsp: RtspServer, tmp_path: Path
) -> None:
    """Fragments go to the file whole as they are made: what a crash leaves plays up to
    the crash. The gateway started again (the same registry) records on, in a new file."""
    env = {
        **GENEROUS,
        **FAST,
        "MEDIA_SERVER_RECORD__DIRECTORY": str(tmp_path / "rec"),
        "MEDIA_SERVER_RECORD__SEGMENT_DURATION": "30",
        "MEDIA_SERVER_REGISTRY__PATH": str(tmp_path / "registry.sqlite3"),
    }
    with run_gateway("--no-demo", env=env) as gw:
        await live(http, gw.base_url, "crash", rtsp.url("/small"), record=True)
        await asyncio.sleep(3.5)
        os.kill(gw.pid, signal.SIGKILL)
        killed = time.time()
        gw.proc.wait(10)
    (cut,) = list((tmp_path / "rec" / "crash").iterdir())
    start = segment_start(cut.name)
    assert start is not None
    pictures, _ = play(cut)
    recorded = at(pictures[-1]) - at(pictures[0])
    # Up to the kill: all but what the camera's pipeline and the muxer still held.
    assert killed - start - 0.5 < recorded + 1 / 15 <= killed - start + 0.1, (recorded, start)
    with run_gateway("--no-demo", env=env) as gw:
        await wait_state(http, gw.base_url, "crash", "live")
        await asyncio.sleep(2.0)
    files = sorted((tmp_path / "rec" / "crash").iterdir())
    assert len(files) == 2, files
    # The cut file was finalized before the new recorder wrote: named with its length.
    finalized = parse_name(files[0].name)
    assert finalized is not None and finalized[0] == start, files
    assert finalized[1] is not None and abs(finalized[1] - recorded - 1 / 15) < 0.01
    assert play(files[0])[0] and play(files[1])[0], files


async def test_a_camera_outage_is_a_gap_between_recorded_spans(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Spans join the segments that follow each other; while the camera was down nothing
    is recorded, and the spans say so (GET .../recordings). Segments here are longer than
    the whole test: only `record.gap` ends the one the outage falls in (without it, the
    muxer's timeline would carry the segment across, as one long picture)."""
    camera = start_rtsp_server()
    port = camera.port
    env = {
        **GENEROUS,
        **FAST,
        "MEDIA_SERVER_RECORD__DIRECTORY": str(tmp_path),
        "MEDIA_SERVER_RECORD__SEGMENT_DURATION": "60",
    }
    try:
        with run_gateway("--no-demo", env=env) as gw:
            await outage_spans(http, gw, camera, port)
    finally:
        camera.stop()


async def outage_spans(
    http: aiohttp.ClientSession, gw: Gateway, camera: RtspServer, port: int
) -> None:
    try:
        began = time.time()
        await live(http, gw.base_url, "outage", camera.url("/small"), record=True)
        await asyncio.sleep(4.5)
        camera.terminate()
        down = time.time()
        await asyncio.sleep(3.0)
        camera = start_rtsp_server(port)
        await wait_state(http, gw.base_url, "outage", "live")
        up = time.time()
        await asyncio.sleep(2.5)
        query = {"start": iso(began - 60), "end": iso(time.time() + 1)}
        url = f"{gw.base_url}/api/v1/streams/outage/recordings"
        async with http.get(url, params=query) as resp:
            assert resp.status == 200, await resp.text()
            spans = [(stamp(s["start"]), stamp(s["end"])) for s in (await resp.json())["spans"]]
        assert len(spans) == 2, spans
        (first_start, first_end), (second_start, second_end) = spans
        assert began <= first_start < first_end <= down + 0.1, (spans, began, down)
        assert first_end - first_start > 3.5
        assert down + 2.5 < second_start <= up + 1.5, (spans, down, up)  # the gap stays
        assert second_end > second_start
        # A range inside the first span is cut to it.
        inside = {"start": iso(first_start + 1), "end": iso(first_start + 2)}
        async with http.get(url, params=inside) as resp:
            cut = (await resp.json())["spans"]
        assert [(stamp(s["start"]), stamp(s["end"])) for s in cut] == [
            pytest.approx((first_start + 1, first_start + 2), abs=0.002)
        ]
        for bad in ({"start": "yesterday"}, {"start": iso(down), "end": iso(began)}):
            async with http.get(url, params=bad) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["code"] == "invalid-query"
        async with http.get(f"{gw.base_url}/api/v1/streams/nope/recordings") as resp:
            assert resp.status == 404
    finally:
        camera.stop()


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_size_limit_deletes_the_oldest_segments_first(
    http: aiohttp.ClientSession, rtsp: RtspServer, tmp_path: Path
) -> None:
    """One-second segments under a per-stream limit of about three: the oldest go, the
    newest stay, and the deletions are counted (metrics)."""
    env = {
        **GENEROUS,
        **FAST,
        "MEDIA_SERVER_RECORD__DIRECTORY": str(tmp_path),
        "MEDIA_SERVER_RECORD__SEGMENT_DURATION": "1",
        "MEDIA_SERVER_RECORD__MAX_STREAM_BYTES": str(3 * 60_000),
        "MEDIA_SERVER_RECORD__SWEEP_INTERVAL": "0.5",
    }
    with run_gateway("--no-demo", env=env) as gw:
        await live(http, gw.base_url, "small", rtsp.url("/small"), record=True)
        folder = tmp_path / "small"
        seen: set[str] = set()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(seen) < 10:
            seen |= {p.name for p in folder.iterdir()}
            await asyncio.sleep(0.2)
        assert len(seen) >= 10, seen
        await asyncio.sleep(1.0)  # a sweep after the last look
        left = sorted(p.name for p in folder.iterdir())
        assert len(left) < 8, left
        starts = sorted({segment_start(name) or 0.0 for name in seen})
        kept = [start for name in left if (start := segment_start(name) or 0.0) in starts]
        assert kept == starts[-len(kept) :], (left, seen)  # the oldest went, the newest stay
        closed = [
            (folder / name).stat().st_size for name in left if (parse_name(name) or (0, 0))[1]
        ]
        assert sum(closed[:-1]) <= 3 * 60_000, left  # the newest of them may pass it
        deleted = await metric(
            http, gw.base_url, "media_server_recording_deletions_total", reason="stream"
        )
        assert deleted >= len(starts) - len(kept) - 1, deleted

"""Cameras fail, gateways die, viewers stay: real RTSP servers and gateway processes."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api import register, wait_state
from tests.support.gateway import FAST, Gateway, run_gateway
from tests.support.rtsp import RtspServer, free_port, start_rtsp_server
from tests.support.viewer import Viewer, frames_between, unwrap

pytestmark = pytest.mark.e2e


@pytest.fixture
def camera() -> Iterator[RtspServer]:
    """A camera of the test's own, which it may kill, freeze and restart."""
    with start_rtsp_server() as server:
        yield server


@pytest.fixture
def fast_gateway() -> Iterator[Gateway]:
    with run_gateway("--no-demo", env=FAST) as gw:
        yield gw


async def test_viewer_survives_camera_restart(
    http: aiohttp.ClientSession, fast_gateway: Gateway, camera: RtspServer
) -> None:
    gw = fast_gateway
    port = camera.port
    await register(http, gw.base_url, id="cam", url=camera.url("/small"), mode="passthrough")
    await wait_state(http, gw.base_url, "cam", "live")
    viewer = Viewer(gw.base_url, "cam")
    await viewer.connect()
    try:
        await viewer.wait_frames(15)
        camera.proc.kill()  # the camera dies: no TEARDOWN, no goodbye
        camera.proc.wait()
        await wait_state(http, gw.base_url, "cam", "reconnecting", timeout=10)
        outage_start = time.monotonic()
        frames_at_outage = viewer.frames
        await asyncio.sleep(2)
        with start_rtsp_server(port=port):
            await wait_state(http, gw.base_url, "cam", "live", timeout=15)
            await viewer.wait_frames(frames_at_outage + 15, timeout=15)
        outage = time.monotonic() - outage_start
        assert viewer.pc.connectionState == "connected"  # the same session, never renegotiated
        stamps = unwrap([pts for _, pts in viewer.timeline])
        steps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(step > 0 for step in steps), "RTP timestamps went backwards"
        # The new camera starts its clock at zero; viewers see the outage as a gap in time.
        assert max(steps) >= 0.5 * outage * 90_000
    finally:
        await viewer.close()


async def test_camera_down_at_registration_goes_live_when_it_appears(
    http: aiohttp.ClientSession, fast_gateway: Gateway
) -> None:
    gw = fast_gateway
    port = free_port()
    status, _body = await register(
        http, gw.base_url, id="late", url=f"rtsp://127.0.0.1:{port}/small"
    )
    assert status == 201
    view = await wait_state(http, gw.base_url, "late", "reconnecting")
    assert view["error"]
    await asyncio.sleep(1.5)
    with start_rtsp_server(port=port):
        view = await wait_state(http, gw.base_url, "late", "live", timeout=15)
    assert view["counters"]["reconnects"] >= 1


async def test_circuit_breaker_fails_then_probes_until_the_camera_answers(
    http: aiohttp.ClientSession, fast_gateway: Gateway
) -> None:
    gw = fast_gateway
    port = free_port()
    policy = {
        "strategy": "fixed",
        "initial": 0.2,
        "max": 1,
        "breaker_failures": 3,
        "breaker_window": 30,
        "probe_interval": 1.5,
    }
    url = f"rtsp://127.0.0.1:{port}/small"
    status, body = await register(http, gw.base_url, id="brk", url=url, reconnect=policy)
    assert status == 201 and body["reconnect"]["breaker_failures"] == 3
    view = await wait_state(http, gw.base_url, "brk", "failed", timeout=10)
    assert view["error"]
    with start_rtsp_server(port=port):
        await wait_state(http, gw.base_url, "brk", "live", timeout=10)
    async with http.get(f"{gw.base_url}/metrics") as resp:
        metrics = await resp.text()
    lines = [line for line in metrics.splitlines() if "transitions_total" in line]
    assert 'media_server_stream_transitions_total{state="failed",stream="brk"} 1.0' in lines, lines
    assert 'media_server_stream_transitions_total{state="live",stream="brk"} 1.0' in metrics
    assert "brk: reconnecting -> failed" in gw.stderr_text()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_stalled_session_is_torn_down_and_reconnected(
    http: aiohttp.ClientSession, fast_gateway: Gateway, camera: RtspServer, transport: str
) -> None:
    gw = fast_gateway
    sid = f"stall-{transport}"
    await register(http, gw.base_url, id=sid, url=camera.url("/small"), transport=transport)
    await wait_state(http, gw.base_url, sid, "live")
    os.kill(camera.proc.pid, signal.SIGSTOP)  # connected, silent: a hung TCP session
    try:
        view = await wait_state(http, gw.base_url, sid, "reconnecting", timeout=10)
        assert view["error"]
    finally:
        os.kill(camera.proc.pid, signal.SIGCONT)
    await wait_state(http, gw.base_url, sid, "live", timeout=15)


async def test_registry_survives_kill_9(
    http: aiohttp.ClientSession, camera: RtspServer, tmp_path: Path
) -> None:
    env = {**FAST, "MEDIA_SERVER_REGISTRY__PATH": str(tmp_path / "registry.sqlite3")}
    bodies: list[dict[str, Any]] = [
        {"id": "a", "url": camera.url("/small")},
        {"id": "b", "url": camera.url("/small"), "mode": "transcode", "transport": "udp"},
        {"id": "c", "url": camera.url("/small"), "on_demand": True},
        {"id": "d", "url": camera.url("/small"), "reconnect": {"strategy": "linear"}},
    ]
    with run_gateway("--no-demo", env=env) as gw:
        for body in bodies:
            status, _ = await register(http, gw.base_url, **body)
            assert status == 201
        os.kill(gw.pid, signal.SIGKILL)  # right after the last acknowledgement
        gw.proc.wait()
    with run_gateway("--no-demo", env=env) as gw:
        async with http.get(f"{gw.base_url}/api/v1/streams") as resp:
            streams = {s["id"]: s for s in (await resp.json())["streams"]}
        assert set(streams) == {"a", "b", "c", "d"}
        assert streams["b"]["mode"] == "transcode" and streams["b"]["transport"] == "udp"
        assert streams["c"]["on_demand"] is True and streams["c"]["state"] == "idle"
        assert streams["d"]["reconnect"]["strategy"] == "linear"
        await wait_state(http, gw.base_url, "a", "live")
        # The same body again is still the same stream: 200, not a duplicate.
        status, _ = await register(http, gw.base_url, **bodies[0])
        assert status == 200
        async with http.delete(f"{gw.base_url}/api/v1/streams/a") as resp:
            assert resp.status == 204
    with run_gateway("--no-demo", env=env) as gw:
        async with http.get(f"{gw.base_url}/api/v1/streams") as resp:
            assert {s["id"] for s in (await resp.json())["streams"]} == {"b", "c", "d"}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"this is not a database, just some text" * 100, "unreadable"),
        (None, "malformed"),
    ],
)
def test_corrupt_store_stops_startup(tmp_path: Path, content: bytes | None, says: str) -> None:
    path = tmp_path / "registry.sqlite3"
    if content is None:  # a valid database holding a row we did not write
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE streams (id TEXT PRIMARY KEY, spec TEXT, updated_at REAL)")
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO streams VALUES ('x', '{\"id\": 1}', 0)")
        db.commit()
        db.close()
    else:
        path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "media_server", "--port", str(free_port()), "--no-demo"],
        env={**os.environ, "MEDIA_SERVER_REGISTRY__PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"registry store {path}" in proc.stderr and says in proc.stderr


async def test_drain_on_sigterm(http: aiohttp.ClientSession) -> None:
    env = {"MEDIA_SERVER_DRAIN_TIMEOUT": "4"}
    with run_gateway(env=env) as gw:
        viewer = Viewer(gw.base_url, "demo")
        await viewer.connect()
        await viewer.wait_frames(10)
        os.kill(gw.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with http.get(f"{gw.base_url}/api/v1/health/ready") as resp:
            assert resp.status == 503
            assert (await resp.json())["components"]["http"]["draining"] is True
        late = Viewer(gw.base_url, "demo", "whep")
        with pytest.raises(AssertionError, match="WHEP answered 503"):
            await late.connect()
        await late.close()
        async with http.ws_connect(f"{gw.base_url}/ws/demo") as ws:
            await ws.send_json({"type": "offer", "sdp": viewer.pc.localDescription.sdp})
            msg = await ws.receive_json(timeout=5)
            assert msg["type"] == "error" and msg["code"] == "shutting-down"
        # The viewer that was already watching runs on through the drain.
        before = viewer.frames
        await asyncio.sleep(1.5)
        assert viewer.frames - before >= 20
        assert gw.proc.poll() is None
        while gw.proc.poll() is None and time.monotonic() - started < 12:
            await asyncio.sleep(0.1)
        took = time.monotonic() - started
        assert gw.proc.returncode == 0, gw.describe()
        assert 2.5 < took < 9, f"stopped {took:.1f} s after the drain began"
        await viewer.close()


async def test_on_demand_seen_from_the_camera(
    http: aiohttp.ClientSession, camera: RtspServer
) -> None:
    env = {**FAST, "MEDIA_SERVER_INGEST__ON_DEMAND_LINGER": "1"}
    with run_gateway("--no-demo", env=env) as gw:
        await register(http, gw.base_url, id="od", url=camera.url("/small"), on_demand=True)
        await asyncio.sleep(1)
        assert camera.client_connections() == 0  # nobody watches: the camera is never opened
        viewer = Viewer(gw.base_url, "od")
        await viewer.connect()
        await viewer.wait_frames(10)
        assert camera.clients() == 1
        await viewer.close()
        await asyncio.sleep(0.5)
        assert camera.clients() == 1  # lingering
        await wait_state(http, gw.base_url, "od", "idle", timeout=10)
        for _ in range(50):
            if camera.clients() == 0:
                break
            await asyncio.sleep(0.1)
        assert camera.clients() == 0 and camera.client_connections() == 1


async def test_frozen_viewer_does_not_slow_others(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    frozen = subprocess.Popen(
        [sys.executable, "-m", "tests.support.viewer", gateway.base_url, "demo"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    watcher = Viewer(gateway.base_url, "demo")
    try:
        assert frozen.stdout is not None
        assert frozen.stdout.readline().strip() == b"PLAYING"
        await watcher.connect()
        await watcher.wait_frames(10)
        await asyncio.sleep(3)
        before_end = time.monotonic()
        os.kill(frozen.pid, signal.SIGSTOP)  # reads nothing, answers nothing
        await asyncio.sleep(3)
        during_end = time.monotonic()
        before = frames_between(watcher, before_end - 3, before_end)
        during = frames_between(watcher, during_end - 3, during_end)
        assert before > 60 and during >= 0.9 * before, (before, during)
    finally:
        os.kill(frozen.pid, signal.SIGKILL)
        frozen.wait()
        await watcher.close()


async def test_admission_limits(http: aiohttp.ClientSession, camera: RtspServer) -> None:
    env = {"MEDIA_SERVER_LIMITS__VIEWERS_PER_STREAM": "1", "MEDIA_SERVER_LIMITS__STREAMS": "2"}
    with run_gateway(env=env) as gw:
        first = Viewer(gw.base_url, "demo")
        await first.connect()
        second = Viewer(gw.base_url, "demo", "whep")
        with pytest.raises(AssertionError, match=r"503.*stream-full"):
            await second.connect()
        await second.close()
        status, _ = await register(http, gw.base_url, id="one", url=camera.url("/small"))
        assert status == 201
        status, body = await register(http, gw.base_url, id="two", url=camera.url("/small"))
        assert status == 503 and body["error"]["code"] == "capacity"
        await first.wait_frames(30)  # the admitted viewer never noticed
        await first.close()
        # Freed capacity is usable again.
        third = Viewer(gw.base_url, "demo")
        await third.connect()
        await third.wait_frames(5)
        await third.close()


async def test_deleting_hung_streams_disturbs_no_one(
    http: aiohttp.ClientSession, fast_gateway: Gateway, camera: RtspServer
) -> None:
    """Ingest threads stuck on silent cameras let go in the background; viewers carry on."""
    gw = fast_gateway
    held: list[asyncio.StreamWriter] = []  # connections accepted and never answered

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        await register(http, gw.base_url, id="tv", url=camera.url("/small"), mode="transcode")
        await wait_state(http, gw.base_url, "tv", "live")
        for i in range(8):
            await register(http, gw.base_url, id=f"hung{i}", url=f"rtsp://127.0.0.1:{port}/x")
        viewer = Viewer(gw.base_url, "tv")
        await viewer.connect()
        await viewer.wait_frames(10)
        await asyncio.sleep(3)
        mark = time.monotonic()
        deletes = [http.delete(f"{gw.base_url}/api/v1/streams/hung{i}") for i in range(8)]
        for resp in await asyncio.gather(*deletes):
            assert resp.status == 204
        await asyncio.sleep(3)
        before = frames_between(viewer, mark - 3, mark)
        after = frames_between(viewer, mark, mark + 3)
        assert before >= 30 and after >= 0.8 * before, (before, after)
        await viewer.close()
    finally:
        for writer in held:
            writer.close()
        silent.close()

"""Process lifecycle: graceful stop with viewers attached, auth tokens, start-up failures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from tests.support.api import live, register, wait_state
from tests.support.gateway import run_gateway
from tests.support.rtsp import RtspServer
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_stop_with_viewers_and_cameras(
    http: aiohttp.ClientSession, rtsp: RtspServer, sig: signal.Signals
) -> None:
    with run_gateway() as gw:
        await live(http, gw.base_url, "cam", rtsp.url("/small"))
        viewers = [Viewer(gw.base_url, "demo"), Viewer(gw.base_url, "cam", "whep")]
        for v in viewers:
            await v.connect()
            await v.wait_frames(10)
        started = time.monotonic()
        os.kill(gw.pid, sig)
        code = await _wait_exit(gw.proc, 12)
        took = time.monotonic() - started
        for v in viewers:
            await v.close()
        assert code == 0, gw.describe()
        assert took < 10, f"took {took:.1f} s to stop"
        log = gw.stderr_text()
        assert "Traceback" not in log, gw.describe()
        assert "stopped" in log


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return proc.poll()


async def test_control_plane_tokens(http: aiohttp.ClientSession) -> None:
    env = {"MEDIA_SERVER_AUTH__TOKENS": '["sesame-open"]'}
    with run_gateway("--no-demo", env=env) as gw:
        url = f"{gw.base_url}/api/v1/streams"
        async with http.get(url) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthorized"
        async with http.get(url, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401
        async with http.get(url, headers={"Authorization": "Bearer sesame-open"}) as resp:
            assert resp.status == 200 and (await resp.json()) == {"streams": []}
        async with http.get(f"{gw.base_url}/api/v1/health") as resp:
            assert resp.status == 200  # liveness stays open for orchestrators


def test_port_in_use_is_a_clear_error() -> None:
    with run_gateway("--no-demo") as gw:
        proc = subprocess.run(
            [sys.executable, "-m", "media_server", "--port", str(gw.port), "--no-demo"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{gw.port}" in proc.stderr


async def test_on_demand_opens_on_first_viewer_and_idles_after_last(
    http: aiohttp.ClientSession, rtsp: RtspServer
) -> None:
    env = {"MEDIA_SERVER_INGEST__ON_DEMAND_LINGER": "1.0"}
    with run_gateway("--no-demo", env=env) as gw:
        status, body = await register(
            http, gw.base_url, id="od", url=rtsp.url("/small"), on_demand=True
        )
        assert status == 201 and body["state"] == "idle"
        await asyncio.sleep(1.0)
        async with http.get(f"{gw.base_url}/api/v1/streams/od") as resp:
            view = await resp.json()
        assert view["state"] == "idle" and view["counters"]["packets_in"] == 0  # camera unopened
        viewer = Viewer(gw.base_url, "od", "whep")
        await viewer.connect()
        await viewer.wait_frames(20)
        assert (await wait_state(http, gw.base_url, "od", "live"))["viewers"] == 1
        # The viewer goes away without a WHEP DELETE: its DTLS close alone releases it.
        await viewer.pc.close()
        view = await wait_state(http, gw.base_url, "od", "idle", timeout=15)
        assert view["viewers"] == 0
        async with http.get(f"{gw.base_url}/api/v1/health/ready") as resp:
            assert (await resp.json())["components"]["webrtc"]["sessions"] == 0
        viewer.whep_location = None
        await viewer.close()
        # And it opens again for the next viewer.
        again = Viewer(gw.base_url, "od")
        await again.connect()
        await again.wait_frames(20)
        await again.close()


@pytest.mark.parametrize(("loop", "codec"), [("uvloop", "orjson"), ("asyncio", "stdlib")])
async def test_transports_by_configuration(
    http: aiohttp.ClientSession, loop: str, codec: str
) -> None:
    env = {"MEDIA_SERVER_RUNTIME__LOOP": loop, "MEDIA_SERVER_RUNTIME__JSON_CODEC": codec}
    with run_gateway(env=env) as gw:
        viewer = Viewer(gw.base_url, "demo")
        await viewer.connect()
        await viewer.wait_frames(20)
        await viewer.close()
        async with http.ws_connect(f"{gw.base_url}/ws/demo") as ws:
            await ws.send_str("{broken")
            assert (await ws.receive_json(timeout=5))["code"] == "invalid-json"
        async with http.get(f"{gw.base_url}/metrics") as resp:
            metrics = await resp.text()
        assert f'json_codec="{codec}",loop="{loop}"' in metrics

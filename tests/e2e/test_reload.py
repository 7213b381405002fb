"""Cameras in the config file, reloaded live: SIGHUP (or a watched file) applies the
difference while a viewer of an unchanged stream keeps its frame rate; a broken file
changes nothing; the API cannot remove what the file declares."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api import register, wait_state
from tests.support.gateway import FAST, GENEROUS, Gateway, GatewayError, run_gateway
from tests.support.rtsp import RtspServer
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e

CREDENTIALS = {"CAM_USER": "operator", "CAM_PASSWORD": "s3cret-from-env"}


def camera(rtsp: RtspServer, generation: str) -> str:
    """A /small URL (320x240 at 15 fps) with credentials from the environment."""
    url = rtsp.url("/small").replace("rtsp://", "rtsp://${CAM_USER}:${CAM_PASSWORD}@")
    return f"{url}?gen={generation}"


def write_config(path: Path, streams: list[dict[str, Any]], extra: str = "") -> None:
    lines = [extra, "streams:"] if streams else [extra, "streams: []"]
    for stream in streams:
        lines.append(f"  - id: {stream['id']}")
        for key, value in stream.items():
            if key != "id":
                lines.append(f"    {key}: {value}")
    path.write_text("\n".join(lines) + "\n")


async def streams_of(http: aiohttp.ClientSession, gw: Gateway) -> dict[str, dict[str, Any]]:
    async with http.get(f"{gw.base_url}/api/v1/streams") as resp:
        return {s["id"]: s for s in (await resp.json())["streams"]}


async def test_reload_applies_the_difference(
    http: aiohttp.ClientSession, rtsp: RtspServer, tmp_path: Path
) -> None:
    config = tmp_path / "media_server.yaml"
    write_config(
        config,
        [
            {"id": "keep", "url": camera(rtsp, "keep")},
            {"id": "gone", "url": camera(rtsp, "gone")},
            {"id": "change", "url": camera(rtsp, "c1")},
        ],
    )
    env = {**GENEROUS, **FAST, **CREDENTIALS}
    with run_gateway("--no-demo", "--config", str(config), env=env) as gw:
        for sid in ("keep", "gone", "change"):
            view = await wait_state(http, gw.base_url, sid, "live")
            assert view["managed_by"] == "config"
            assert CREDENTIALS["CAM_PASSWORD"] not in view["url"]  # from the env, redacted
        status, body = await register(http, gw.base_url, id="api-cam", url=rtsp.url("/small"))
        assert status == 201, body
        async with http.delete(f"{gw.base_url}/api/v1/streams/keep") as resp:
            body = await resp.json()
            assert resp.status == 409 and body["error"]["code"] == "managed-by-config", body
        viewer = Viewer(gw.base_url, "keep")
        try:
            await viewer.connect()
            await viewer.wait_frames(15)

            write_config(
                config,
                [
                    {"id": "keep", "url": camera(rtsp, "keep")},
                    {"id": "change", "url": camera(rtsp, "c2")},
                    {"id": "new", "url": camera(rtsp, "new")},
                ],
            )
            before, began = viewer.frames, time.monotonic()
            os.kill(gw.pid, signal.SIGHUP)
            await wait_state(http, gw.base_url, "new", "live")
            view = await wait_state(http, gw.base_url, "change", "live")
            assert view["url"].endswith("gen=c2"), view
            streams = await streams_of(http, gw)
            assert "gone" not in streams and "api-cam" in streams  # the API's stream stays
            await asyncio.sleep(max(0.0, 4.0 - (time.monotonic() - began)))
            # The unchanged stream's viewer kept its session and its frame rate (15 fps).
            rate = (viewer.frames - before) / (time.monotonic() - began)
            assert rate >= 12, f"{rate:.1f} fps across the reload"
            assert viewer.pc.connectionState == "connected"
            assert "reloaded" in gw.stderr_text() and "added ['new']" in gw.stderr_text()

            # A file that does not validate changes nothing at all.
            before_broken = await streams_of(http, gw)
            config.write_text("streams:\n  - id: bad\n    url: file:///etc/passwd\n")
            os.kill(gw.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "reload refused" not in gw.stderr_text():
                assert time.monotonic() < deadline, gw.stderr_tail()
                await asyncio.sleep(0.1)
            after_broken = await streams_of(http, gw)
            assert set(after_broken) == set(before_broken)
            assert all(after_broken[i]["url"] == before_broken[i]["url"] for i in after_broken)
            # Nor does one that declares a stream the API registered.
            write_config(config, [{"id": "api-cam", "url": camera(rtsp, "x")}])
            os.kill(gw.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while gw.stderr_text().count("reload refused") < 2:
                assert time.monotonic() < deadline, gw.stderr_tail()
                await asyncio.sleep(0.1)
            assert set(await streams_of(http, gw)) == set(before_broken)
            assert viewer.pc.connectionState == "connected"
        finally:
            await viewer.close()


async def test_watched_file_reloads_by_itself(
    http: aiohttp.ClientSession, rtsp: RtspServer, tmp_path: Path
) -> None:
    config = tmp_path / "media_server.yaml"
    write_config(config, [], extra="watch_config: true")
    with run_gateway(
        "--no-demo", "--config", str(config), env={**GENEROUS, **FAST, **CREDENTIALS}
    ) as gw:
        assert await streams_of(http, gw) == {}
        write_config(config, [{"id": "watched", "url": camera(rtsp, "w")}], "watch_config: true")
        await wait_state(http, gw.base_url, "watched", "live")
        write_config(config, [], extra="watch_config: true")
        deadline = time.monotonic() + 10
        while "watched" in await streams_of(http, gw):
            assert time.monotonic() < deadline, gw.stderr_tail()
            await asyncio.sleep(0.1)


def test_config_streams_conflicting_with_the_registry_stop_start_up(
    rtsp: RtspServer, tmp_path: Path
) -> None:
    registry = tmp_path / "registry.sqlite3"
    env = {**GENEROUS, "MEDIA_SERVER_REGISTRY__PATH": str(registry)}
    with run_gateway("--no-demo", env=env) as gw:
        request = urllib.request.Request(
            gw.url("/api/v1/streams"),
            json.dumps({"id": "cam", "url": rtsp.url("/small")}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
    config = tmp_path / "media_server.yaml"
    write_config(config, [{"id": "cam", "url": rtsp.url("/small")}])
    starting = run_gateway("--no-demo", "--config", str(config), env=env, attempts=1)
    with pytest.raises(GatewayError, match="already registered"), starting:
        pass

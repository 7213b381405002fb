"""What operators watch: the live event stream, /stats, snapshots, metrics, logs, dashboard."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from tests.support.api import live, register
from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer
from tests.support.viewer import watch

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "media_server.json"
PROMTOOL = shutil.which("promtool")


async def next_streams(resp: aiohttp.ClientResponse, timeout: float = 10) -> list[dict[str, Any]]:
    """The next `streams` event of a server-sent event stream."""
    event, data = "", []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(resp.content.readline(), deadline - time.monotonic())
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            if event == "streams":
                streams: list[dict[str, Any]] = json.loads("\n".join(data))["streams"]
                return streams
            event, data = "", []
    raise AssertionError("no streams event in time")


async def test_event_stream_follows_streams_as_they_come_and_go(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    async with http.get(f"{gateway.base_url}/api/v1/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = {s["id"]: s for s in await next_streams(resp)}
        assert first["demo"]["state"] == "live"
        status, _ = await register(http, gateway.base_url, id="evt", url=rtsp.url("/small"))
        assert status == 201
        began = time.monotonic()
        states = []
        while "live" not in states:
            streams = {s["id"]: s for s in await next_streams(resp)}
            if "evt" in streams:
                states.append(streams["evt"]["state"])
        # Changes arrive as they happen, not on the 2 s refresh.
        assert time.monotonic() - began < 10, states
        async with http.delete(f"{gateway.base_url}/api/v1/streams/evt") as gone:
            assert gone.status == 204
        for _ in range(5):
            if "evt" not in {s["id"] for s in await next_streams(resp, timeout=3)}:
                break
        else:
            raise AssertionError("the removed stream stayed in the event stream")


async def test_stats_is_compact_json_with_process_figures(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    async with http.get(f"{gateway.base_url}/stats") as resp:
        assert resp.status == 200
        stats = await resp.json()
    assert stats["process"]["rss_bytes"] > 10_000_000
    assert stats["process"]["cpu_seconds"] > 0
    assert stats["streams"]["by_state"].get("live", 0) >= 1
    demo = next(s for s in stats["stream"] if s["id"] == "demo")
    assert demo["resolution"] == "640x480" and demo["codec"] == "h264"


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "not a whole JPEG"
    decoder = av.CodecContext.create("mjpeg", "r")
    (frame,) = decoder.decode(av.Packet(data))
    assert isinstance(frame, av.VideoFrame)
    return frame.width, frame.height


async def test_snapshot_is_one_jpeg_of_the_right_size_however_many_ask(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    url = f"{gateway.base_url}/api/v1/streams/demo/snapshot.jpg"

    async def fetch() -> bytes:
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            return await resp.read()

    pictures = await asyncio.gather(*(fetch() for _ in range(40)))
    assert jpeg_size(pictures[0]) == (640, 480)
    # Forty at once share one decode (and its cache): at most two different pictures.
    assert len(set(pictures)) <= 2
    async with http.get(f"{gateway.base_url}/api/v1/streams/nope/snapshot.jpg") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "stream-not-found"


async def test_metrics_follow_prometheus_conventions_and_count_egress(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    await watch(gateway.base_url, "demo", frames=20)
    async with http.get(f"{gateway.base_url}/metrics") as resp:
        text = await resp.text()
    sent = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('media_server_egress_packets_total{stream="demo"')
    ]
    assert sent and sum(sent) > 20, sent
    assert re.search(r"media_server_time_to_first_frame_seconds_count\{[^}]*\} [1-9]", text)
    assert "process_resident_memory_bytes" in text
    assert PROMTOOL, "promtool (Debian's prometheus package) is installed by scripts/setup.sh"
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def dashboard_metrics() -> set[str]:
    names = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\b((?:media_server|process)_[a-z_]+)", target["expr"]))
    return names


async def test_dashboard_shows_metrics_the_gateway_exports(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["panels"] and all(p["targets"] for p in board["panels"])
    await watch(gateway.base_url, "demo", frames=5)
    async with http.get(f"{gateway.base_url}/metrics") as resp:
        exported = {
            line.split("{")[0].split(" ")[0]
            for line in (await resp.text()).splitlines()
            if line and not line.startswith("#")
        }
    missing = {name for name in dashboard_metrics() if name not in exported}
    assert not missing, f"the dashboard asks for metrics the gateway does not export: {missing}"
    scrape = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert "job_name: media_server" in scrape and "/metrics" in scrape


async def test_json_logs_carry_ids_and_no_secrets(
    http: aiohttp.ClientSession, rtsp: RtspServer
) -> None:
    env = {**GENEROUS, "MEDIA_SERVER_LOG_FORMAT": "json"}
    with run_gateway(env=env) as gw:
        url = rtsp.url("/small").replace("rtsp://", "rtsp://admin:hunter2secret@")
        await live(http, gw.base_url, "cam", url)
        async with http.get(f"{gw.base_url}/api/v1/streams/cam", headers={"X-Request-Id": "r-42"}):
            pass
        await asyncio.sleep(0.5)
        lines = [line for line in gw.stderr_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    assert any(r["request_id"] == "r-42" and r["stream"] == "cam" for r in records)
    assert any(r["stream"] == "cam" and "live" in r["message"] for r in records)
    assert "hunter2secret" not in "\n".join(lines)


async def test_snapshot_of_a_transcoded_stream_and_of_one_with_no_picture(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    await live(http, gateway.base_url, "snap-high", rtsp.url("/high"))
    url = f"{gateway.base_url}/api/v1/streams/snap-high/snapshot.jpg"
    for _ in range(50):  # the first keyframe of the shared encoder may take a moment
        async with http.get(url) as resp:
            if resp.status == 200:
                assert jpeg_size(await resp.read()) == (640, 480)
                break
            assert resp.status == 503
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no snapshot of the transcoded stream")
    # An on-demand stream nobody watches has no picture: 503 with a reason, not a hang.
    body = {"id": "snap-idle", "url": rtsp.url("/small"), "on_demand": True}
    status, _ = await register(http, gateway.base_url, **body)
    assert status == 201
    async with http.get(f"{gateway.base_url}/api/v1/streams/snap-idle/snapshot.jpg") as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == "no-picture"
    for sid in ("snap-high", "snap-idle"):
        async with http.delete(f"{gateway.base_url}/api/v1/streams/{sid}") as resp:
            assert resp.status == 204


async def test_event_streams_are_bounded_and_end_with_the_gateway(
    http: aiohttp.ClientSession,
) -> None:
    env = {**GENEROUS, "MEDIA_SERVER_LIMITS__EVENT_STREAMS": "2"}
    with run_gateway(env=env) as gw:
        url = f"{gw.base_url}/api/v1/events"
        first = await http.get(url)
        second = await http.get(url)
        assert first.status == second.status == 200
        async with http.get(url) as third:
            assert third.status == 503
            assert (await third.json())["error"]["code"] == "capacity"
        await next_streams(first)
        began = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(timeout=10) == 0  # open event streams do not hold it up
        assert time.monotonic() - began < 10
        for resp in (first, second):
            resp.close()

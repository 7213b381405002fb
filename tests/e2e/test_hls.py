"""LL-HLS against a real gateway and its demo stream: FFmpeg plays the playlist, the
playlists say what RFC 8216bis asks, blocking reloads and preload hints hold until their
part exists, and every bad request gets a JSON error. With auth on, a viewer token opens
the playlist and is carried into every URI in it; without one nothing is served."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Iterator

import aiohttp
import av
import pytest

from tests.support.api import metric, register
from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.e2e

TOKEN = "hls-test-token"
ORIGIN = "https://player.example"
PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(,INDEPENDENT=YES)?')
HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')


@pytest.fixture(scope="module")
def guarded() -> Iterator[Gateway]:
    env = {
        **GENEROUS,
        "MEDIA_SERVER_AUTH__TOKENS": json.dumps([TOKEN]),
        "MEDIA_SERVER_AUTH__VIEWER_TOKENS": "true",
        "MEDIA_SERVER_HTTP__CORS_ORIGINS": json.dumps([ORIGIN]),
    }
    with run_gateway(env=env) as gw:
        yield gw


def test_ffmpeg_plays_the_playlist_frame_by_frame_at_its_times(gateway: Gateway) -> None:
    container = av.open(f"{gateway.base_url}/hls/demo/index.m3u8", timeout=20)
    assert isinstance(container, av.container.InputContainer)
    times: list[float] = []
    with container:
        for frame in container.decode(video=0):
            assert (frame.width, frame.height) == (640, 480)
            times.append(float((frame.pts or 0) * (frame.time_base or 0)))
            if len(times) >= 90:
                break
    assert len(times) == 90
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(step - 1 / 30) < 0.005 for step in steps), steps


async def test_playlists_parts_and_blocking_reload(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    base = f"{gateway.base_url}/hls/demo"
    async with http.get(f"{base}/index.m3u8") as response:
        assert response.status == 200
        assert response.content_type == "application/vnd.apple.mpegurl"
        assert response.headers["Cache-Control"] == "public, max-age=1"
        multivariant = await response.text()
    assert "#EXT-X-STREAM-INF:" in multivariant and 'CODECS="avc1.42' in multivariant
    assert "RESOLUTION=640x480" in multivariant
    assert multivariant.rstrip().endswith("media.m3u8")  # relative
    await asyncio.sleep(2.5)  # a few segments
    async with http.get(f"{base}/media.m3u8") as response:
        playlist = await response.text()
    assert "#EXT-X-PART-INF:PART-TARGET=0.200" in playlist
    assert "CAN-BLOCK-RELOAD=YES" in playlist and "PART-HOLD-BACK=0.600" in playlist
    parts = PART.findall(playlist)
    assert parts and all(float(d) <= 0.2 * 1.02 for d, _, _ in parts), parts
    segments = [line for line in playlist.splitlines() if line.endswith(".mp4")]
    assert len(segments) >= 2
    # Every segment starts at a keyframe: its first part is independent.
    firsts = [uri for _, uri, _ in parts if uri.split("-")[1].endswith(".0.mp4")]
    assert firsts and all(ind for _, uri, ind in parts if uri in firsts)
    async with http.get(f"{base}/{segments[-1]}") as response:
        assert response.status == 200 and response.content_type == "video/mp4"
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # The preload hint's part is held until it is made, then served.
    hint = HINT.search(playlist)
    assert hint is not None
    started = time.monotonic()
    async with http.get(f"{base}/{hint[1]}") as response:
        assert response.status == 200 and len(await response.read()) > 0
    assert time.monotonic() - started < 3 * 1.0  # held, not refused
    # A blocking reload for the part after it returns a playlist that lists it.
    epoch, rest = hint[1].removesuffix(".mp4").split("-")
    msn, part = (int(n) for n in rest.split("."))
    query = f"_HLS_msn={msn}&_HLS_part={part + 1}"
    async with http.get(f"{base}/media.m3u8?{query}") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "public, max-age=60"
        text = await response.text()
    listed = {uri for _, uri, _ in PART.findall(text)}
    assert f"{epoch}-{msn}.{part + 1}.mp4" in listed or f"{epoch}-{msn + 1}.0.mp4" in listed


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/hls/nope/index.m3u8", 404, "stream-not-found"),
        ("/hls/demo/media.m3u8?_HLS_msn=x", 400, "invalid-query"),
        ("/hls/demo/media.m3u8?_HLS_part=1", 400, "invalid-query"),
        ("/hls/demo/media.m3u8?_HLS_msn=999999", 400, "too-far-ahead"),
        ("/hls/demo/../../etc/passwd.mp4", 404, None),
        ("/hls/demo/whatever.mp4", 404, "not-found"),
        ("/hls/demo/00000000-1.mp4", 404, "gone"),
    ],
)
async def test_bad_requests_get_json_errors(
    http: aiohttp.ClientSession, gateway: Gateway, path: str, status: int, code: str | None
) -> None:
    async with http.get(gateway.base_url + path) as response:
        assert response.status == status
        if code is not None:
            assert (await response.json())["error"]["code"] == code
    async with http.get(f"{gateway.base_url}/hls/demo/index.m3u8") as response:
        assert response.status == 200  # and the stream's HLS carries on


async def test_a_viewer_token_opens_hls_and_is_carried_into_every_uri(
    http: aiohttp.ClientSession, guarded: Gateway
) -> None:
    base = f"{guarded.base_url}/hls/demo"
    for path in ("index.m3u8", "media.m3u8", "00000000-init1.mp4"):
        async with http.get(f"{base}/{path}") as response:
            assert response.status == 401, path
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.post(
        f"{guarded.base_url}/api/v1/streams/demo/viewer-tokens", headers=headers, json={}
    ) as response:
        assert response.status in (200, 201), await response.text()
        token = (await response.json())["token"]
    async with http.get(f"{base}/index.m3u8?token={token}") as response:
        assert response.status == 200
        assert response.headers["Cache-Control"].startswith("public")  # the URL grants it
        media = (await response.text()).rstrip().splitlines()[-1]
    assert media == f"media.m3u8?token={token}"
    async with http.get(f"{base}/{media}", headers={"Origin": ORIGIN}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # CORS for players
        playlist = await response.text()
    uris = re.findall(r'URI="([^"]+)"', playlist) + [
        line for line in playlist.splitlines() if line and not line.startswith("#")
    ]
    assert uris and all(uri.endswith(f".mp4?token={token}") for uri in uris), uris
    async with http.get(f"{base}/{uris[0]}") as response:
        assert response.status == 200
    async with http.get(f"{base}/index.m3u8", headers=headers) as response:
        assert response.status == 200  # a header token: caches must not share it
        assert response.headers["Cache-Control"].startswith("private")
    async with http.get(f"{guarded.base_url}/hls/other/index.m3u8?token={token}") as response:
        assert response.status == 403  # a viewer token opens its own stream only
    async with http.get(f"{base}/index.m3u8?token=not-a-token") as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"]


async def test_an_on_demand_camera_opens_for_hls_and_mse_and_their_end_is_clean(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    """HLS and MSE viewers hold an on-demand camera open like WebRTC viewers; removing the
    stream ends them: the MSE socket hears why, HLS answers 404, nothing stays counted."""
    base = gateway.base_url
    status, body = await register(http, base, id="od-hls", url=rtsp.url("/small"), on_demand=True)
    assert status == 201, body
    async with http.get(f"{base}/api/v1/streams/od-hls") as response:
        assert (await response.json())["state"] == "idle"
    async with http.get(f"{base}/hls/od-hls/index.m3u8") as response:
        assert response.status == 200  # the camera opened for it
    async with http.ws_connect(f"{base}/ws/od-hls") as ws:
        await ws.send_json({"type": "mse"})
        assert (await ws.receive_json(timeout=10))["type"] == "mse"
        async with http.get(f"{base}/api/v1/streams/od-hls") as response:
            view = await response.json()
        assert view["state"] == "live"
        assert view["consumers"]["mse"] == 1 and view["consumers"]["hls"] == 1
        assert view["consumers"]["muxer"] == 1
        async with http.delete(f"{base}/api/v1/streams/od-hls") as response:
            assert response.status == 204
        ended = None
        while ended is None:
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.TEXT and msg.json()["type"] == "error":
                ended = msg.json()
        assert ended["code"] == "session-closed"
    async with http.get(f"{base}/hls/od-hls/index.m3u8") as response:
        assert response.status == 404
    assert await metric(http, base, "media_server_stream_consumers", stream="od-hls") == 0

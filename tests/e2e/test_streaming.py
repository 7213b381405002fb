"""End to end: real RTSP server -> gateway process -> real aiortc viewers decoding frames."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import pytest

from tests.support import stamp
from tests.support.api import live, register, wait_state
from tests.support.gateway import Gateway, run_gateway
from tests.support.rtsp import RtspServer
from tests.support.viewer import Viewer, watch

pytestmark = pytest.mark.e2e

GOP_SECONDS = 1.0  # the test server's mounts use a 1 s GOP


def negotiated_codec(sdp: str) -> str:
    """The codec an answer chose: its video section's first payload type."""
    lines = sdp.splitlines()
    first_pt = next(line for line in lines if line.startswith("m=video")).split()[3]
    rtpmap = next(line for line in lines if line.startswith(f"a=rtpmap:{first_pt} "))
    return rtpmap.split()[1].split("/")[0]


async def live_stream(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer, sid: str, mount: str, **kw: str
) -> dict[str, Any]:
    status, body = await register(http, gateway.base_url, id=sid, url=rtsp.url(mount), **kw)
    assert status in (200, 201), body
    return await wait_state(http, gateway.base_url, sid, "live")


@pytest.mark.parametrize("via", ["ws", "whep"])
async def test_passthrough(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer, via: str
) -> None:
    view = await live_stream(http, gateway, rtsp, "pass", "/baseline", mode="passthrough")
    assert view["effective_mode"] == "passthrough" and view["profile"] == "constrained-baseline"
    viewer = await watch(gateway.base_url, "pass", via=via, frames=60)
    assert viewer.frames >= 60 and viewer.sizes == {(640, 480)}
    assert "H264/90000" in viewer.answer_sdp
    view = await wait_state(http, gateway.base_url, "pass", "live")
    assert view["counters"]["frames_decoded"] == 0  # passthrough: nothing decoded


@pytest.mark.parametrize("via", ["ws", "whep"])
async def test_transcode(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer, via: str
) -> None:
    view = await live_stream(http, gateway, rtsp, "trans", "/baseline", mode="transcode")
    assert view["media_transport"] == "transcode-shared"  # the default since PHASES.md
    viewer = await watch(gateway.base_url, "trans", via=via, frames=60)
    assert viewer.frames >= 60 and viewer.sizes == {(640, 480)}
    assert "H264/90000" in viewer.answer_sdp
    view = await wait_state(http, gateway.base_url, "trans", "live")
    assert view["counters"]["frames_decoded"] > 0 and view["counters"]["frames_encoded"] > 0


@pytest.mark.parametrize("mode", ["passthrough", "transcode"])
async def test_every_frame_shows_the_picture_of_its_moment(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer, mode: str
) -> None:
    """Each frame carries its own capture time: no codec setting may freeze the picture.

    A shared encoder whose rate control took the 90 kHz time base for a frame rate once
    starved every P-frame into a skip: frames kept coming, but showed the keyframe.
    """
    await live_stream(http, gateway, rtsp, f"clock-{mode}", "/clock", mode=mode)
    viewer = await watch(gateway.base_url, f"clock-{mode}", frames=60)
    read = [s for s in viewer.stamps if s is not None]
    assert len(read) >= 0.9 * len(viewer.stamps), viewer.stamps
    steps = [stamp.elapsed_us(a, b) for a, b in itertools.pairwise(read)]
    advancing = [s for s in steps if 0 < s < 200_000]  # 33 ms apart at 30 fps
    assert len(advancing) >= 0.9 * len(steps), steps


async def test_auto_transcodes_high_profile_with_bframes(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    view = await live_stream(http, gateway, rtsp, "high", "/high")
    assert view["profile"] == "high" and view["effective_mode"] == "transcode"
    viewer = await watch(gateway.base_url, "high", frames=60)
    assert viewer.sizes == {(640, 480)}


async def test_auto_switches_main_profile_with_bframes_to_transcode(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    view = await live_stream(http, gateway, rtsp, "mainb", "/main-bframes")
    assert view["profile"] == "main"  # the SPS says browser-safe; the B-frames say otherwise
    for _ in range(50):
        if view["effective_mode"] == "transcode":
            break
        await asyncio.sleep(0.1)
        view = await wait_state(http, gateway.base_url, "mainb", "live")
    assert view["effective_mode"] == "transcode"
    viewer = await watch(gateway.base_url, "mainb", frames=30)
    assert viewer.sizes == {(320, 240)}


async def test_auto_passes_baseline_through_over_udp(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    view = await live_stream(http, gateway, rtsp, "udp", "/baseline", transport="udp")
    assert view["effective_mode"] == "passthrough" and view["transport"] == "udp"
    viewer = await watch(gateway.base_url, "udp", frames=60)
    assert viewer.sizes == {(640, 480)}


async def test_sps_pps_only_in_sdp_still_plays(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    view = await live_stream(http, gateway, rtsp, "sdponly", "/sdp-only", mode="passthrough")
    assert (view["width"], view["height"]) == (640, 480)
    viewer = await watch(gateway.base_url, "sdponly", frames=60)
    assert viewer.sizes == {(640, 480)}


async def test_gop_cache_gives_first_frame_within_the_gop(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    await live_stream(http, gateway, rtsp, "gop", "/baseline", mode="passthrough")
    firsts = []
    for _ in range(4):
        viewer = await watch(gateway.base_url, "gop", frames=5)
        assert viewer.first_frame_at is not None
        firsts.append(viewer.first_frame_at)
        await asyncio.sleep(0.37)  # land at different points of the GOP
    # Without the cache a viewer waits for the next keyframe: on average half a GOP, up
    # to a whole one, so four connections at different phases would not all be quick.
    assert all(first < GOP_SECONDS / 2 for first in firsts), firsts


async def test_whep_delete_ends_the_session(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    viewer = Viewer(gateway.base_url, "demo", "whep")
    await viewer.connect()
    try:
        await viewer.wait_frames(5)
        assert viewer.whep_location is not None
        async with http.delete(gateway.base_url + viewer.whep_location) as resp:
            assert resp.status == 200  # as the WHEP draft says (RFC 9725 for WHIP)
        async with http.delete(gateway.base_url + viewer.whep_location) as resp:
            assert resp.status == 404  # gone: a second DELETE finds nothing
        async with http.get(f"{gateway.base_url}/api/v1/health/ready") as resp:
            assert (await resp.json())["components"]["webrtc"]["sessions"] == 0
        for _ in range(50):
            if viewer.pc.connectionState == "closed":
                break
            await asyncio.sleep(0.1)
        assert viewer.pc.connectionState == "closed"
    finally:
        viewer.whep_location = None
        await viewer.close()


async def test_long_watch_over_websocket(gateway: Gateway) -> None:
    """Longer than the signaling heartbeat and ICE consent intervals: nothing drops."""
    viewer = Viewer(gateway.base_url, "demo")
    await viewer.connect()
    try:
        await asyncio.sleep(40)
        times = [at for at, _ in viewer.timeline]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert viewer.frames >= 40 * 30 * 0.8, viewer.frames
        assert max(gaps) < 1.0, max(gaps)
        assert viewer.pc.connectionState == "connected" and not viewer.messages
    finally:
        await viewer.close()


async def test_demo_plays(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    view = await wait_state(http, gateway.base_url, "demo", "live")
    assert view["url"] == "demo://test-pattern" and view["codec"] == "h264"
    viewer = await watch(gateway.base_url, "demo", frames=60)
    assert viewer.sizes == {(640, 480)}


async def test_audio_only_source_fails_with_reason(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    status, body = await register(http, gateway.base_url, id="noaudio", url=rtsp.url("/audio-only"))
    assert status == 201 and body["state"] in ("idle", "starting")  # answered before probing
    view = await wait_state(http, gateway.base_url, "noaudio", "failed")
    assert "no video" in view["error"]


async def test_many_viewers_one_stream_and_delete_ends_them(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    await live_stream(http, gateway, rtsp, "fan", "/small", mode="passthrough")
    viewers = [Viewer(gateway.base_url, "fan", via) for via in ("ws", "whep", "ws", "whep")]
    try:
        await asyncio.gather(*(v.connect() for v in viewers))
        await asyncio.gather(*(v.wait_frames(30) for v in viewers))
        view = await wait_state(http, gateway.base_url, "fan", "live")
        assert view["viewers"] == 4
        async with http.delete(f"{gateway.base_url}/api/v1/streams/fan") as resp:
            assert resp.status == 204
        # The gateway released every session of the stream, without waiting for viewers.
        async with http.get(f"{gateway.base_url}/api/v1/health/ready") as resp:
            ready = await resp.json()
        assert ready["components"]["webrtc"]["sessions"] == 0
        for v in viewers:
            for _ in range(100):
                if v.pc.connectionState in ("closed", "failed"):
                    break
                await asyncio.sleep(0.1)
            assert v.pc.connectionState in ("closed", "failed")
    finally:
        await asyncio.gather(*(v.close() for v in viewers))


@pytest.mark.parametrize("via", ["ws", "whep"])
async def test_per_viewer_transcode(
    http: aiohttp.ClientSession, rtsp: RtspServer, via: str
) -> None:
    """The Phase 1 baseline stays selectable: aiortc encodes for each viewer (VP8 first)."""
    env = {"MEDIA_SERVER_TRANSCODE__ENCODE": "per_viewer"}
    with run_gateway("--no-demo", env=env) as gw:
        view = await live(http, gw.base_url, "pv", rtsp.url("/baseline"), mode="transcode")
        assert view["media_transport"] == "transcode-per-viewer"
        viewer = await watch(gw.base_url, "pv", via=via, frames=60)
        assert viewer.sizes == {(640, 480)} and negotiated_codec(viewer.answer_sdp) == "VP8"
        view = await wait_state(http, gw.base_url, "pv", "live")
        assert view["counters"]["frames_encoded"] == 0  # the gateway itself encodes nothing


async def test_shared_transcode_encodes_once_for_all_viewers(
    http: aiohttp.ClientSession, rtsp: RtspServer
) -> None:
    """transcode.encode=shared: one H.264 encode per stream, viewers get passthrough."""
    env = {"MEDIA_SERVER_TRANSCODE__ENCODE": "shared"}
    with run_gateway("--no-demo", env=env) as gw:
        view = await live(http, gw.base_url, "hi", rtsp.url("/high"))
        assert view["effective_mode"] == "transcode"
        assert view["media_transport"] == "transcode-shared"
        viewers = [Viewer(gw.base_url, "hi", via) for via in ("ws", "whep", "ws")]
        try:
            await asyncio.gather(*(v.connect() for v in viewers))
            await asyncio.gather(*(v.wait_frames(45) for v in viewers))
        finally:
            await asyncio.gather(*(v.close() for v in viewers))
        for viewer in viewers:
            assert viewer.sizes == {(640, 480)}
            assert negotiated_codec(viewer.answer_sdp) == "H264"  # the shared encode is H.264
        view = await wait_state(http, gw.base_url, "hi", "live")
        counters = view["counters"]
        # One encode per decoded frame, however many viewers watched.
        assert 0 < counters["frames_encoded"] <= counters["frames_decoded"] + 2


async def test_canary_gives_a_share_of_new_viewers_the_other_transport(
    http: aiohttp.ClientSession, rtsp: RtspServer
) -> None:
    """Default per-viewer transcode, shared encode for 50 % of new viewers: both play."""
    env = {
        "MEDIA_SERVER_TRANSCODE__ENCODE": "per_viewer",
        "MEDIA_SERVER_CANARY__CHOICE": "shared",
        "MEDIA_SERVER_CANARY__PERCENT": "50",
    }
    with run_gateway("--no-demo", env=env) as gw:
        await live(http, gw.base_url, "can", rtsp.url("/small"), mode="transcode")
        viewers = [Viewer(gw.base_url, "can") for _ in range(4)]
        try:
            for viewer in viewers:
                await viewer.connect()
            await asyncio.gather(*(v.wait_frames(20) for v in viewers))
        finally:
            await asyncio.gather(*(v.close() for v in viewers))
        codecs = [negotiated_codec(v.answer_sdp) for v in viewers]
        assert sorted(codecs) == ["H264", "H264", "VP8", "VP8"], codecs  # exactly half
        for viewer in viewers:
            assert viewer.sizes == {(320, 240)}
        async with http.get(f"{gw.base_url}/metrics") as resp:
            metrics = await resp.text()
        assert 'transport="transcode-shared",via="ws"} 2.0' in metrics
        assert 'transport="transcode-per-viewer",via="ws"} 2.0' in metrics

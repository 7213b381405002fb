"""Cameras' sound reaches the viewer: Opus and G.711 as they are, AAC as Opus made once.

The RTSP test server's audio mounts carry /small's video and a sine tone of a known
frequency; a real aiortc viewer decodes both, and the tone it hears must be that one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.support.api import live, live_with_audio, register, wait_state
from tests.support.avsync import SyncMeter
from tests.support.gateway import FAST, Gateway, run_gateway
from tests.support.rtsp import RtspServer, start_rtsp_server
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e

TONES = {"/av-opus": 440, "/av-aac": 660, "/av-pcmu": 880, "/av-pcma": 550}  # rtsp_server.py
EXPECTED = {
    "/av-opus": ("opus", 48000, 2, "passthrough", "opus/48000"),
    "/av-aac": ("aac", 44100, 1, "transcode", "opus/48000"),
    "/av-pcmu": ("pcm_mulaw", 8000, 1, "passthrough", "PCMU/8000"),
    "/av-pcma": ("pcm_alaw", 8000, 1, "passthrough", "PCMA/8000"),
}


async def audio_stream(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer, sid: str, mount: str, **kw: Any
) -> dict[str, Any]:
    return await live_with_audio(http, gateway.base_url, sid, rtsp.url(mount), **kw)


def answered_audio(sdp: str) -> str | None:
    """The codec the answer's audio section sends, None when it sends no audio."""
    lines = sdp.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("m=audio"):
            if line.split()[1] == "0":
                return None
            section = lines[i + 1 :]
            end = next((j for j, rest in enumerate(section) if rest.startswith("m=")), None)
            section = section[:end]
            if not any(d in section for d in ("a=sendonly", "a=sendrecv")):
                return None
            pt = line.split()[3]
            rtpmap = next(s for s in section if s.startswith(f"a=rtpmap:{pt} "))
            return (
                rtpmap.split()[1].rsplit("/", 1)[0] if rtpmap.count("/") > 1 else rtpmap.split()[1]
            )
    return None


@pytest.mark.parametrize("client", ["pyav", "native"])
@pytest.mark.parametrize("mount", sorted(TONES))
async def test_viewer_hears_the_cameras_tone_with_its_video(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer, mount: str, client: str
) -> None:
    """Through FFmpeg's RTSP client and through the gateway's own (its depacketizers:
    Opus and G.711 as they come, AAC's RFC 3640 AU headers)."""
    sid = f"sound-{client}{mount.replace('/', '-')}"
    view = await audio_stream(http, gateway, rtsp, sid, mount, client=client)
    assert view["ingest_client"] == client, view
    codec, rate, channels, mode, webrtc = EXPECTED[mount]
    assert (
        view["audio_codec"],
        view["audio_sample_rate"],
        view["audio_channels"],
        view["audio_mode"],
    ) == (codec, rate, channels, mode)
    viewer = Viewer(gateway.base_url, sid, audio=True)
    try:
        await viewer.connect()
        assert answered_audio(viewer.answer_sdp) == webrtc, viewer.answer_sdp
        await viewer.wait_frames(20)
        await viewer.wait_audio(2.0)
        frequency, level = viewer.tone(1.0)
        assert abs(frequency - TONES[mount]) < 15, (frequency, level)
        assert level > 0.05, f"silence (RMS {level:.4f})"
        assert viewer.sizes == {(320, 240)}
    finally:
        await viewer.close()
        async with http.delete(f"{gateway.base_url}/api/v1/streams/{sid}"):
            pass


async def test_aac_is_encoded_once_however_many_listen(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    await audio_stream(http, gateway, rtsp, "once", "/av-aac")
    url = f"{gateway.base_url}/api/v1/streams/once"

    async def encoded_per_second() -> float:
        async with http.get(url) as resp:
            before: int = (await resp.json())["counters"]["audio_frames_encoded"]
        await asyncio.sleep(2.0)
        async with http.get(url) as resp:
            after: int = (await resp.json())["counters"]["audio_frames_encoded"]
        return (after - before) / 2.0

    listeners = [Viewer(gateway.base_url, "once", audio=True) for _ in range(3)]
    try:
        for listener in listeners:
            await listener.connect()
        await asyncio.gather(*(listener.wait_audio(1.0) for listener in listeners))
        rate = await encoded_per_second()
        # 20 ms Opus frames: 50 a second for the stream, not 150 for three listeners.
        assert 40 <= rate <= 60, rate
        for listener in listeners:
            assert abs(listener.tone(1.0)[0] - TONES["/av-aac"]) < 15
    finally:
        await asyncio.gather(*(listener.close() for listener in listeners))
        async with http.delete(url):
            pass


async def test_video_only_offers_and_audio_off_streams_get_video(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    await audio_stream(http, gateway, rtsp, "mute-offer", "/av-opus")
    video_only = Viewer(gateway.base_url, "mute-offer")  # offers no audio at all
    try:
        await video_only.connect()
        await video_only.wait_frames(20)
        assert "m=audio" not in video_only.answer_sdp
    finally:
        await video_only.close()
    view = await audio_stream(http, gateway, rtsp, "mute-stream", "/av-opus", audio=False)
    assert view["audio"] is False and view["audio_mode"] == "off"
    listener = Viewer(gateway.base_url, "mute-stream", audio=True)
    try:
        await listener.connect()
        await listener.wait_frames(20)
        assert answered_audio(listener.answer_sdp) is None, listener.answer_sdp
        await asyncio.sleep(0.5)
        assert listener.audio_frames == 0
    finally:
        await listener.close()
    for sid in ("mute-offer", "mute-stream"):
        async with http.delete(f"{gateway.base_url}/api/v1/streams/{sid}"):
            pass


#: How far a beep may be from its flash. Sender reports map each track's timestamps to
#: the moment they stand for, however late each left: Opus measures 0 ms here (the native
#: client's first second, before the camera's first sender report, is placed by arrival).
#: AAC: the camera's encoder primes 1024 samples, so its beep is 21 ms late already.
SYNC_LIMITS = {"/av-sync": 0.020, "/av-sync-aac": 0.035}


@pytest.mark.parametrize("client", ["pyav", "native"])
@pytest.mark.parametrize(
    ("mount", "video"), [("/av-sync", "aiortc"), ("/av-sync-aac", "aiortc"), ("/av-sync", "engine")]
)
async def test_lip_sync_holds_and_survives_a_camera_reconnect(
    http: aiohttp.ClientSession, mount: str, video: str, client: str
) -> None:
    """Measured as a browser syncs: each track's RTP time through its sender reports.

    The camera flashes and beeps at the same instants; the beep must stay within the
    limit of its flash, before and after the camera restarts under a connected viewer.
    With the fan-out engine sending the video, its sender reports are the ones measured.
    The native client places audio on the video's clock by the camera's sender reports,
    and by arrival until the camera's first (GStreamer's comes within a few seconds):
    measured from then on.
    """
    settle = 4.0 if client == "native" else 0.0
    env = {**FAST, "MEDIA_SERVER_WEBRTC__MEDIA_PATH": video, "MEDIA_SERVER_INGEST__CLIENT": client}
    with start_rtsp_server() as camera, run_gateway("--no-demo", env=env) as gw:
        port = camera.port
        await live(http, gw.base_url, "sync", camera.url(mount))
        meter = SyncMeter()
        viewer = Viewer(gw.base_url, "sync", audio=True, sync=meter)
        try:
            await viewer.connect()
            assert viewer.media_transport == ("engine" if video == "engine" else "passthrough")
            await asyncio.sleep(settle)
            meter.reset()
            await assert_in_sync(meter, SYNC_LIMITS[mount], "before the camera restarts")
            camera.proc.kill()  # no TEARDOWN: the gateway finds out by itself
            camera.proc.wait()
            await wait_state(http, gw.base_url, "sync", "reconnecting", timeout=10)
            with start_rtsp_server(port=port):
                await wait_state(http, gw.base_url, "sync", "live", timeout=20)
                await asyncio.sleep(settle)
                meter.reset()
                await assert_in_sync(meter, SYNC_LIMITS[mount], "after the camera restarted")
                assert viewer.pc.connectionState == "connected"
        finally:
            await viewer.close()


async def assert_in_sync(meter: SyncMeter, limit: float, when: str) -> None:
    """At least four flash/beep pairs within 8 s, none further apart than `limit`."""
    for _ in range(80):
        if len(meter.offsets()) >= 5:
            break
        await asyncio.sleep(0.1)
    offsets = meter.offsets()[1:]  # the first pair may straddle the start
    shown = [round(o * 1000, 1) for o in offsets]
    assert len(offsets) >= 4, f"{when}: {len(meter.flashes)} flashes, {len(meter.beeps)} beeps"
    assert max(abs(o) for o in offsets) < limit, f"{when}: beep - flash in ms: {shown}"


async def test_first_viewer_of_an_on_demand_stream_hears_it(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    """Its offer arrives before the camera is even open: the answer waits to know."""
    body = {"id": "ondemand-sound", "url": rtsp.url("/av-opus"), "on_demand": True}
    status, _ = await register(http, gateway.base_url, **body)
    assert status == 201
    await wait_state(http, gateway.base_url, "ondemand-sound", "idle")
    viewer = Viewer(gateway.base_url, "ondemand-sound", audio=True)
    try:
        await viewer.connect()
        assert answered_audio(viewer.answer_sdp) == "opus/48000", viewer.answer_sdp
        await viewer.wait_audio(1.0)
        assert abs(viewer.tone(1.0)[0] - TONES["/av-opus"]) < 15
    finally:
        await viewer.close()
        async with http.delete(f"{gateway.base_url}/api/v1/streams/ondemand-sound"):
            pass

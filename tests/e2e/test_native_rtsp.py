"""The gateway's own RTSP client (ingest.client: native) against a real camera server:
H.264 over RTP interleaved on the RTSP connection, units complete on the marker bit, and
viewers decode them as from the PyAV client."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from media_server.ingest.guard import SourceGuard
from media_server.ingest.native import NativeRtspSource
from media_server.ingest.rtsp_session import RtspSession
from media_server.ingest.source import SourceError
from tests.support.api import live, register, wait_state
from tests.support.fake_camera import SDP, Behaviour, FakeCamera
from tests.support.gateway import FAST, GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def native() -> Iterator[Gateway]:
    env = {**GENEROUS, **FAST, "MEDIA_SERVER_INGEST__CLIENT": "native"}
    with run_gateway("--no-demo", env=env) as gw:
        yield gw


@pytest.mark.parametrize("mount", ["/baseline", "/sdp-only"])
async def test_viewers_decode_what_the_native_client_ingests(
    http: aiohttp.ClientSession, native: Gateway, rtsp: RtspServer, mount: str
) -> None:
    stream_id = "native" + mount.replace("/", "-")
    view = await live(http, native.base_url, stream_id, rtsp.url(mount))
    assert (view["codec"], view["width"], view["height"]) == ("h264", 640, 480), view
    viewer = Viewer(native.base_url, stream_id)
    try:
        await viewer.connect()
        await viewer.wait_frames(30)
    finally:
        await viewer.close()
    view = await wait_state(http, native.base_url, stream_id, "live")
    assert view["counters"]["keyframes_in"] >= 1 and view["effective_mode"] == "passthrough"


async def test_a_camera_the_native_client_does_not_take_fails_with_the_reason(
    http: aiohttp.ClientSession, native: Gateway, rtsp: RtspServer
) -> None:
    status, _ = await register(http, native.base_url, id="no-video", url=rtsp.url("/audio-only"))
    assert status == 201
    view = await wait_state(http, native.base_url, "no-video", "failed")
    assert "no video track" in view["error"]
    status, _ = await register(http, native.base_url, id="jpeg", url=rtsp.url("/mjpeg"))
    assert status == 201
    view = await wait_state(http, native.base_url, "jpeg", "failed")
    assert "takes H.264" in view["error"] and "jpeg" in view["error"], view


async def test_each_registration_chooses_its_client_and_auto_falls_back(
    http: aiohttp.ClientSession, native: Gateway, rtsp: RtspServer
) -> None:
    """The setting says native; a registration's `client` overrides it, and `auto` takes
    the native client where it can and FFmpeg's where it cannot (Motion JPEG here)."""
    cases = [
        ("by-default", "/baseline", {}, "native"),
        ("by-pyav", "/baseline", {"client": "pyav"}, "pyav"),
        ("auto-h264", "/baseline", {"client": "auto"}, "native"),
        ("auto-jpeg", "/mjpeg", {"client": "auto"}, "pyav"),
    ]
    for stream_id, mount, fields, client in cases:
        view = await live(http, native.base_url, stream_id, rtsp.url(mount), **fields)
        assert view["ingest_client"] == client, view
        assert view.get("client") == fields.get("client"), view
    viewer = Viewer(native.base_url, "auto-jpeg")
    try:
        await viewer.connect()
        await viewer.wait_frames(10)
    finally:
        await viewer.close()
    assert viewer.sizes == {(320, 240)}, viewer.sizes
    view = await wait_state(http, native.base_url, "auto-jpeg", "live")
    assert view["effective_mode"] == "transcode" and view["codec"] == "mjpeg", view


# -- the protocol against cameras that ask, lie or misbehave (a scripted server) ----------
def guard() -> SourceGuard:
    return SourceGuard([], [], allow_loopback=True)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_authentication(algorithm: str) -> None:
    camera = FakeCamera(Behaviour(digest=algorithm))
    try:
        session = RtspSession(camera.url().replace("://", "://admin:s3cret@"), guard(), 3)
        session.connect()
        assert session.request("DESCRIBE", headers={"Accept": "application/sdp"}).status == 200
        wrong = RtspSession(camera.url().replace("://", "://admin:nope@"), guard(), 3)
        wrong.connect()
        assert wrong.request("DESCRIBE").status == 401  # asked once, refused: no loop
        session.close()
        wrong.close()
    finally:
        camera.close()


def test_control_urls_content_base_and_the_channels_a_camera_picks() -> None:
    sdp = SDP.replace("a=control:trackID=0", "a=control:video/track1")
    camera = FakeCamera(
        Behaviour(sdp=sdp, content_base="rtsp://127.0.0.1/base/", interleaved="4-5")
    )
    source = NativeRtspSource(camera.url("/cam"), 3, 3, guard())
    try:
        info = source.open()
        assert (info.codec, info.width, info.height) == ("h264", 640, 360)  # the SDP's SPS
        setup = next(r for r in camera.behaviour.requests if r.startswith("SETUP"))
        assert setup == "SETUP rtsp://127.0.0.1/base/video/track1"
        assert source.channel == 4
    finally:
        source.close()
        camera.close()


@pytest.mark.parametrize(
    ("behaviour", "says"),
    [
        (Behaviour(describe_length=10 * 1024 * 1024), "too large"),
        (Behaviour(garbage=True), "not RTSP"),
        (Behaviour(redirect="rtsp://169.254.169.254:8554/x"), "redirected"),
    ],
)
def test_a_camera_that_floods_babbles_or_redirects_badly_is_refused(
    behaviour: Behaviour, says: str
) -> None:
    camera = FakeCamera(behaviour)
    source = NativeRtspSource(camera.url(), 3, 3, SourceGuard([], ["169.254.0.0/16"]))
    try:
        with pytest.raises(SourceError, match=says):
            source.open()
    finally:
        source.close()
        camera.close()
    assert not any("169.254" in r for r in camera.behaviour.requests)

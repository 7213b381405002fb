"""The gateway's own RTSP client (ingest.client: native) against a real camera server:
H.264 over RTP interleaved on the RTSP connection, units complete on the marker bit, and
viewers decode them as from the PyAV client."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.api import register, wait_state
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
    status, _ = await register(http, native.base_url, id=stream_id, url=rtsp.url(mount))
    assert status == 201
    view = await wait_state(http, native.base_url, stream_id, "live")
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

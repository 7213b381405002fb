"""The gateway's own RTSP client (ingest.client: native) against a real camera server:
H.264 over RTP interleaved on the RTSP connection, units complete on the marker bit, and
viewers decode them as from the PyAV client."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext

from media_server.aiortc_internals import packetize_h264
from media_server.codecs import h264
from media_server.ingest.guard import SourceGuard
from media_server.ingest.native import NativeRtspSource
from media_server.ingest.reactor import Entry, Reactor
from media_server.ingest.rtp_transport import PortPairs
from media_server.ingest.rtsp_session import RtspSession
from media_server.ingest.source import SourceError
from media_server.model import clock
from media_server.model.media import SourcePacket
from tests.support.api import live, register, wait_state
from tests.support.avsync import SyncMeter
from tests.support.certs import make_certificate
from tests.support.fake_camera import SDP, Behaviour, FakeCamera
from tests.support.front import run_front
from tests.support.gateway import FAST, GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer
from tests.support.viewer import Viewer, watch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def native() -> Iterator[Gateway]:
    env = {**GENEROUS, **FAST, "MEDIA_SERVER_INGEST__CLIENT": "native"}
    with run_gateway("--no-demo", env=env) as gw:
        yield gw


@pytest.mark.parametrize(
    ("mount", "transport"), [("/baseline", "tcp"), ("/sdp-only", "tcp"), ("/baseline", "udp")]
)
async def test_viewers_decode_what_the_native_client_ingests(
    http: aiohttp.ClientSession, native: Gateway, rtsp: RtspServer, mount: str, transport: str
) -> None:
    """RTP interleaved on the RTSP connection, or over UDP to a port pair of ours."""
    stream_id = f"native-{transport}" + mount.replace("/", "-")
    view = await live(http, native.base_url, stream_id, rtsp.url(mount), transport=transport)
    assert view["ingest_client"] == "native", view
    assert (view["codec"], view["width"], view["height"]) == ("h264", 640, 480), view
    await watch(native.base_url, stream_id, frames=30)
    view = await wait_state(http, native.base_url, stream_id, "live")
    assert view["counters"]["keyframes_in"] >= 1 and view["effective_mode"] == "passthrough"


@pytest.mark.parametrize("client", ["native", "pyav"])
async def test_an_rtsps_camera_through_either_client(
    http: aiohttp.ClientSession, native: Gateway, rtsp: RtspServer, client: str, tmp_path: Path
) -> None:
    """RTSP over TLS (a camera's self-signed certificate, as most carry), interleaved."""
    cert, key = make_certificate(tmp_path, "camera")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with run_front([rtsp.port], tls) as front:
        url = front.replace("http://", "rtsps://") + "/baseline"
        stream_id = f"tls-{client}"
        view = await live(http, native.base_url, stream_id, url, client=client)
        assert view["ingest_client"] == client and view["url"] == url, view
        await watch(native.base_url, stream_id, frames=15)
        async with http.delete(f"{native.base_url}/api/v1/streams/{stream_id}"):
            pass


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
    assert "takes H.264 and H.265" in view["error"] and "jpeg" in view["error"], view


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
    viewer = await watch(native.base_url, "auto-jpeg", frames=10)
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
        # PLAY goes to the aggregate control URL: here the Content-Base (a camera URL's
        # query, which GStreamer leaves out of it, would otherwise miss the session).
        play = next(r for r in camera.behaviour.requests if r.startswith("PLAY"))
        assert play == "PLAY rtsp://127.0.0.1/base/"
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


# -- a camera that sends media, the way the field's cameras get it wrong -------------------
@pytest.fixture(scope="module")
def units() -> list[bytes]:
    """Two GOPs of real H.264 (noise, so each picture takes several RTP packets), SPS and
    PPS in front of each keyframe."""
    codec = av.CodecContext.create("libx264", "w")
    assert isinstance(codec, VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.options = {
        "tune": "zerolatency",
        "x264-params": "keyint=10:min-keyint=10:repeat-headers=1:bframes=0",
    }
    rng = np.random.default_rng(7)
    out: list[bytes] = []
    for i in range(20):
        frame = av.VideoFrame.from_ndarray(
            rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), format="rgb24"
        ).reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def media(units: list[bytes]) -> list[list[bytes]]:
    return [packetize_h264(unit) for unit in units]


@pytest.fixture(scope="module")
def reactor() -> Reactor:
    return Reactor()


@pytest.fixture(params=["threads", "loop"])
def reader(request: pytest.FixtureRequest, reactor: Reactor) -> Reactor | None:
    """How a source is read: blocked in `read` on a thread, or polled by the reactor
    that reads every native session (ingest.native_reader)."""
    return reactor if request.param == "loop" else None


def read_units(source: NativeRtspSource, count: int) -> list[list[bytes]]:
    """The next `count` video units, as their NAL units (start codes may differ); fails
    when they do not come at about the camera's pace (30 a second)."""
    if source.polled() is not None:
        return _read_on_reactor(source, count)

    def read() -> list[list[bytes]]:
        got: list[list[bytes]] = []
        while len(got) < count:
            read = source.read()
            assert read is not None
            if read.track == "video":
                got.append(h264.iter_nals(read.data))
        return got

    pool = ThreadPoolExecutor(1)  # a source that drops every unit never returns: the
    try:  # test's closing of the camera ends its read
        return pool.submit(read).result(timeout=3 + count / 30)
    except TimeoutError:
        raise AssertionError(f"{count} units did not come in time") from None
    finally:
        pool.shutdown(wait=False)


def _read_on_reactor(source: NativeRtspSource, count: int) -> list[list[bytes]]:
    got: list[list[bytes]] = []
    ended: list[BaseException] = []
    done = threading.Event()

    def deliver(packets: list[SourcePacket]) -> None:
        got.extend(h264.iter_nals(p.data) for p in packets if p.track == "video")
        if len(got) >= count:
            done.set()

    def end(exc: BaseException) -> None:
        ended.append(exc)
        done.set()

    entry = Entry(source, deliver, end)
    source.reactor.add(entry)
    try:
        if not done.wait(3 + count / 30):
            raise AssertionError(f"{count} units did not come in time")
    finally:
        source.reactor.remove(entry)
    if len(got) < count:
        raise ended[0]
    return got[:count]


def nals(units: list[bytes]) -> list[list[bytes]]:
    return [h264.iter_nals(unit) for unit in units]


def test_a_camera_that_never_sets_the_marker_bit(
    units: list[bytes], reader: Reactor | None
) -> None:
    """Each unit then completes on the first packet of the next timestamp, whole."""
    camera = FakeCamera(Behaviour(media=media(units), marker=False))
    source = NativeRtspSource(camera.url(), 3, 3, guard(), reactor=reader)
    try:
        source.open()
        assert read_units(source, 15) == nals(units[:15])
    finally:
        source.close()
        camera.close()


def test_reordered_udp_is_put_back_in_order(units: list[bytes], reader: Reactor | None) -> None:
    """The camera sends each pair of packets swapped: every unit still comes out whole,
    because the reorder window puts them back (without it each would be dropped)."""
    camera = FakeCamera(Behaviour(media=media(units), reorder=True))
    source = NativeRtspSource(
        camera.url(),
        3,
        3,
        guard(),
        transport="udp",
        ports=PortPairs(41000, 41999),
        reactor=reader,
    )
    try:
        source.open()
        assert any(
            "client_port=41" in r or r.startswith("SETUP") for r in camera.behaviour.requests
        )
        assert read_units(source, 15) == nals(units[:15])
        window = source._video.reorder if source._video else None
        assert window is not None and window.reordered > 10 and window.lost == 0
    finally:
        source.close()
        camera.close()


@pytest.mark.parametrize("keep_alive", [True, False])
def test_keep_alives_hold_a_session_the_camera_would_drop(
    units: list[bytes], keep_alive: bool, monkeypatch: pytest.MonkeyPatch, reader: Reactor | None
) -> None:
    """The camera ends a session that is silent for its timeout (5 s). Ours is kept
    alive within it; without keep-alives the same camera drops it (the guard's bug)."""
    if not keep_alive:
        monkeypatch.setattr(NativeRtspSource, "_keep_alive", lambda self, session, now: None)
    behaviour = Behaviour(media=media(units), session_timeout=5, drop_silent=True)
    camera = FakeCamera(behaviour)
    source = NativeRtspSource(camera.url(), 3, 3, guard(), reactor=reader)
    try:
        source.open()
        if keep_alive:
            read_units(source, 30 * 7)  # 7 s of video, past the camera's timeout
            assert any(r.startswith("GET_PARAMETER") for r in behaviour.requests)
        else:
            with pytest.raises(SourceError, match="closed"):
                read_units(source, 30 * 7)
    finally:
        source.close()
        camera.close()


def test_a_camera_that_goes_silent_has_stalled(reader: Reactor | None) -> None:
    """Connected, playing, sending nothing: after the read timeout the session is over,
    however it is read (a reactor must not wait on a silent socket for good)."""
    camera = FakeCamera(Behaviour(media=None))
    source = NativeRtspSource(camera.url(), 3, 1, guard(), reactor=reader)
    try:
        source.open()
        started = time.monotonic()
        with pytest.raises(SourceError, match="nothing in time"):
            read_units(source, 1)
        assert time.monotonic() - started < 2.5
    finally:
        source.close()
        camera.close()


async def test_a_camera_that_closes_mid_stream_is_reconnected(
    http: aiohttp.ClientSession, native: Gateway, units: list[bytes]
) -> None:
    camera = FakeCamera(Behaviour(media=media(units), close_after=45))
    try:
        source = NativeRtspSource(camera.url(), 3, 3, guard())
        try:
            source.open()
            with pytest.raises(SourceError, match="closed"):
                read_units(source, 60)
        finally:
            source.close()
        # The gateway says so and reconnects; the stream is live again each time.
        await live(http, native.base_url, "closes", camera.url())
        view = await wait_state(http, native.base_url, "closes", "reconnecting")
        assert "closed" in view["error"], view
        view = await wait_state(http, native.base_url, "closes", "live")
        assert view["counters"]["reconnects"] >= 1, view
    finally:
        camera.close()


def test_a_redirect_to_an_allowed_camera_is_followed(units: list[bytes]) -> None:
    target = FakeCamera(Behaviour(media=media(units)))
    first = FakeCamera(Behaviour(redirect=target.url("/moved")))
    source = NativeRtspSource(first.url(), 3, 3, guard())
    try:
        source.open()
        assert read_units(source, 5) == nals(units[:5])
        assert f"DESCRIBE rtsp://127.0.0.1:{target.port}/moved" in target.behaviour.requests
    finally:
        source.close()
        first.close()
        target.close()


@pytest.mark.parametrize(
    ("control", "setup"),
    [("*", "/cam"), ("rtsp://127.0.0.1:{port}/elsewhere/v", "/elsewhere/v")],
)
def test_control_star_and_absolute(control: str, setup: str) -> None:
    camera = FakeCamera(Behaviour())
    camera.behaviour.sdp = (
        SDP.replace("a=control:trackID=0", f"a=control:{control}")
        .replace("{port}", str(camera.port))
        .replace("{port}", str(camera.port))
    )
    camera.behaviour.sdp = camera.behaviour.sdp.replace("{port}", str(camera.port))
    source = NativeRtspSource(camera.url(), 3, 3, guard())
    try:
        source.open()
        done = next(r for r in camera.behaviour.requests if r.startswith("SETUP"))
        assert done == f"SETUP rtsp://127.0.0.1:{camera.port}{setup}"
    finally:
        source.close()
        camera.close()


@pytest.mark.parametrize(
    ("path", "mode"),
    [("engine", "passthrough"), ("aiortc", "passthrough"), ("engine", "transcode")],
)
async def test_sender_reports_to_viewers_carry_the_cameras_capture_time(
    http: aiohttp.ClientSession, units: list[bytes], path: str, mode: str
) -> None:
    """The camera's clock runs an hour behind ours, and its sender reports say so. The
    gateway's reports to viewers map each frame to when the camera captured it, on the
    camera's clock, passed through or transcoded once: a viewer measures arrival minus
    capture as that hour plus the latency (without capture times, the gateway's own
    clock: the latency alone)."""
    camera = FakeCamera(Behaviour(media=media(units), report_offset=-3600.0))
    env = {
        **GENEROUS,
        **FAST,
        "MEDIA_SERVER_INGEST__CLIENT": "native",
        "MEDIA_SERVER_WEBRTC__MEDIA_PATH": path,
    }
    meter = SyncMeter()
    try:
        with run_gateway("--no-demo", env=env) as gw:
            view = await live(http, gw.base_url, "camera-clock", camera.url(), mode=mode)
            assert view["effective_mode"] == mode, view
            viewer = Viewer(gw.base_url, "camera-clock", sync=meter)
            try:
                await viewer.connect()
                await viewer.wait_frames(75)
            finally:
                await viewer.close()
    finally:
        camera.close()
    track = meter.tracks["video"]
    now_ntp, now = clock.ntp_now() / (1 << 32), time.monotonic()
    latencies = []
    for arrived, pts in viewer.timeline[-15:]:
        rtp = track.rtp(pts)
        captured = track.wall(rtp) if rtp is not None else None
        assert captured is not None, "no sender report reached the viewer"
        latencies.append(now_ntp - (now - arrived) - captured)
    assert all(3600.0 < lat < 3600.5 for lat in latencies), latencies

"""The fan-out engine end to end: a real RTSP camera, the gateway, real aiortc viewers.

SRTP interop is proven by the viewers' own decryption and decoding; loss is induced by a
relay between viewer and gateway and must be repaired by the engine's retransmissions.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.api import live, metric, wait_state
from tests.support.gateway import FAST, GENEROUS, Gateway, run_gateway
from tests.support.relay import LossyRelay, picture_loss, repaired
from tests.support.rtsp import RtspServer, start_rtsp_server
from tests.support.viewer import Viewer, frames_between, unwrap

pytestmark = pytest.mark.e2e

ENGINE = {**GENEROUS, **FAST, "MEDIA_SERVER_WEBRTC__MEDIA_PATH": "engine"}


@pytest.fixture(scope="module")
def engine_gateway() -> Iterator[Gateway]:
    """Native send path; every viewer's sequence number and timestamp wrap within
    seconds of joining, so each test here also runs across both wraps."""
    env = {**ENGINE, "MEDIA_SERVER_ENGINE__START": "near-wrap"}
    with run_gateway("--no-demo", env=env) as gw:
        yield gw


@pytest.mark.parametrize("send_path", ["native", "python"])
async def test_viewers_decode_what_the_engine_sends(
    http: aiohttp.ClientSession, rtsp: RtspServer, send_path: str
) -> None:
    env = {**ENGINE, "MEDIA_SERVER_ENGINE__SEND_PATH": send_path}
    with run_gateway("--no-demo", env=env) as gw:
        await live(http, gw.base_url, "cam", rtsp.url("/baseline"), mode="passthrough")
        viewers = [Viewer(gw.base_url, "cam", via) for via in ("ws", "whep", "ws")]
        try:
            await asyncio.gather(*(v.connect() for v in viewers))
            await asyncio.gather(*(v.wait_frames(60) for v in viewers))
            assert all(v.sizes == {(640, 480)} for v in viewers)
            assert all(v.first_frame_at is not None and v.first_frame_at < 1 for v in viewers)
            assert [v.media_transport for v in viewers] == ["engine"] * 3
            assert await metric(http, gw.base_url, "media_server_engine_viewers") == 3
            async with http.get(f"{gw.base_url}/api/v1/streams/cam") as resp:
                assert (await resp.json())["viewers"] == 3
            sent = await metric(
                http, gw.base_url, "media_server_egress_packets_total", transport="engine"
            )
            assert sent > 3 * 100
            info = await metric(http, gw.base_url, "media_server_transport_info", engine=send_path)
            assert info == 1
        finally:
            await asyncio.gather(*(v.close() for v in viewers))
        for _ in range(50):  # the peers' goodbyes reach the gateway
            if await metric(http, gw.base_url, "media_server_engine_viewers") == 0:
                break
            await asyncio.sleep(0.1)
        assert await metric(http, gw.base_url, "media_server_engine_viewers") == 0
        assert "Traceback" not in gw.stderr_text()


async def test_sequence_numbers_and_timestamps_wrap_under_a_decoding_viewer(
    http: aiohttp.ClientSession, engine_gateway: Gateway, rtsp: RtspServer
) -> None:
    """near-wrap: the sequence number wraps after 300 packets, the timestamp 3 s after the
    first frame sent; the viewer's SRTP (rollover counter) and decoder must not notice."""
    gw = engine_gateway
    await live(http, gw.base_url, "wrap", rtsp.url("/baseline"), mode="passthrough")
    viewer = Viewer(gw.base_url, "wrap")
    try:
        await viewer.connect()
        seen = viewer.record_rtp()
        await viewer.wait_frames(1)
        start = time.monotonic()
        await asyncio.sleep(6)
        seqs = [seq for _, seq, _, _ in seen]
        stamps = [ts for _, _, ts, _ in seen]
        assert any(a > 65_000 and b < 500 for a, b in itertools.pairwise(seqs)), seqs[:5]
        assert any(a > 2**32 - 90_000 and b < 90_000 for a, b in itertools.pairwise(stamps))
        arrivals = [at for at, _ in viewer.timeline if at >= start]
        assert max(b - a for a, b in itertools.pairwise(arrivals)) < 0.5, "the picture froze"
        assert frames_between(viewer, start, start + 6) >= 150  # about 30 fps throughout
        line = unwrap([ts for _, ts in viewer.timeline])
        assert all(b > a for a, b in itertools.pairwise(line))
    finally:
        await viewer.close()


async def test_induced_loss_is_repaired_by_retransmission(
    http: aiohttp.ClientSession, engine_gateway: Gateway, rtsp: RtspServer
) -> None:
    gw = engine_gateway
    await live(http, gw.base_url, "lossy", rtsp.url("/baseline"), mode="passthrough")
    relay = LossyRelay(drop_every=10)  # 10 % of the video packets
    await relay.start()
    viewer = Viewer(
        gw.base_url,
        "lossy",
        rewrite_offer=relay.rewrite_offer,
        rewrite_answer=relay.rewrite_answer,
    )
    try:
        decoded, retransmitted = await repaired(http, gw.base_url, viewer, 6)
        assert relay.dropped >= 30, relay.dropped
        # Every lost packet was asked for and sent again (a NACK may be answered twice).
        assert retransmitted >= 0.9 * relay.dropped, (retransmitted, relay.dropped)
        # Without repair, most frames would be incomplete: nearly all are decoded.
        assert decoded >= 160, decoded
        stats = await viewer.pc.getStats()
        inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
        assert inbound and inbound[0].packetsLost <= 3, inbound
    finally:
        await viewer.close()
        relay.close()


def keyframe_start(payload: bytes) -> bool:
    """The first packet of a keyframe: SPS alone or in a STAP-A, or an IDR's first FU-A."""
    nal = payload[0] & 0x1F
    return nal in (7, 24) or (nal == 28 and bool(payload[1] & 0x80) and payload[1] & 0x1F == 5)


async def test_a_picture_loss_is_answered_with_the_cached_gop(
    http: aiohttp.ClientSession, engine_gateway: Gateway, rtsp: RtspServer
) -> None:
    """The camera's GOP is 1 s: a PLI sent 0.2 s after its keyframe is answered with that
    keyframe and what followed, squeezed in before the next frame, long before the camera's
    next keyframe would come."""
    gw = engine_gateway
    await live(http, gw.base_url, "pli", rtsp.url("/baseline"), mode="passthrough")
    viewer = Viewer(gw.base_url, "pli")
    try:
        await viewer.connect()
        seen = viewer.record_rtp()
        await viewer.wait_frames(20)
        asked, count, plis = await picture_loss(
            http, gw.base_url, viewer, seen, keyframe_start, 0.2
        )
        await asyncio.sleep(0.3)
        after = seen[count:]
        starts = [i for i, (*_, p) in enumerate(after) if keyframe_start(p)]
        assert starts, "no keyframe within 0.3 s of the PLI"
        at, _, ts, _ = after[starts[0]]
        assert at - asked < 0.2
        before = after[starts[0] - 1][2] if starts[0] else seen[count - 1][2]
        assert 0 < (ts - before) % 2**32 < 3000, "the replay is not squeezed in"
        assert await metric(http, gw.base_url, "media_server_engine_plis_total") == plis + 1
        frames = viewer.frames
        await viewer.wait_frames(frames + 30, timeout=5)  # and the picture goes on
    finally:
        await viewer.close()


async def test_viewers_join_and_leave_while_others_watch(
    http: aiohttp.ClientSession, engine_gateway: Gateway, rtsp: RtspServer
) -> None:
    gw = engine_gateway
    await live(http, gw.base_url, "churn", rtsp.url("/small"), mode="passthrough")
    steady = [Viewer(gw.base_url, "churn") for _ in range(2)]
    try:
        for v in steady:
            await v.connect()
        await asyncio.gather(*(v.wait_frames(10) for v in steady))
        start = time.monotonic()

        async def come_and_go(n: int) -> None:
            v = Viewer(gw.base_url, "churn", "whep" if n % 2 else "ws")
            try:
                await v.connect()
                await v.wait_frames(3 + n % 5)
            finally:
                await v.close()

        for batch in range(4):
            await asyncio.gather(*(come_and_go(batch * 4 + i) for i in range(4)))
        end = time.monotonic()
        for v in steady:  # /small is 15 fps: the steady viewers never slowed down
            assert frames_between(v, start, end) >= 12 * (end - start), (end - start, v.frames)
        for _ in range(50):
            if await metric(http, gw.base_url, "media_server_engine_viewers") <= 2 + 1:
                break
            await asyncio.sleep(0.1)
        assert "Traceback" not in gw.stderr_text()
        assert "lane job failed" not in gw.stderr_text()
    finally:
        await asyncio.gather(*(v.close() for v in steady))


async def test_a_camera_reconnect_under_the_engine(http: aiohttp.ClientSession) -> None:
    with start_rtsp_server() as camera, run_gateway("--no-demo", env=ENGINE) as gw:
        port = camera.port
        await live(http, gw.base_url, "cam", camera.url("/small"), mode="passthrough")
        viewer = Viewer(gw.base_url, "cam")
        try:
            await viewer.connect()
            await viewer.wait_frames(15)
            camera.proc.kill()
            camera.proc.wait()
            await wait_state(http, gw.base_url, "cam", "reconnecting", timeout=10)
            frames = viewer.frames
            await asyncio.sleep(1)
            with start_rtsp_server(port=port):
                await wait_state(http, gw.base_url, "cam", "live", timeout=15)
                await viewer.wait_frames(frames + 30, timeout=15)
            assert viewer.pc.connectionState == "connected"  # the same session
            line = unwrap([ts for _, ts in viewer.timeline])
            assert all(b > a for a, b in itertools.pairwise(line)), "time went backwards"
        finally:
            await viewer.close()


async def test_the_engine_as_a_canary_for_a_share_of_passthrough_viewers(
    http: aiohttp.ClientSession, rtsp: RtspServer
) -> None:
    """aiortc by default, the engine for exactly half of new passthrough viewers; a
    transcoded stream's viewers are not its to take."""
    env = {
        **GENEROUS,
        "MEDIA_SERVER_WEBRTC__MEDIA_PATH": "aiortc",
        "MEDIA_SERVER_CANARY__CHOICE": "engine",
        "MEDIA_SERVER_CANARY__PERCENT": "50",
    }
    with run_gateway("--no-demo", env=env) as gw:
        await live(http, gw.base_url, "pass", rtsp.url("/small"), mode="passthrough")
        await live(http, gw.base_url, "enc", rtsp.url("/small"), mode="transcode")
        viewers = [Viewer(gw.base_url, "pass", "whep" if i % 2 else "ws") for i in range(4)]
        viewers.append(Viewer(gw.base_url, "enc"))
        try:
            for viewer in viewers:
                await viewer.connect()
            await asyncio.gather(*(v.wait_frames(15) for v in viewers))
        finally:
            await asyncio.gather(*(v.close() for v in viewers))
        given = sorted(str(v.media_transport) for v in viewers[:4])
        assert given == ["engine", "engine", "passthrough", "passthrough"]
        assert viewers[4].media_transport == "transcode-shared"

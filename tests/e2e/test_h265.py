"""An H.265 camera (GStreamer's x265enc) through the gateway to real viewers: those that
offer H.265 take it untouched through the engine, those that offer only H.264 share one
transcode that runs only while they watch, and both at once on one stream."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import av
import pytest

from media_server.codecs import h265
from tests.e2e.test_mse import MseClient, decode
from tests.support.api import live, metric
from tests.support.gateway import FAST, GENEROUS, Gateway, run_gateway
from tests.support.relay import LossyRelay, picture_loss, repaired
from tests.support.rtsp import RtspServer
from tests.support.viewer import Viewer, watch

pytestmark = pytest.mark.e2e

HEVC_ONLY = ("H265",)
H264_ONLY = ("H264",)


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    """The engine serves passed-through viewers (the default), and the native client
    reads the camera (its H.265 depacketizer)."""
    env = {**GENEROUS, **FAST, "MEDIA_SERVER_INGEST__CLIENT": "native"}
    with run_gateway("--no-demo", env=env) as gw:
        yield gw


async def view(http: aiohttp.ClientSession, gw: Gateway, stream_id: str) -> dict[str, Any]:
    async with http.get(f"{gw.base_url}/api/v1/streams/{stream_id}") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


def fmtp(answer: str, codec: str) -> dict[str, str]:
    """The answer's format parameters of its `codec` payload type (asserting it has one)."""
    pt = next(
        line.split()[0].split(":")[1]
        for line in answer.splitlines()
        if line.startswith("a=rtpmap:") and line.split()[1].startswith(codec + "/")
    )
    line = next(x for x in answer.splitlines() if x.startswith(f"a=fmtp:{pt} "))
    return dict(item.split("=", 1) for item in line.split(" ", 1)[1].split(";"))


def video_codecs_of(answer: str) -> set[str]:
    video = answer.split("m=video", 1)[1].split("m=", 1)[0]
    return {
        line.split()[1].split("/")[0]
        for line in video.splitlines()
        if line.startswith("a=rtpmap:") and "rtx" not in line
    }


@pytest.mark.parametrize("client", ["native", "pyav"])
async def test_a_viewer_that_offers_h265_gets_it_untouched(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer, client: str
) -> None:
    """Passthrough through either ingest client: the answer states the stream's own
    profile, tier and level; the viewer decodes the camera's pictures; nothing is decoded
    or encoded on the gateway."""
    stream_id = f"hevc-pass-{client}"
    state = await live(http, gw.base_url, stream_id, rtsp.url("/h265"), client=client)
    assert (state["codec"], state["effective_mode"]) == ("hevc", "passthrough"), state
    assert state["profile"] == "main", state
    viewer = Viewer(gw.base_url, stream_id, video_codecs=HEVC_ONLY)
    try:
        await viewer.connect()
        await viewer.wait_frames(30)
        assert viewer.media_transport == "engine"
        assert video_codecs_of(viewer.answer_sdp) == {"H265"}
        state = await view(http, gw, stream_id)
        assert state["video_codecs"] == {"viewer": {"hevc": 1}}, state
        # The engine's sender reports reached the viewer's receiver (30 frames: > 1 s).
        stats = (await viewer.pc.getStats()).values()
        reports = [s for s in stats if s.type == "remote-outbound-rtp" and s.kind == "video"]
        assert reports and reports[0].packetsSent > 0, list(stats)
    finally:
        await viewer.close()
    assert viewer.sizes == {(320, 240)}
    stated = fmtp(viewer.answer_sdp, "H265")
    async with http.get(f"{gw.base_url}/api/v1/streams/{stream_id}/snapshot.jpg") as resp:
        assert resp.status == 200, await resp.text()
        jpeg = await resp.read()  # the snapshot decodes H.265
    counters = (await view(http, gw, stream_id))["counters"]
    assert counters["frames_decoded"] == 0 and counters["frames_encoded"] == 0, counters
    with av.open(io.BytesIO(jpeg)) as image:
        assert isinstance(image, av.container.InputContainer)
        picture = next(image.decode(video=0))
        assert (picture.width, picture.height) == (320, 240)
    # What the camera's SPS says, read here from the camera's own parameter sets.
    sps = await camera_sps(http, gw, stream_id)
    assert stated == sps.sdp_parameters, (stated, sps)
    async with http.delete(f"{gw.base_url}/api/v1/streams/{stream_id}"):
        pass


@pytest.mark.parametrize("client", ["native", "pyav"])
async def test_parameter_sets_from_the_sdp_go_before_every_keyframe(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer, client: str
) -> None:
    """A camera that sends VPS, SPS and PPS only in its SDP: a viewer that joins after its
    first keyframe still decodes, because the gateway puts them in front of each one (the
    native client's assembler, or the ingest worker for FFmpeg's: without it, the pyav
    case decodes nothing)."""
    stream_id = f"hevc-sdp-{client}"
    await live(http, gw.base_url, stream_id, rtsp.url("/h265-sdp-only"), client=client)
    await asyncio.sleep(1.5)  # past the first keyframe (a GOP is 1 s)
    viewer = await watch(gw.base_url, stream_id, frames=20, video_codecs=HEVC_ONLY)
    assert viewer.sizes == {(320, 240)}
    assert video_codecs_of(viewer.answer_sdp) == {"H265"}
    async with http.delete(f"{gw.base_url}/api/v1/streams/{stream_id}"):
        pass


async def test_an_h265_camera_with_b_frames_is_transcoded_for_all(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer
) -> None:
    """WebRTC takes no B-frames: the stream turns to transcoding once they show, and
    every viewer, H.265 offered or not, gets H.264."""
    stream_id = "hevc-bframes"
    await live(http, gw.base_url, stream_id, rtsp.url("/h265-bframes"))
    deadline = time.monotonic() + 10
    while (state := await view(http, gw, stream_id))["effective_mode"] != "transcode":
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.1)
    assert state["codec"] == "hevc", state
    viewer = await watch(gw.base_url, stream_id, frames=20)  # offers H.265 and H.264
    assert video_codecs_of(viewer.answer_sdp) == {"H264"}
    assert viewer.sizes == {(320, 240)}
    async with http.delete(f"{gw.base_url}/api/v1/streams/{stream_id}"):
        pass


async def camera_sps(http: aiohttp.ClientSession, gw: Gateway, stream_id: str) -> h265.SpsInfo:
    """The stream's SPS, as an MSE viewer that plays H.265 receives it (`hvcC`)."""
    async with http.ws_connect(f"{gw.base_url}/ws/{stream_id}") as ws:
        client = await MseClient.start(ws, hevc=True)
        await client.read(1.5)
    with av.open(io.BytesIO(client.init), format="mp4") as container:
        extradata = bytes(container.streams.video[0].codec_context.extradata or b"")
    # hvcC: 22 bytes of header, a count of arrays, then each: type, count, size, unit.
    at, arrays = 23, extradata[22]
    for _ in range(arrays):
        kind, count = extradata[at] & 0x3F, int.from_bytes(extradata[at + 1 : at + 3], "big")
        at += 3
        for _ in range(count):
            size = int.from_bytes(extradata[at : at + 2], "big")
            if kind == h265.NAL_SPS:
                return h265.parse_sps(extradata[at + 2 : at + 2 + size])
            at += 2 + size
    raise AssertionError("no SPS in the init segment")


async def test_h264_viewers_share_one_transcode_beside_h265_viewers(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer
) -> None:
    """Both at once on one stream; the transcode starts with the first H.264-only viewer
    (from the cached GOP, so it need not wait for a keyframe) and stops after the last."""
    stream_id = "hevc-both"
    await live(http, gw.base_url, stream_id, rtsp.url("/h265"))
    hevc = Viewer(gw.base_url, stream_id, video_codecs=HEVC_ONLY)
    plain = [Viewer(gw.base_url, stream_id, video_codecs=H264_ONLY) for _ in range(2)]
    try:
        await hevc.connect()
        await hevc.wait_frames(5)
        assert (await view(http, gw, stream_id))["counters"]["frames_encoded"] == 0
        await asyncio.gather(*(v.connect() for v in plain))
        await asyncio.gather(hevc.wait_frames(45), *(v.wait_frames(30) for v in plain))
        assert [v.media_transport for v in plain] == ["transcode-shared"] * 2
        assert all(video_codecs_of(v.answer_sdp) == {"H264"} for v in plain)
        assert all(v.sizes == {(320, 240)} for v in (hevc, *plain))
        assert all(v.first_frame_at is not None and v.first_frame_at < 1.0 for v in plain), [
            v.first_frame_at for v in plain
        ]
        state = await view(http, gw, stream_id)
        assert state["video_codecs"] == {"viewer": {"hevc": 1, "h264": 2}}, state
        encoded = state["counters"]["frames_encoded"]
        assert encoded > 0
        # One encode for both: about as many frames as the stream sent since, not twice.
        assert encoded <= state["counters"]["keyframes_in"] * 15 + 15, state["counters"]
    finally:
        for v in plain:
            await v.close()
    await asyncio.sleep(1.0)
    stopped = (await view(http, gw, stream_id))["counters"]["frames_encoded"]
    frames = hevc.frames
    await hevc.wait_frames(frames + 15)  # the H.265 viewer goes on
    state = await view(http, gw, stream_id)
    await hevc.close()
    assert state["counters"]["frames_encoded"] == stopped, "the transcode outlived its viewers"
    assert state["video_codecs"] == {"viewer": {"hevc": 1}}, state
    async with http.delete(f"{gw.base_url}/api/v1/streams/{stream_id}"):
        pass


async def test_the_engine_answers_nack_and_pli_for_h265(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer
) -> None:
    """10 % of the video packets lost on the way are sent again (RTX); a picture loss is
    answered with the cached GOP at once (its VPS first), not at the camera's keyframe."""
    stream_id = "hevc-loss"
    await live(http, gw.base_url, stream_id, rtsp.url("/h265"))
    relay = LossyRelay(drop_every=10)
    await relay.start()
    viewer = Viewer(
        gw.base_url,
        stream_id,
        rewrite_offer=relay.rewrite_offer,
        rewrite_answer=relay.rewrite_answer,
        video_codecs=HEVC_ONLY,
    )
    try:
        decoded, retransmitted = await repaired(http, gw.base_url, viewer, 4)
        seen = viewer.record_rtp()
        assert relay.dropped >= 10, relay.dropped
        assert retransmitted >= 0.9 * relay.dropped, (retransmitted, relay.dropped)
        assert decoded >= 50, decoded  # of 60 at 15 fps: nearly all whole
        # A picture loss, 0.3 s after a keyframe (the camera's next is 0.7 s away).
        asked, count, plis = await picture_loss(
            http, gw.base_url, viewer, seen, keyframe_start, 0.3
        )
        await asyncio.sleep(0.3)
        starts = [at for at, *_, p in seen[count:] if keyframe_start(p)]
        assert starts and starts[0] - asked < 0.2, "the PLI was not answered at once"
        assert await metric(http, gw.base_url, "media_server_engine_plis_total") == plis + 1
    finally:
        await viewer.close()
        relay.close()


def keyframe_start(head: bytes) -> bool:
    """The first packet of an H.265 keyframe, by its payload header: its VPS, alone or
    with SPS and PPS in an aggregation packet (what else this camera sends is one NAL
    unit a packet, or its fragments)."""
    return (head[0] >> 1) & 0x3F in (h265.NAL_VPS, 48)


async def test_mse_and_hls_carry_hvc1_or_the_transcode(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer
) -> None:
    """A MediaSource that plays H.265 gets `hvc1`; one that does not, the transcode in
    `avc1`. HLS: `hvc1`, or with `?video=h264` the transcode."""
    stream_id = "hevc-fmp4"
    await live(http, gw.base_url, stream_id, rtsp.url("/h265"))
    # The transcode is what the H.264 variant below says it will be: avc1.42C01F.
    for hevc, prefix in ((True, "hvc1.1."), (False, "avc1.42C01F")):
        async with http.ws_connect(f"{gw.base_url}/ws/{stream_id}") as ws:
            client = await MseClient.start(ws, hevc=hevc)
            await client.read(2.5)
        assert client.codecs and client.codecs[0].startswith(prefix), client.codecs
        frames = decode(client.init, client.fragments)
        assert len(frames) >= 20 and {(f.width, f.height) for f in frames} == {(320, 240)}
    base = f"{gw.base_url}/hls/{stream_id}/index.m3u8"
    for url, prefix in ((base, "hvc1.1."), (base + "?video=h264", "avc1.42")):
        async with http.get(url) as resp:
            text = await resp.text()
        variants = [line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
        assert f'CODECS="{prefix}' in variants[0], text
        uris = [line for line in text.splitlines() if line.startswith("media.m3u8")]
        if url.endswith("h264"):  # the transcode alone
            assert uris == ["media.m3u8?video=h264"], text
        else:  # the stream as it is, then its transcode for players that play no hvc1
            assert uris == ["media.m3u8", "media.m3u8?video=h264"], text
            assert 'CODECS="avc1.42C01F"' in variants[1], text  # as the encode will say
            assert "RESOLUTION=320x240" in variants[1], text
        sizes = await asyncio.to_thread(play_hls, url, 20)
        assert len(sizes) == 20
    async with http.get(base + "?video=h265") as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid-query"
    async with http.delete(f"{gw.base_url}/api/v1/streams/{stream_id}"):
        pass


def play_hls(url: str, count: int) -> list[tuple[int, int]]:
    sizes = []
    with av.open(url, timeout=20) as container:
        for frame in container.decode(video=0):
            sizes.append((frame.width, frame.height))
            if len(sizes) >= count:
                break
    assert set(sizes) == {(320, 240)}
    return sizes


async def test_a_viewer_that_offers_neither_is_refused_clearly(
    http: aiohttp.ClientSession, gw: Gateway, rtsp: RtspServer
) -> None:
    stream_id = "hevc-vp8"
    await live(http, gw.base_url, stream_id, rtsp.url("/h265"))
    viewer = Viewer(gw.base_url, stream_id, video_codecs=("VP8",))
    with pytest.raises(AssertionError, match="codec-unsupported"):
        await viewer.connect()
    await viewer.close()
    await watch(gw.base_url, stream_id, frames=10)  # the stream is none the worse


async def test_aiortcs_own_sender_packs_h265_too(
    http: aiohttp.ClientSession, rtsp: RtspServer
) -> None:
    """With `webrtc.media_path: aiortc`, aiortc's sender sends the camera's H.265 itself,
    packed as the gateway taught it (RFC 7798)."""
    env = {**GENEROUS, **FAST, "MEDIA_SERVER_WEBRTC__MEDIA_PATH": "aiortc"}
    with run_gateway("--no-demo", env=env) as own:
        await live(http, own.base_url, "hevc", rtsp.url("/h265"))
        viewer = await watch(own.base_url, "hevc", frames=30, video_codecs=HEVC_ONLY)
        assert viewer.media_transport == "passthrough"
        assert video_codecs_of(viewer.answer_sdp) == {"H265"}
        assert viewer.sizes == {(320, 240)}
        state = await view(http, own, "hevc")
        assert state["counters"]["frames_encoded"] == 0, state

"""MSE over the signaling WebSocket, against a real gateway and its demo stream: what a
browser's MediaSource would be given decodes frame for frame (FFmpeg reads it), starts at
a keyframe, and a viewer that stops reading loses its own fragments, nobody else's."""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from tests.support.api import live, live_with_audio, metric
from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def small_queues() -> Iterator[Gateway]:
    """Viewers' queues at their least (256 KiB), so a stalled one overflows soon."""
    with run_gateway(env={**GENEROUS, "MEDIA_SERVER_MSE__VIEWER_BYTES": str(256 * 1024)}) as gw:
        yield gw


#: How long the stalled viewer reads nothing: its queue (256 KiB), the gateway's send
#: buffer (an eighth of that, doubled) and its own small window fill well within it.
STALL = 15.0


def small_window(addr_info: Any) -> socket.socket:
    """A client socket whose receive window stays small (set before it connects)."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def sequence(fragment: bytes) -> int:
    """A fragment's `mfhd` sequence number (the muxer counts every fragment it makes)."""
    assert fragment[4:8] == b"moof" and fragment[12:16] == b"mfhd", fragment[:32]
    return int(struct.unpack(">I", fragment[20:24])[0])


def decode(init: bytes, fragments: list[bytes]) -> list[av.VideoFrame]:
    container = av.open(io.BytesIO(init + b"".join(fragments)), format="mp4")
    assert isinstance(container, av.container.InputContainer)
    with container:
        return list(container.decode(video=0))


def tone(init: bytes, fragments: list[bytes]) -> tuple[str, float]:
    """The audio track's codec and the frequency it sounds loudest at."""
    container = av.open(io.BytesIO(init + b"".join(fragments)), format="mp4")
    assert isinstance(container, av.container.InputContainer)
    with container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
    rate = frames[0].sample_rate
    pcm = np.concatenate([f.to_ndarray().reshape(len(f.layout.channels), -1)[0] for f in frames])
    pcm = pcm[rate // 2 :].astype(np.float64)  # past the decoder's start
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return stream.codec_context.name, float(np.argmax(spectrum) * rate / len(pcm))


class MseClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.codecs: list[str] = []
        self.init = b""
        self.fragments: list[bytes] = []
        self.first_at: float | None = None

    @classmethod
    async def start(cls, ws: aiohttp.ClientWebSocketResponse, **ask: Any) -> MseClient:
        client = cls(ws)
        await ws.send_json({"type": "mse", **ask})
        return client

    async def read(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                return
            if msg.type == aiohttp.WSMsgType.TEXT:
                message = msg.json()
                assert message["type"] == "mse", message
                self.codecs.append(message["codecs"])
            elif msg.type == aiohttp.WSMsgType.BINARY:
                data: bytes = msg.data
                if data[4:8] == b"ftyp":
                    self.init = data
                else:
                    self.first_at = self.first_at or time.monotonic()
                    self.fragments.append(data)
            else:
                raise AssertionError(f"socket ended: {msg}")


async def test_mse_viewer_gets_codecs_init_and_fragments_that_decode(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    async with http.ws_connect(f"{gateway.base_url}/ws/demo") as ws:
        asked = time.monotonic()
        client = await MseClient.start(ws)
        await client.read(3.0)
    assert client.codecs and client.codecs[0].startswith("avc1.42"), client.codecs
    assert client.init[4:8] == b"ftyp"
    assert client.first_at is not None
    frames = decode(client.init, client.fragments)
    assert len(frames) >= 60, len(frames)  # 3 s of 30 fps, the cached GOP ahead
    assert {(f.width, f.height) for f in frames} == {(640, 480)}
    assert frames[0].key_frame  # it starts at a keyframe
    times = [float((f.pts or 0) * (f.time_base or 0)) for f in frames]
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.02 < step < 0.05 for step in steps), steps  # 30 fps, one timeline
    print(f"first fragment {1000 * (client.first_at - asked):.0f} ms after asking")


async def test_mse_bad_requests_get_errors_and_the_socket_stays(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    async with http.ws_connect(f"{gateway.base_url}/ws/nope") as ws:
        assert (await ws.receive_json(timeout=10))["code"] == "stream-not-found"
        await ws.send_json({"type": "mse"})
        assert (await ws.receive_json(timeout=10))["code"] == "stream-not-found"
    async with http.ws_connect(f"{gateway.base_url}/ws/demo") as ws:
        await ws.send_json({"type": "mse", "opus": "maybe"})
        assert (await ws.receive_json(timeout=10))["code"] == "invalid-message"
        client = await MseClient.start(ws)
        await client.read(1.0)
        assert client.fragments
        await ws.send_json({"type": "mse"})
        await ws.send_json({"type": "ping", "id": 7})
        replies: list[dict[str, Any]] = []
        while len(replies) < 2:
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.TEXT:
                replies.append(msg.json())
        assert replies[0]["code"] == "invalid-state"  # one viewer per socket
        assert replies[1] == {"type": "pong", "id": 7}


async def test_a_stalled_mse_viewer_loses_its_own_fragments_only(
    http: aiohttp.ClientSession, small_queues: Gateway
) -> None:
    base = small_queues.base_url
    connector = aiohttp.TCPConnector(socket_factory=small_window)
    async with (
        aiohttp.ClientSession(connector=connector) as slow,
        slow.ws_connect(f"{base}/ws/demo") as stalled_ws,
    ):
        stalled = await MseClient.start(stalled_ws)
        await stalled.read(1.0)
        transport = stalled_ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.pause_reading()  # it reads no more: the gateway's sends back up
        async with http.ws_connect(f"{base}/ws/demo") as ws:
            steady = await MseClient.start(ws)
            await steady.read(STALL)
        transport.resume_reading()
        await stalled.read(3.0)
    received = sum(len(f) for f in steady.fragments)
    print(f"steady viewer: {8 * received / STALL / 1000:.0f} kbit/s")
    # The steady viewer got every fragment the muxer made in its time, in order.
    numbers = [sequence(f) for f in steady.fragments]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert len(decode(steady.init, steady.fragments)) >= STALL * 25
    # The stalled one lost a run of them, and took up again at a keyframe.
    numbers = [sequence(f) for f in stalled.fragments]
    gaps = [i for i in range(1, len(numbers)) if numbers[i] != numbers[i - 1] + 1]
    assert gaps, "the stalled viewer lost nothing: its queue is not bounded"
    after = stalled.fragments[gaps[0] :]
    frames = decode(stalled.init, after)
    assert frames and frames[0].key_frame
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("mount", "opus", "codecs", "heard"),
    [
        ("/av-aac", True, "mp4a.40.2", ("aac", 660)),  # as the camera sent it
        ("/av-opus", True, "opus", ("opus", 440)),
        ("/av-opus", False, None, None),  # a client without Opus in MP4: video only
        ("/av-pcmu", True, None, None),  # G.711 has no place in fMP4
    ],
)
async def test_mse_carries_the_cameras_sound_where_fmp4_can(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    rtsp: RtspServer,
    mount: str,
    opus: bool,
    codecs: str | None,
    heard: tuple[str, int] | None,
) -> None:
    sid = f"mse{mount.replace('/', '-')}-{'o' if opus else 'n'}"
    view = await live_with_audio(http, gateway.base_url, sid, rtsp.url(mount))
    try:
        async with http.ws_connect(f"{gateway.base_url}/ws/{sid}") as ws:
            client = await MseClient.start(ws, opus=opus)
            await client.read(4.0)
        names = client.codecs[0].split(", ")
        assert names[0].startswith("avc1.")
        assert names[1:] == ([codecs] if codecs else []), client.codecs
        assert decode(client.init, client.fragments)
        if heard is None:
            if mount == "/av-pcmu":
                assert view["fmp4_audio"] is None and "pcm_mulaw" in view["fmp4_note"]
            return
        assert view["fmp4_audio"] == heard[0] and view["fmp4_note"] is None
        codec, frequency = tone(client.init, client.fragments)
        assert codec == heard[0]
        assert abs(frequency - heard[1]) < 15, frequency
    finally:
        async with http.delete(f"{gateway.base_url}/api/v1/streams/{sid}"):
            pass


async def test_metrics_count_mse_and_hls_viewers_by_kind(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    """Sessions, bytes out, first-frame times and the consumers now, per kind."""
    base = gateway.base_url

    async def sample(name: str, **labels: str) -> float:
        return await metric(http, base, name, **labels)

    kinds = {"mse": {"via": "ws", "transport": "mse"}, "hls": {"via": "hls", "transport": "hls"}}
    before = {
        kind: (
            await sample("media_server_viewer_sessions_total", **labels),
            await sample("media_server_egress_bytes_total", stream="demo", transport=kind),
            await sample("media_server_time_to_first_frame_seconds_count", transport=kind),
        )
        for kind, labels in kinds.items()
    }
    async with http.ws_connect(f"{base}/ws/demo") as ws:
        client = await MseClient.start(ws)
        await client.read(1.0)
        # A player of its own address: others' (counted a while after they stop) are not it.
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.19", 0))
        async with aiohttp.ClientSession(connector=connector) as player:
            async with player.get(f"{base}/hls/demo/media.m3u8") as response:
                playlist = await response.text()
            segment = [line for line in playlist.splitlines() if line.endswith(".mp4")][-1]
            async with player.get(f"{base}/hls/demo/{segment}") as response:
                assert response.status == 200
        consumers = {
            kind: await sample("media_server_stream_consumers", stream="demo", kind=kind)
            for kind in ("mse", "hls", "muxer")
        }
        assert consumers["mse"] == 1 and consumers["hls"] >= 1
        assert consumers["muxer"] == 1  # one muxer serves both
    for kind, labels in kinds.items():
        sessions, octets, firsts = before[kind]
        assert await sample("media_server_viewer_sessions_total", **labels) == sessions + 1
        sent = await sample("media_server_egress_bytes_total", stream="demo", transport=kind)
        assert sent > octets + 10_000, (kind, sent, octets)
        count = await sample("media_server_time_to_first_frame_seconds_count", transport=kind)
        assert count == firsts + 1, kind
    await asyncio.sleep(0.5)
    assert await sample("media_server_stream_consumers", stream="demo", kind="mse") == 0


async def test_a_transcoded_stream_is_muxed_from_its_shared_encode(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    """A stream browsers cannot take as it is reaches MSE and HLS from the one encode its
    WebRTC viewers share: the stream encodes once, whoever watches."""
    await live(http, gateway.base_url, "mse-transcoded", rtsp.url("/small"), mode="transcode")
    try:
        async with http.ws_connect(f"{gateway.base_url}/ws/mse-transcoded") as ws:
            client = await MseClient.start(ws)
            await client.read(3.0)
        frames = decode(client.init, client.fragments)
        assert len(frames) >= 30 and frames[0].key_frame
        async with http.get(f"{gateway.base_url}/api/v1/streams/mse-transcoded") as response:
            view = await response.json()
        assert view["effective_mode"] == "transcode"
        assert view["media_transport"] == "transcode-shared"
        assert view["counters"]["frames_encoded"] > 0  # encoded once, for all
    finally:
        async with http.delete(f"{gateway.base_url}/api/v1/streams/mse-transcoded"):
            pass

"""WebSocket signaling: every bad message gets an error message, and nobody else notices."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver

from tests.support.gateway import Gateway
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e


async def make_offer(codec: str | None = None) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    if codec:
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType == f"video/{codec}"])
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def expect_error(ws: aiohttp.ClientWebSocketResponse, code: str) -> dict[str, Any]:
    msg: dict[str, Any] = await ws.receive_json(timeout=10)
    assert msg["type"] == "error" and msg["code"] == code, msg
    assert msg["message"]
    return msg


async def test_bad_messages_get_errors_and_other_viewers_keep_playing(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    watcher = Viewer(gateway.base_url, "demo")
    await watcher.connect()
    try:
        await watcher.wait_frames(10)
        before = watcher.frames
        async with http.ws_connect(f"{gateway.base_url}/ws/demo") as ws:
            await ws.send_str("{not json")
            await expect_error(ws, "invalid-json")
            await ws.send_json(["offer"])
            await expect_error(ws, "invalid-message")
            await ws.send_json({"type": "dance"})
            await expect_error(ws, "unknown-type")
            await ws.send_json({"type": "candidate", "candidate": None})
            await expect_error(ws, "invalid-state")  # candidate before offer
            await ws.send_bytes(b"\x00\x01")
            await expect_error(ws, "invalid-message")
            await ws.send_json({"type": "offer"})
            await expect_error(ws, "invalid-sdp")
            await ws.send_json({"type": "offer", "sdp": "v=0\r\nm=video junk\r\n"})
            await expect_error(ws, "invalid-sdp")
            audio = (
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
            )
            await ws.send_json({"type": "offer", "sdp": audio})
            await expect_error(ws, "no-video")
            vp8_only = await make_offer("VP8")
            assert "H264" not in vp8_only
            await ws.send_json({"type": "offer", "sdp": vp8_only})
            await expect_error(ws, "codec-unsupported")
            # After all that, the same socket still negotiates a real session.
            await ws.send_json({"type": "offer", "sdp": await make_offer()})
            answer = await ws.receive_json(timeout=10)
            assert answer["type"] == "answer" and "a=candidate" in answer["sdp"]
            await ws.send_json({"type": "offer", "sdp": await make_offer()})
            await expect_error(ws, "invalid-state")  # one session per socket
            for hostile in (
                {"candidate": "garbage"},
                {"candidate": "candidate:1 1 udp 1 127.0.0.1 9", "sdpMid": "0"},
                {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMLineIndex": "0"},
                {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": 0},
                {"candidate": 5, "sdpMid": "0"},
                {"candidate": "x" * 5000, "sdpMid": "0"},
            ):
                await ws.send_json({"type": "candidate", "candidate": hostile})
                await expect_error(ws, "invalid-candidate")
            await ws.send_str("[" * 30_000 + "]" * 30_000)
            await expect_error(ws, "invalid-json")
            await ws.send_json({"type": "candidate", "candidate": None})  # end of candidates
            await asyncio.sleep(0.5)
        # The watcher kept receiving frames all along.
        await asyncio.sleep(1.0)
        assert watcher.frames - before >= 20, (before, watcher.frames)
        assert watcher.pc.connectionState == "connected"
    finally:
        await watcher.close()


async def test_ping_is_answered_before_and_after_the_offer(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    async with http.ws_connect(f"{gateway.base_url}/ws/demo") as ws:
        await ws.send_json({"type": "ping", "id": 7})
        assert await ws.receive_json(timeout=10) == {"type": "pong", "id": 7}
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json(timeout=10) == {"type": "pong"}
        await ws.send_json({"type": "ping", "id": {"not": "echoed"}})
        assert await ws.receive_json(timeout=10) == {"type": "pong"}
        await ws.send_json({"type": "offer", "sdp": await make_offer()})
        assert (await ws.receive_json(timeout=10))["type"] == "answer"
        await ws.send_json({"type": "ping", "id": "after"})
        assert await ws.receive_json(timeout=10) == {"type": "pong", "id": "after"}


async def test_unknown_stream_over_websocket(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    async with http.ws_connect(f"{gateway.base_url}/ws/no-such-stream") as ws:
        await expect_error(ws, "stream-not-found")
        await ws.send_json({"type": "offer", "sdp": await make_offer()})
        await expect_error(ws, "stream-not-found")


async def test_answer_carries_a_loopback_candidate(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    async with http.ws_connect(f"{gateway.base_url}/ws/demo") as ws:
        await ws.send_json({"type": "offer", "sdp": await make_offer()})
        answer = await ws.receive_json(timeout=10)
    candidates = [line for line in answer["sdp"].splitlines() if line.startswith("a=candidate")]
    assert any(" 127.0.0.1 " in c and "typ host" in c for c in candidates), candidates
    assert not any("typ srflx" in c for c in candidates)  # no STUN server contacted


async def test_trickled_candidate_from_browser_format(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    viewer = Viewer(gateway.base_url, "demo")
    await viewer.connect()
    try:
        assert viewer._ws is not None
        await viewer._ws.send_json(
            {
                "type": "candidate",
                "candidate": {
                    "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host generation 0",
                    "sdpMid": "0",
                    "sdpMLineIndex": 0,
                    "usernameFragment": "abcd",
                },
            }
        )
        await viewer._ws.send_json({"type": "candidate", "candidate": None})
        await viewer.wait_frames(30)
    finally:
        await viewer.close()

"""A real aiortc viewer: negotiates over the WebSocket or WHEP and decodes real frames."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from media_server.aiortc_internals import teach_h265
from tests.support import stamp
from tests.support.avsync import SyncMeter

teach_h265()  # the viewers decode H.265, as a browser with a decoder for it does


@dataclass
class Viewer:
    base_url: str
    stream_id: str
    via: str = "ws"
    #: Offer to receive audio as well (a browser's default), not video only.
    audio: bool = False
    #: Lip sync measured as a browser would (the `/av-sync` mount), when given.
    sync: SyncMeter | None = None
    #: The video codecs offered, in order (MIME subtypes: "H265", "H264"); None: all
    #: aiortc has (VP8, H.264, and H.265 as the gateway teaches it).
    video_codecs: tuple[str, ...] | None = None
    pc: RTCPeerConnection = field(init=False)
    frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    #: (arrival time, RTP timestamp) of each decoded frame, in order.
    timeline: list[tuple[float, int]] = field(default_factory=list)
    #: The capture stamp of each decoded frame (``/clock`` mount), None where unreadable.
    stamps: list[int | None] = field(default_factory=list)
    started: float = 0.0
    first_frame_at: float | None = None
    whep_location: str | None = None
    answer_sdp: str = ""
    #: The media transport the gateway says serves us (WS answer, WHEP header).
    media_transport: str | None = None
    #: Decoded audio: mono samples (float, -1..1) and their rate, as they arrived.
    audio_samples: list[np.ndarray[Any, Any]] = field(default_factory=list)
    audio_rate: int = 0
    audio_frames: int = 0
    #: Messages the gateway sent after its answer.
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: Rewrites of the offer sent and the answer applied (a relay in between, say).
    rewrite_offer: Callable[[str], str] | None = None
    rewrite_answer: Callable[[str], str] | None = None
    #: For a gateway on HTTPS: a client context that trusts its certificate.
    tls: ssl.SSLContext | None = None
    _http: aiohttp.ClientSession | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def connect(self) -> None:
        """Negotiate; raises AssertionError with the gateway's error if it refuses."""
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = self.pc.addTransceiver("video", direction="recvonly")
        if self.video_codecs is not None:
            capabilities = RTCRtpReceiver.getCapabilities("video")
            caps = capabilities.codecs if capabilities else []
            names = [f"video/{name}".lower() for name in (*self.video_codecs, "rtx")]
            video.setCodecPreferences(
                [c for name in names for c in caps if c.mimeType.lower() == name]
            )
        if self.sync is not None:
            self.sync.watch("video", video.receiver)
        if self.audio:
            audio = self.pc.addTransceiver("audio", direction="recvonly")
            if self.sync is not None:
                self.sync.watch("audio", audio.receiver)
        self.pc.on("track", self._on_track)
        self.started = time.monotonic()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        if self.rewrite_offer is not None:
            offer = self.rewrite_offer(offer)
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls or True))
        if self.via == "whep":
            url = f"{self.base_url}/api/v1/streams/{self.stream_id}/whep"
            async with self._http.post(
                url, data=offer, headers={"Content-Type": "application/sdp"}
            ) as resp:
                body = await resp.text()
                assert resp.status == 201, f"WHEP answered {resp.status}: {body}"
                assert resp.content_type == "application/sdp"
                self.whep_location = resp.headers["Location"]
                self.media_transport = resp.headers.get("X-Media-Transport")
                self.answer_sdp = body
        else:
            self._ws = await self._http.ws_connect(f"{self.base_url}/ws/{self.stream_id}")
            await self._ws.send_json({"type": "offer", "sdp": offer})
            msg = await self._ws.receive_json(timeout=15)
            assert msg.get("type") == "answer", f"gateway answered {msg}"
            self.answer_sdp = msg["sdp"]
            self.media_transport = msg.get("media_transport")
            # Keep reading, as a browser does: that answers the gateway's heartbeat pings.
            self._tasks.append(asyncio.ensure_future(self._read_socket(self._ws)))
        answer = self.answer_sdp
        if self.rewrite_answer is not None:
            answer = self.rewrite_answer(answer)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    def record_rtp(self) -> list[tuple[float, int, int, bytes]]:
        """From now on, note (arrival, sequence number, timestamp, first payload bytes) of
        every video RTP packet as aiortc decrypted it."""
        seen: list[tuple[float, int, int, bytes]] = []
        receiver = self.pc.getReceivers()[0]
        handle = receiver._handle_rtp_packet

        async def record(packet: Any, arrival_time_ms: int) -> None:
            seen.append(
                (time.monotonic(), packet.sequence_number, packet.timestamp, packet.payload[:2])
            )
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = record  # type: ignore[method-assign]
        return seen

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(msg.json())

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self._listen(track)))
            return

        async def consume() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    if self.first_frame_at is None:
                        self.first_frame_at = time.monotonic() - self.started
                    self.frames += 1
                    self.sizes.add((frame.width, frame.height))
                    self.timeline.append((time.monotonic(), frame.pts))
                    if self.sync is not None:
                        self.sync.video(frame)
                    if frame.width >= stamp.WIDTH:
                        self.stamps.append(stamp.read_picture(frame.to_ndarray(format="gray")))

        self._tasks.append(asyncio.ensure_future(consume()))

    async def _listen(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float32) / 32768.0
                channels = len(frame.layout.channels)
                # Packed s16: one row, channels interleaved; keep the first channel.
                mono = samples.reshape(-1, channels)[:, 0]
                self.audio_samples.append(mono)
                if self.sync is not None:
                    self.sync.audio(frame, mono)
                self.audio_rate = frame.sample_rate
                self.audio_frames += 1

    def audio_seconds(self) -> float:
        return sum(len(s) for s in self.audio_samples) / self.audio_rate if self.audio_rate else 0

    def tone(self, last_seconds: float = 1.0) -> tuple[float, float]:
        """(dominant frequency in Hz, RMS level) of the last audio received."""
        samples = np.concatenate(self.audio_samples)[-int(last_seconds * self.audio_rate) :]
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        peak = float(np.fft.rfftfreq(len(samples), 1 / self.audio_rate)[int(spectrum.argmax())])
        return peak, float(np.sqrt(np.mean(samples**2)))

    async def wait_audio(self, seconds: float, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.audio_seconds() < seconds:
            assert time.monotonic() < deadline, (
                f"only {self.audio_seconds():.2f} s of audio from {self.stream_id} in {timeout} s"
            )
            await asyncio.sleep(0.05)

    async def wait_frames(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.frames < count:
            ended = [repr(t.exception()) for t in self._tasks if t.done() and t.exception()]
            assert time.monotonic() < deadline, (
                f"only {self.frames} of {count} frames from {self.stream_id} via {self.via} "
                f"in {timeout} s (pc {self.pc.connectionState}, receiver errors {ended})"
            )
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        if self._http is not None:
            if self.whep_location:
                with contextlib.suppress(aiohttp.ClientConnectionError):  # gateway gone
                    async with self._http.delete(self.base_url + self.whep_location) as resp:
                        assert resp.status in (200, 404)
            if self._ws is not None:
                await self._ws.close()
            await self._http.close()


async def watch(
    base_url: str,
    stream_id: str,
    via: str = "ws",
    frames: int = 60,
    timeout: float = 20.0,
    video_codecs: tuple[str, ...] | None = None,
) -> Viewer:
    """Connect, decode `frames` frames, close; the closed viewer keeps its figures."""
    viewer = Viewer(base_url, stream_id, via, video_codecs=video_codecs)
    try:
        await viewer.connect()
        await viewer.wait_frames(frames, timeout)
    finally:
        await viewer.close()
    return viewer


def unwrap(timestamps: list[int]) -> list[int]:
    """RTP timestamps are 32-bit and start anywhere: unwrap them into a growing line."""
    out = [timestamps[0]]
    for ts in timestamps[1:]:
        step = (ts - out[-1]) % 2**32
        out.append(out[-1] + (step - 2**32 if step >= 2**31 else step))
    return out


def frames_between(viewer: Viewer, start: float, end: float) -> int:
    return sum(1 for at, _ in viewer.timeline if start <= at < end)


async def _main(base_url: str, stream_id: str, via: str) -> None:
    """Watch until killed (tests stop this process to play a frozen viewer)."""
    viewer = Viewer(base_url, stream_id, via)
    await viewer.connect()
    await viewer.wait_frames(1)
    print("PLAYING", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(_main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "ws"))

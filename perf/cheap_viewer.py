"""Cheap WebRTC viewers for the harness: full ICE, DTLS and SRTP, but no decoding.

aiortc's receiver queues each complete frame for a decoder thread; here that thread only
counts the frames, so a viewer costs little CPU and the gateway, not the client, is what
the harness measures. One process runs several viewers and prints one JSON line each.

`--mode counter` is cheaper still, for hundreds of viewers on the gateway's own machine:
ICE and DTLS as before, but RTP packets are counted as they arrive (sequence numbers and
marker bits are in the clear) and never decrypted, reassembled or answered with RTCP.

    python -m perf.cheap_viewer BASE_URL STREAM[,STREAM...] --count K --offset I \\
        --warmup W --window T [--mode receiver|counter] [--offer H265|H264]

`--offer` limits the video codecs offered to one (H265: an H.265 stream's passthrough;
H264: its shared transcode); without it, aiortc's own (VP8 and H.264).

A STREAM that is a URL is taken as a WHEP endpoint of any gateway (BASE_URL unused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import time
from typing import Any

import aiohttp
import aiortc.rtcrtpreceiver
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from media_server.aiortc_internals import teach_h265

#: Frames per receiver, keyed by the id of the receiver's decoder queue.
FRAMES: dict[int, int] = {}
PAYLOAD_BYTES: dict[int, int] = {}
FIRST_FRAME: dict[int, float] = {}


def counting_worker(
    loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any], output_q: Any, *_: Any
) -> None:
    """Takes the place of aiortc's decoder_worker: count whole frames, decode nothing."""
    key = id(input_q)
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            return
        FRAMES[key] = FRAMES.get(key, 0) + 1
        PAYLOAD_BYTES[key] = PAYLOAD_BYTES.get(key, 0) + len(task[1].data)
        FIRST_FRAME.setdefault(key, time.monotonic())


aiortc.rtcrtpreceiver.decoder_worker = counting_worker  # type: ignore[assignment]
#: The receiver's (name-mangled) queue of frames for its decoder thread.
DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"


class Tally:
    """RTP packets counted from their clear headers: no decryption, no jitter buffer."""

    def __init__(self) -> None:
        self.packets = 0
        self.payload_bytes = 0
        self.frames = 0
        self.first_frame: float | None = None
        self._first_seq: int | None = None
        self._highest = 0  # extended sequence number

    def add(self, data: bytes) -> None:
        seq = int.from_bytes(data[2:4], "big")
        if self._first_seq is None:
            self._first_seq = self._highest = seq
        else:
            delta = (seq - self._highest) & 0xFFFF
            if delta < 0x8000:
                self._highest += delta
        self.packets += 1
        self.payload_bytes += len(data) - 12 - 10  # header and SRTP tag; extensions included
        if data[1] & 0x80:  # the marker bit ends a frame
            self.frames += 1
            if self.first_frame is None:
                self.first_frame = time.monotonic()

    @property
    def lost(self) -> int:
        if self._first_seq is None:
            return 0
        return max(0, self._highest - self._first_seq + 1 - self.packets)


def count_rtp(ice_transport: Any, tally: Tally) -> None:
    """Take RTP out of what the ICE transport hands DTLS, counting it; the rest goes on."""
    recv = ice_transport._recv

    async def without_rtp() -> bytes:
        while True:
            data: bytes = await recv()
            if 127 < data[0] < 192 and not 192 <= data[1] <= 223:  # RTP, not RTCP
                tally.add(data)
                continue
            return data

    ice_transport._recv = without_rtp


def whep_url(base_url: str, stream: str) -> str:
    """Where to offer: our gateway's WHEP endpoint for a stream id, or, given a URL in
    place of a stream id, that endpoint as it is (another gateway's, say)."""
    if stream.startswith(("http://", "https://")):
        return stream
    return f"{base_url}/api/v1/streams/{stream}/whep"


class CheapViewer:
    def __init__(
        self, base_url: str, stream_id: str, mode: str = "receiver", offer: str | None = None
    ) -> None:
        self.base_url = base_url
        self.stream_id = stream_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        if offer is not None:
            capabilities = RTCRtpReceiver.getCapabilities("video")
            names = (f"video/{offer}".lower(), "video/rtx")
            codecs = capabilities.codecs if capabilities else []
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in names])
        self.key = id(getattr(transceiver.receiver, DECODER_QUEUE))
        self.tally: Tally | None = None
        if mode == "counter":
            self.tally = Tally()
            count_rtp(transceiver.receiver.transport.transport, self.tally)
        self.started = 0.0
        self.signaling_s: float | None = None
        self.error: str | None = None

    async def connect(self, http: aiohttp.ClientSession) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.started = time.monotonic()
        async with http.post(
            whep_url(self.base_url, self.stream_id),
            data=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            answer = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHEP {resp.status}: {answer[:200]}")
        self.signaling_s = time.monotonic() - self.started
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def counters(self) -> dict[str, int]:
        if self.tally is not None:
            t = self.tally
            return {
                "packets": t.packets,
                "lost": t.lost,
                "frames": t.frames,
                "payload_bytes": t.payload_bytes,
            }
        stats = {"packets": 0, "lost": 0}
        for item in (await self.pc.getStats()).values():
            if getattr(item, "type", "") == "inbound-rtp":
                stats = {"packets": item.packetsReceived, "lost": max(0, item.packetsLost)}
        stats["frames"] = FRAMES.get(self.key, 0)
        stats["payload_bytes"] = PAYLOAD_BYTES.get(self.key, 0)
        return stats

    def first_frame_s(self) -> float | None:
        first = self.tally.first_frame if self.tally is not None else FIRST_FRAME.get(self.key)
        return None if first is None else first - self.started


async def run(
    base_url: str,
    streams: list[str],
    count: int,
    offset: int,
    warmup: float,
    window: float,
    mode: str = "receiver",
    offer: str | None = None,
) -> None:
    viewers = [
        CheapViewer(base_url, streams[(offset + i) % len(streams)], mode, offer)
        for i in range(count)
    ]
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(v.connect(http) for v in viewers), return_exceptions=True)
        for viewer, result in zip(viewers, results, strict=True):
            if isinstance(result, BaseException):
                viewer.error = str(result)
        await asyncio.sleep(warmup)
        before = [await v.counters() for v in viewers]
        began = time.monotonic()
        await asyncio.sleep(window)
        after = [await v.counters() for v in viewers]
        elapsed = time.monotonic() - began
        for viewer, b, a in zip(viewers, before, after, strict=True):
            line = {
                "stream": viewer.stream_id,
                "error": viewer.error,
                "signaling_s": viewer.signaling_s,
                "first_frame_s": viewer.first_frame_s(),
                "window_s": elapsed,
                **{key: a[key] - b[key] for key in a},
            }
            print(json.dumps(line), flush=True)
        await asyncio.gather(*(v.pc.close() for v in viewers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("base_url")
    parser.add_argument("streams", help="comma-separated stream ids, used round robin")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--offset", type=int, default=0, help="first stream index, round robin")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--mode", choices=["receiver", "counter"], default="receiver")
    parser.add_argument("--offer", choices=["H265", "H264"], help="the one video codec offered")
    args = parser.parse_args()
    if args.offer == "H265":
        teach_h265()
    streams = args.streams.split(",")
    asyncio.run(
        run(
            args.base_url,
            streams,
            args.count,
            args.offset,
            args.warmup,
            args.window,
            args.mode,
            args.offer,
        )
    )


if __name__ == "__main__":
    main()

"""The harness's decoding probe: capture-to-arrival latency of stamped frames.

The ``/clock`` mount of the RTSP test server draws each frame's capture time into the
frame (``tests/support/stamp.py``). This viewer connects like any other, but sees every
RTP packet as aiortc hands it over (decrypted and depayloaded), completes a frame on the
RTP marker bit, decodes it and reads the stamp. The arrival time is the marker packet's:
aiortc's own jitter buffer only releases a frame when the next one begins, which would
add a frame interval that no browser adds.

It signals over the WebSocket, as the browser page does; given a WHEP URL in place of a
stream id, over WHEP (another gateway, for the harness's external profiles).

    python -m perf.latency_probe BASE_URL STREAM --warmup W --window T

Prints one JSON line: latency samples in milliseconds, and counts of frames that were
incomplete, undecodable or carried no readable stamp.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from typing import Any, cast

import aiohttp
import av
from aiortc import RTCSessionDescription
from aiortc.rtp import RtpPacket
from av.video.codeccontext import VideoCodecContext

from perf.cheap_viewer import CheapViewer
from perf.probe_cli import probe_main
from tests.support import stamp

DECODERS = {"H264": "h264", "VP8": "vp8"}
#: The receiver's (name-mangled) map of payload type to codec.
CODECS = "_RTCRtpReceiver__codecs"


class FrameClock:
    """Assembles frames from depayloaded packets; a thread decodes them and reads stamps.

    Decoding happens off the event loop, so that a frame being decoded never delays the
    pong the probe is waiting for.
    """

    def __init__(self) -> None:
        self.decoders: dict[str, VideoCodecContext] = {}
        self.parts: dict[int, bytes] = {}  # sequence number -> depayloaded data
        self.timestamp: int | None = None
        self.recording = False
        self.latencies_ms: list[float] = []
        #: (capture stamp, arrival) of each stamped frame, for pairing with another probe.
        self.arrivals_us: list[tuple[int, int]] = []
        self.counts = {"frames": 0, "incomplete": 0, "undecodable": 0, "unstamped": 0}
        self._frames: queue.Queue[tuple[str, bytes, bool, int, bool] | None] = queue.Queue(64)
        self._thread = threading.Thread(target=self._decode_all, name="probe-decoder", daemon=True)
        self._thread.start()

    def packet(self, codec: str, packet: RtpPacket, arrived_us: int) -> None:
        data: bytes | None = getattr(packet, "_data", None)
        if data is None or codec not in DECODERS:
            return  # RTX, or a payload aiortc could not parse
        if packet.timestamp != self.timestamp:
            self.parts.clear()
            self.timestamp = packet.timestamp
        self.parts[packet.sequence_number] = data
        if packet.marker:
            self._frame(codec, arrived_us)

    def unit(self, codec: str, data: bytes, arrived_us: int) -> None:
        """A whole frame (Annex-B), arrived at `arrived_us`: the camera probe's."""
        try:
            self._frames.put_nowait((codec, data, True, arrived_us, self.recording))
        except queue.Full:
            self.counts["undecodable"] += 1

    def _frame(self, codec: str, arrived_us: int) -> None:
        seqs = sorted(self.parts)
        # Contiguous modulo 2**16 (a wrap inside a frame sorts 65535 before 0).
        if max(seqs) - min(seqs) > 60000:
            seqs = [s for s in seqs if s > 32768] + [s for s in seqs if s <= 32768]
        complete = all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        data = b"".join(self.parts[s] for s in seqs)
        self.parts.clear()
        try:
            self._frames.put_nowait((codec, data, complete, arrived_us, self.recording))
        except queue.Full:
            self.counts["undecodable"] += 1  # the probe fell behind: say so, never block

    def close(self) -> None:
        self._frames.put(None)
        self._thread.join()

    def _decode_all(self) -> None:
        while (item := self._frames.get()) is not None:
            codec, data, complete, arrived_us, recording = item
            if not recording:
                self._decode(codec, data)  # keep the decoder's references, count nothing
                continue
            self.counts["frames"] += 1
            if not complete:
                self.counts["incomplete"] += 1
                continue
            frames = self._decode(codec, data)
            if frames is None:
                self.counts["undecodable"] += 1
                continue
            for frame in frames:
                value = stamp.read_picture(frame.to_ndarray(format="gray"))
                if value is None:
                    self.counts["unstamped"] += 1
                else:
                    self.latencies_ms.append(stamp.elapsed_us(value, arrived_us) / 1000)
                    self.arrivals_us.append((value, arrived_us))

    def _decode(self, codec: str, data: bytes) -> list[av.VideoFrame] | None:
        decoder = self.decoders.get(codec)
        if decoder is None:
            decoder = cast(VideoCodecContext, av.CodecContext.create(DECODERS[codec], "r"))
            decoder.thread_type = "SLICE"  # frame threads would hold frames back
            self.decoders[codec] = decoder
        try:
            return [f for f in decoder.decode(av.Packet(data)) if isinstance(f, av.VideoFrame)]
        except av.FFmpegError:
            return None


class LatencyProbe(CheapViewer):
    def __init__(self, base_url: str, stream_id: str) -> None:
        super().__init__(base_url, stream_id)
        self.clock = FrameClock()
        receiver = self.pc.getTransceivers()[0].receiver
        codecs: dict[int, Any] = getattr(receiver, CODECS)
        handle = receiver._handle_rtp_packet

        async def hooked(packet: RtpPacket, arrival_time_ms: int) -> None:
            arrived = stamp.now_us()
            await handle(packet, arrival_time_ms)
            codec = codecs.get(packet.payload_type)
            if codec is not None:
                self.clock.packet(codec.name, packet, arrived)

        receiver._handle_rtp_packet = hooked  # type: ignore[method-assign]
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, http: aiohttp.ClientSession) -> None:
        """Negotiate over the WebSocket, as the browser page does; over WHEP when given
        another gateway's endpoint."""
        if self.stream_id.startswith(("http://", "https://")):
            await super().connect(http)
            return
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.started = time.monotonic()
        self._ws = await http.ws_connect(f"{self.base_url}/ws/{self.stream_id}")
        await self._ws.send_json({"type": "offer", "sdp": self.pc.localDescription.sdp})
        answer = await self._ws.receive_json(timeout=30)
        if answer.get("type") != "answer":
            raise RuntimeError(f"gateway answered {answer}")
        self.signaling_s = time.monotonic() - self.started
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def close(self) -> None:
        await self.pc.close()
        if self._ws is not None:
            await self._ws.close()
        self.clock.close()


async def run(base_url: str, stream_id: str, warmup: float, window: float) -> dict[str, Any]:
    probe = LatencyProbe(base_url, stream_id)
    error = None
    async with aiohttp.ClientSession() as http:
        try:
            await probe.connect(http)
        except Exception as exc:  # reported in the JSON line, like the cheap viewers
            error = str(exc)
        await asyncio.sleep(warmup)
        probe.clock.recording = True
        began = time.monotonic()
        await asyncio.sleep(window)
        probe.clock.recording = False
        elapsed = time.monotonic() - began
        await probe.close()
    return {
        "stream": stream_id,
        "error": error,
        "window_s": elapsed,
        "signaling_s": probe.signaling_s,
        "latencies_ms": probe.clock.latencies_ms,
        "arrivals_us": probe.clock.arrivals_us,
        **probe.clock.counts,
    }


if __name__ == "__main__":
    probe_main(run, __doc__)

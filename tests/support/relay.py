"""A lossy UDP relay between a real viewer and the gateway: induced packet loss on loopback.

This machine's kernel has no netem, so loss is made here: both sides' candidates are
rewritten to point at the relay (the viewer's offer at its gateway-facing socket, the
gateway's answer at its viewer-facing one), so every packet of the session passes through
it, and it drops every `drop_every`-th RTP packet of one payload type from the gateway.
STUN, DTLS, RTCP and retransmissions (RTX has its own payload type) pass untouched.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.api import metric
from tests.support.viewer import Viewer, frames_between

CANDIDATE = re.compile(r"^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host.*$", re.MULTILINE)


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay, name: str) -> None:
        self._relay = relay
        self._name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._relay.received(self._name, data, addr)


def _same(side: _Side) -> _Side:
    return side


class LossyRelay:
    def __init__(self, drop_every: int) -> None:
        self.drop_every = drop_every
        self.payload_type: int | None = None  # set from the answer: the video codec's
        self.dropped = 0
        self.forwarded = 0
        self._seen = 0
        self._viewer_addr: tuple[str, int] | None = None
        self._gateway_addr: tuple[str, int] | None = None
        self._to_viewer = _Side(self, "viewer")  # faces the viewer
        self._to_gateway = _Side(self, "gateway")  # faces the gateway

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for side in (self._to_viewer, self._to_gateway):
            await loop.create_datagram_endpoint(functools.partial(_same, side), ("127.0.0.1", 0))

    def close(self) -> None:
        for side in (self._to_viewer, self._to_gateway):
            if side.transport is not None:
                side.transport.close()

    @staticmethod
    def _port(side: _Side) -> int:
        assert side.transport is not None
        return int(side.transport.get_extra_info("sockname")[1])

    def rewrite_offer(self, sdp: str) -> str:
        """The viewer's offer, reachable only through the relay."""
        return self._only_candidate(sdp, self._port(self._to_gateway))

    def rewrite_answer(self, sdp: str) -> str:
        """The gateway's answer, reachable only through the relay; notes where it listens
        and its video payload type."""
        found = [(h, int(p)) for h, p in CANDIDATE.findall(sdp)]
        self._gateway_addr = next((c for c in found if c[0] == "127.0.0.1"), found[0])
        video = re.search(r"^m=video \d+ \S+ (\d+)", sdp, re.MULTILINE)
        assert video is not None, sdp
        self.payload_type = int(video.group(1))
        return self._only_candidate(sdp, self._port(self._to_viewer))

    @staticmethod
    def _only_candidate(sdp: str, port: int) -> str:
        lines = [line for line in sdp.splitlines() if not line.startswith("a=candidate:")]
        out: list[str] = []
        for line in lines:
            out.append(line)
            if line.startswith("m="):
                out.append(f"a=candidate:relay 1 udp 2130706431 127.0.0.1 {port} typ host")
        return "\r\n".join(out) + "\r\n"

    def received(self, side: str, data: bytes, addr: tuple[str, int]) -> None:
        if side == "viewer":
            self._viewer_addr = addr
            if self._gateway_addr is not None and self._to_gateway.transport is not None:
                self._to_gateway.transport.sendto(data, self._gateway_addr)
            return
        if self._viewer_addr is None or self._to_viewer.transport is None:
            return
        if self._is_media(data):
            self._seen += 1
            if self._seen % self.drop_every == 0:
                self.dropped += 1
                return
        self.forwarded += 1
        self._to_viewer.transport.sendto(data, self._viewer_addr)

    def _is_media(self, data: bytes) -> bool:
        """An RTP packet of the video payload type (RTCP types are 192-223, RFC 5761)."""
        return (
            len(data) >= 12
            and 128 <= data[0] < 192
            and not 192 <= data[1] <= 223
            and data[1] & 0x7F == self.payload_type
        )


async def repaired(
    http: aiohttp.ClientSession, base_url: str, viewer: Viewer, seconds: float
) -> tuple[int, float]:
    """Connect `viewer` (its offer and answer rewritten through a relay), let it watch for
    `seconds` from its first frame: (frames it decoded in that time, packets the engine
    sent again meanwhile)."""
    metric_name = "media_server_engine_retransmits_total"
    before = await metric(http, base_url, metric_name)
    await viewer.connect()
    await viewer.wait_frames(1)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    decoded = frames_between(viewer, start, start + seconds)
    return decoded, await metric(http, base_url, metric_name) - before


async def picture_loss(
    http: aiohttp.ClientSession,
    base_url: str,
    viewer: Viewer,
    seen: list[tuple[float, int, int, bytes]],
    keyframe_start: Callable[[bytes], bool],
    after_keyframe: float,
) -> tuple[float, int, float]:
    """Send a PLI as a decoder that lost its picture would, `after_keyframe` s after the
    first packet of a keyframe in `seen` (`Viewer.record_rtp`), so the camera's next is
    far: (when it went, how many packets had been seen by then, the engine's PLI count
    just before it)."""
    count = len(seen)
    while not any(keyframe_start(p) for *_, p in seen[count:]):
        await asyncio.sleep(0.01)
    await asyncio.sleep(after_keyframe)
    ssrc = next(
        int(line.split()[0].split(":")[1])
        for line in viewer.answer_sdp.splitlines()
        if line.startswith("a=ssrc:")
    )
    plis = await metric(http, base_url, "media_server_engine_plis_total")
    count, asked = len(seen), time.monotonic()
    await viewer.pc.getReceivers()[0]._send_rtcp_pli(ssrc)
    return asked, count, plis

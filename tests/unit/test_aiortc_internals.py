"""Each private of aiortc and aioice the gateway uses (media_server/aiortc_internals.py),
exercised on two real aiortc peers connected in process over loopback: an aiortc upgrade
that moves one fails here, by name, before any viewer does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aioice.ice
import av
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtcpParameters, RTCRtpSendParameters

from media_server import aiortc_internals as internals
from media_server.config import WebRTCSettings
from media_server.model.media import Packet
from media_server.webrtc.ice import rtc_configuration
from tests.unit.test_h265_packetizer import encode

SPS_PPS_IDR = (
    b"\x00\x00\x00\x01\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\x84"
    b"\x00\x00\x00\x01\x68\xce\x3c\x80"
    b"\x00\x00\x00\x01\x65" + bytes(3000)
)


@dataclass
class Peers:
    gateway: RTCPeerConnection
    viewer: RTCPeerConnection

    @property
    def sender(self) -> RTCRtpSender:
        sender: RTCRtpSender = self.gateway.getSenders()[0]
        return sender


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    internals.gather_loopback()
    config = rtc_configuration(WebRTCSettings())
    gateway, viewer = RTCPeerConnection(config), RTCPeerConnection(config)
    viewer.addTransceiver("video", direction="recvonly")
    await viewer.setLocalDescription(await viewer.createOffer())
    gateway.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await gateway.setRemoteDescription(viewer.localDescription)
    await gateway.setLocalDescription(await gateway.createAnswer())
    answer = gateway.localDescription
    await viewer.setRemoteDescription(RTCSessionDescription(answer.sdp, answer.type))
    for _ in range(200):
        if gateway.connectionState == "connected" and viewer.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    assert gateway.connectionState == "connected"
    yield Peers(gateway, viewer)
    await viewer.close()
    await gateway.close()


async def test_srtp_keys_from_dtls(peers: Peers) -> None:
    profile, key = internals.srtp_keys(peers.sender.transport)
    assert profile in (1, 2, 7, 8)  # libsrtp's AES-CM and AES-GCM profiles
    assert len(key) in (30, 28, 44)


async def test_ice_pair_and_route(peers: Peers) -> None:
    connection = internals.ice_connection(peers.sender.transport)
    pair = internals.nominated_pair(connection)
    assert pair is not None
    route = internals.pair_route(pair)
    assert route is not None
    fd, host, port = route
    assert fd > 0 and isinstance(host, str) and 0 < port < 65536


async def test_sender_identity_and_counts(peers: Peers) -> None:
    sender = peers.sender
    ssrc, rtx_ssrc = internals.sender_ssrcs(sender)
    assert ssrc > 0 and rtx_ssrc > 0 and ssrc != rtx_ssrc
    assert internals.sender_track_id(sender)
    assert internals.transport_stats_id(sender.transport)
    for _ in range(100):
        if internals.sent_counts(sender)[0]:
            break
        await asyncio.sleep(0.05)
    packets, octets = internals.sent_counts(sender)
    assert packets > 0 and octets > 0


async def test_rtcp_routing_of_a_sender(peers: Peers) -> None:
    sender = peers.sender
    ssrc, _ = internals.sender_ssrcs(sender)
    params = RTCRtpSendParameters(muxId="0", rtcp=RTCRtcpParameters(cname="gw", ssrc=ssrc))
    internals.route_rtcp(sender.transport, sender, params)
    internals.unroute_rtcp(sender.transport, sender)


async def test_taking_over_a_sender() -> None:
    pc = RTCPeerConnection(rtc_configuration(WebRTCSettings()))
    sender = pc.addTransceiver("video", direction="sendonly").sender

    async def send(parameters: RTCRtpSendParameters) -> None: ...
    async def stop() -> None: ...
    async def handle(packet: Any) -> None: ...
    async def stats() -> Any: ...

    internals.take_over_sender(sender, send, stop, handle, stats)
    assert sender.send is send and sender.stop is stop and sender.getStats is stats
    assert sender._handle_rtcp_packet is handle
    await pc.close()


def test_packetizing_as_aiortc() -> None:
    payloads = internals.packetize_h264(SPS_PPS_IDR)
    assert len(payloads) > 2 and all(len(p) <= 1300 for p in payloads)


def test_loopback_candidates() -> None:
    internals.gather_loopback()
    assert "127.0.0.1" in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


def test_a_moved_internal_fails_loudly_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(H264Encoder, "_packetize")
    with pytest.raises(internals.AiortcChanged, match=r"H264Encoder\._packetize"):
        internals.packetize_h264(SPS_PPS_IDR)


async def test_answering_lightly_shares_one_certificate_and_defers_the_estimator() -> None:
    """Every peer connection answers with the same DTLS certificate (one fingerprint),
    and a video receiver has made no bandwidth estimator before media comes."""
    internals.answer_lightly()
    config = rtc_configuration(WebRTCSettings())
    first, second = RTCPeerConnection(config), RTCPeerConnection(config)
    fingerprints = []
    for pc in (first, second):
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        fingerprints.append([line for line in sdp.splitlines() if "fingerprint:sha-256" in line])
        receiver: Any = pc.getReceivers()[0]
        estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator
        assert getattr(estimator, "_made", "no lazy estimator") is None
    assert fingerprints[0] and fingerprints[0] == fingerprints[1]
    await first.close()
    await second.close()


class _Units(MediaStreamTrack):
    """A track of encoded H.265 access units (what the gateway's hub track gives aiortc)."""

    kind = "video"

    def __init__(self, units: list[bytes]) -> None:
        super().__init__()
        self._units = iter(units)
        self._pts = 0

    async def recv(self) -> Packet:
        await asyncio.sleep(1 / 30)
        packet = av.Packet(next(self._units))
        packet.pts, packet.time_base = self._pts, Fraction(1, 90_000)
        self._pts += 3000
        return packet


async def test_h265_is_negotiated_packed_and_decoded_once_taught() -> None:
    """After `teach_h265`, an aiortc viewer offers H.265; the answer settled on it states
    the stream's own `fmtp`; aiortc's sender packs the units (RFC 7798) and the viewer's
    receiver decodes them to pictures (FFmpeg, through PyAV)."""
    internals.gather_loopback()
    internals.teach_h265()
    internals.teach_h265()  # idempotent: one registration
    video = RTCRtpSender.getCapabilities("video").codecs
    assert [c.mimeType for c in video].count(internals.H265_MIME) == 1
    units = encode(320, 240, 60)
    config = rtc_configuration(WebRTCSettings())
    gateway, viewer = RTCPeerConnection(config), RTCPeerConnection(config)
    received = viewer.addTransceiver("video", direction="recvonly")
    received.setCodecPreferences([c for c in video if c.mimeType == internals.H265_MIME])
    await viewer.setLocalDescription(await viewer.createOffer())
    assert "H265/90000" in viewer.localDescription.sdp
    sending = gateway.addTransceiver(_Units(units), direction="sendonly")
    await gateway.setRemoteDescription(viewer.localDescription)
    offered = next(
        int(line.split()[0].split(":")[1])
        for line in viewer.localDescription.sdp.splitlines()
        if "H265/90000" in line
    )
    stream_fmtp = {"level-id": "60", "profile-id": "1", "tier-flag": "0", "tx-mode": "SRST"}
    internals.settle_codec(sending, offered, stream_fmtp)
    with pytest.raises(LookupError):
        internals.settle_codec(sending, 13, stream_fmtp)
    await gateway.setLocalDescription(await gateway.createAnswer())
    answer = gateway.localDescription.sdp
    assert f"a=fmtp:{offered} level-id=60;profile-id=1;tier-flag=0;tx-mode=SRST" in answer
    assert "H264" not in answer and "VP8" not in answer
    await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    try:
        track = received.receiver.track
        sizes = set()
        for _ in range(20):
            frame = await asyncio.wait_for(track.recv(), 10)
            assert isinstance(frame, av.VideoFrame)
            sizes.add((frame.width, frame.height))
        assert sizes == {(320, 240)}
    finally:
        await viewer.close()
        await gateway.close()

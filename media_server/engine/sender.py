"""Plugs one viewer into the engine in place of aiortc's RTP and RTCP tasks for its video.

aiortc calls `sender.send(parameters)` once DTLS is connected; here that call derives the
viewer's SRTP keys from the same DTLS session, finds the socket and address ICE
selected, and hands the viewer to the engine instead of starting aiortc's own send loop.
RTCP for our SSRC keeps arriving through aiortc's router. Every use of aiortc's
internals goes through `media_server.aiortc_internals`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpSender, clock
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RtcpByePacket
from aiortc.stats import (
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCStatsReport,
)

from media_server import aiortc_internals as internals
from media_server.engine.sendpath import TxViewer
from media_server.engine.viewer import EngineViewer

if TYPE_CHECKING:
    from media_server.engine.engine import Engine

log = logging.getLogger(__name__)

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


class EngineError(Exception):
    """The viewer cannot be served by the engine (no keys, no route, not H.264 or H.265)."""


def selected_route(dtls: Any) -> tuple[Any, Any, int, str, int]:
    """(ICE connection, selected pair, socket descriptor, remote host, remote port)."""
    connection = internals.ice_connection(dtls)
    pair = internals.nominated_pair(connection)
    route = internals.pair_route(pair) if pair is not None else None
    if route is None:
        raise EngineError("ICE has no selected pair")
    return (connection, pair, *route)


class EngineSender:
    """Takes the place of an `RTCRtpSender`'s send, stop, RTCP handling and stats."""

    def __init__(
        self,
        engine: Engine,
        sender: RTCRtpSender,
        stream_id: str,
        on_first: Callable[[], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._engine = engine
        self._sender = sender
        self._stream_id = stream_id
        self._on_first = on_first
        self._on_lost = on_lost
        self.viewer: EngineViewer | None = None
        self._tx: TxViewer | None = None  # kept after stop: its counts stay readable
        self._registered = False
        internals.take_over_sender(sender, self.send, self.stop, self.handle_rtcp, self.get_stats)

    def sent(self) -> tuple[int, int]:
        if self._tx is None:
            return 0, 0
        packets, octets, *_ = self._tx.sender_info()
        return packets, octets

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        if self.viewer is not None:
            return
        try:
            self.viewer = self._attach(parameters)
            self._tx = self.viewer.tx
        except EngineError as exc:
            log.warning("engine cannot serve a viewer of %s: %s", self._stream_id, exc)
            self._on_lost(str(exc))
            return
        self._engine.add(self._stream_id, self.viewer)

    def _attach(self, parameters: RTCRtpSendParameters) -> EngineViewer:
        codec = parameters.codecs[0]
        if codec.mimeType.lower() not in ("video/h264", "video/h265"):
            # The session chose the codec to match the stream's (an H.265 stream's H.264
            # viewers take the transcode, through aiortc's sender).
            raise EngineError(f"the viewer takes {codec.mimeType}, the engine sends H.264 or H.265")
        rtx = next(
            (
                c.payloadType
                for c in parameters.codecs
                if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
            ),
            -1,
        )
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        dtls = self._sender.transport
        try:
            profile, key = internals.srtp_keys(dtls)
        except LookupError as exc:
            raise EngineError(str(exc)) from None
        ssrc, rtx_ssrc = internals.sender_ssrcs(self._sender)
        try:
            seq, ts_offset = self._engine.start(self._stream_id)
        except LookupError:
            raise EngineError("the stream was removed") from None
        connection, pair, fd, host, port = selected_route(dtls)
        tx = self._engine.path.viewer(
            fd=fd,
            host=host,
            port=port,
            profile=profile,
            key=key,
            ssrc=ssrc,
            payload_type=codec.payloadType,
            seq=seq,
            ts_offset=ts_offset,
            mid_id=ids.get(MID_URI, 0),
            mid=(parameters.muxId or "").encode(),
            abs_send_time_id=ids.get(ABS_SEND_TIME_URI, 0),
            rtx_ssrc=rtx_ssrc,
            rtx_payload_type=rtx,
            rtx_seq=random.getrandbits(16),
            gso=self._engine.gso,
        )
        internals.route_rtcp(dtls, self._sender, parameters)
        self._registered = True
        return EngineViewer(
            tx=tx,
            lane=self._engine.lanes.assign(),
            ssrc=ssrc,
            cname=parameters.rtcp.cname,
            pair=pair,
            connection=connection,
            ts_offset=ts_offset,
            on_first=self._on_first,
            on_lost=self._on_lost,
        )

    async def stop(self) -> None:
        viewer, self.viewer = self.viewer, None
        if viewer is not None:
            self._engine.remove(viewer)
            viewer.tx.send_rtcp(bytes(RtcpByePacket(sources=[viewer.ssrc])))
            viewer.tx.close()
        if self._registered:
            self._registered = False
            internals.unroute_rtcp(self._sender.transport, self._sender)

    async def handle_rtcp(self, packet: Any) -> None:
        if self.viewer is not None:
            self._engine.rtcp(self.viewer, packet)

    async def get_stats(self) -> RTCStatsReport:
        report = RTCStatsReport()
        packets, octets = self.sent()
        report.add(
            RTCOutboundRtpStreamStats(
                timestamp=clock.current_datetime(),
                type="outbound-rtp",
                id=f"outbound-rtp_{id(self)}",
                ssrc=internals.sender_ssrcs(self._sender)[0],
                kind="video",
                transportId=internals.transport_stats_id(self._sender.transport),
                packetsSent=packets,
                bytesSent=octets,
                trackId=internals.sender_track_id(self._sender),
            )
        )
        viewer = self.viewer
        if viewer is not None:  # what the viewer's receiver reports said
            report.add(
                RTCRemoteInboundRtpStreamStats(
                    timestamp=clock.current_datetime(),
                    type="remote-inbound-rtp",
                    id=f"remote-inbound-rtp_{id(self)}",
                    ssrc=viewer.ssrc,
                    kind="video",
                    transportId=internals.transport_stats_id(self._sender.transport),
                    packetsReceived=max(0, packets - viewer.packets_lost),
                    packetsLost=viewer.packets_lost,
                    jitter=viewer.jitter,
                    roundTripTime=viewer.rtt or 0.0,
                    fractionLost=viewer.fraction_lost,
                )
            )
        return report

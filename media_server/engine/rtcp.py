"""RTCP for engine viewers: sender reports out; NACK, PLI/FIR and receiver reports in.

The engine sends all RTCP for the video SSRC itself (one SRTCP index per SSRC in the
viewer's SRTP session: aiortc must not send for it too). Incoming RTCP still arrives through
aiortc's RTP router, which hands packets for our SSRC to `handle`.
"""

from __future__ import annotations

import logging
import struct
import time

from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
)

from media_server.engine.feed import Feed
from media_server.engine.viewer import EngineViewer
from media_server.model.clock import CaptureClock, ticks_now
from media_server.model.media import CLOCK_RATE, TIME_BASE

log = logging.getLogger(__name__)

#: Distinct packets one NACK message may ask for: a 1.4 KB NACK can name about 5,900.
NACK_MOST = 64
#: A packet asked for again this soon after its retransmission is not sent again.
NACK_REPEAT = 0.05


def sender_report(viewer: EngineViewer, capture: CaptureClock) -> bytes:
    """SR (+ SDES CNAME) for the RTP timestamp that stands for now on the media clock
    (model/clock.py), not for when the last packet left, in NTP time on the camera's
    clock where it told it (`capture`): audio, sent by aiortc after holds of its own,
    maps the same way, so the two sync exactly."""
    packets, octets, *_ = viewer.tx.sender_info()
    ticks = ticks_now(CLOCK_RATE)
    now = capture.ntp(ticks, TIME_BASE)
    rtp_now = (viewer.ts_offset + ticks) & 0xFFFFFFFF
    # Packed by hand: aiortc's packet classes cost more than the rest of the tick.
    data = SR.pack(
        0x80, 200, 6, viewer.ssrc, now, rtp_now, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF
    )
    if viewer.cname:
        data += _sdes(viewer.ssrc, viewer.cname.encode()[:255])
    lsr = (now >> 16) & 0xFFFFFFFF
    viewer.last_sr[lsr] = time.monotonic()
    while len(viewer.last_sr) > 8:
        del viewer.last_sr[next(iter(viewer.last_sr))]
    return data


SR = struct.Struct("!BBHIQIII")  # header, SSRC, NTP, RTP, packets, octets (RFC 3550 6.4.1)


def _sdes(ssrc: int, cname: bytes) -> bytes:
    """SDES with one chunk: our SSRC's CNAME, null-terminated and padded to 32 bits."""
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname
    chunk += b"\0" * (4 - len(chunk) % 4)
    return struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


def handle(viewer: EngineViewer, feed: Feed, packet: object) -> bool:
    """Act on one RTCP packet from the viewer; True when it carried a receiver report."""
    reported = False
    if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
        for report in packet.reports:
            if report.ssrc == viewer.ssrc:
                reported = True
                _receiver_report(
                    viewer,
                    report.fraction_lost,
                    report.packets_lost,
                    report.jitter,
                    report.lsr,
                    report.dlsr,
                )
    elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
        viewer.nacks += 1
        asked = list(dict.fromkeys(packet.lost))[:NACK_MOST]  # each once, in order
        viewer.nacked_packets += len(asked)
        now = time.monotonic()
        for seq in asked:
            if now - viewer.retransmitted.get(seq, -NACK_REPEAT) < NACK_REPEAT:
                continue  # just sent again: the viewer's NACK crossed it
            if viewer.rtx_budget.take():
                viewer.nacks_refused += 1
                break  # past this viewer's budget: its decoder asks for a keyframe
            if _retransmit(viewer, feed, seq):
                viewer.remember_retransmission(seq, now)
    elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        viewer.plis += 1
        viewer.replays += feed.replay(viewer)
    return reported


def _receiver_report(
    viewer: EngineViewer, fraction: int, lost: int, jitter: int, lsr: int, dlsr: int
) -> None:
    viewer.fraction_lost = fraction
    viewer.packets_lost = lost
    viewer.jitter = jitter
    sent_at = viewer.last_sr.get(lsr)
    if sent_at is not None and lsr:
        rtt = time.monotonic() - sent_at - dlsr / 65536
        if rtt >= 0:
            viewer.rtt = rtt if viewer.rtt is None else 0.85 * viewer.rtt + 0.15 * rtt


def _retransmit(viewer: EngineViewer, feed: Feed, seq: int) -> bool:
    sent = viewer.tx.lookup(seq)
    found = feed.history.find(sent[0]) if sent is not None else None
    if sent is None or found is None:
        return False  # too old: the viewer's decoder will ask for a keyframe
    unit, position = found
    marker = position == len(unit.payloads) - 1
    return bool(viewer.tx.retransmit(seq, unit.payloads[position], sent[1], marker))

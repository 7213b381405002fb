"""RTCP with a camera: its sender reports in, our receiver reports out (RFC 3550 6.4).

Parsing and packing are aiortc's (the same classes the viewer side uses); what is ours is
what a receiver keeps per source to fill a report block: packets expected and received,
interarrival jitter, and when the last SR came (RFC 3550 A.3, A.8).
"""

from __future__ import annotations

import time

from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket, RtcpSrPacket

from media_server.rtp.clock import SenderReport
from media_server.rtp.packet import RtpPacket, seq_distance


def sender_reports(data: bytes) -> list[SenderReport]:
    """The SRs in one (compound) RTCP packet; nothing for bytes that are not RTCP."""
    try:
        packets = RtcpPacket.parse(data)
    except ValueError:
        return []
    return [
        SenderReport(p.ssrc, p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp)
        for p in packets
        if isinstance(p, RtcpSrPacket)
    ]


class ReceptionStats:
    """What we received of one source since the session began."""

    def __init__(self, ssrc: int, rate: int) -> None:
        self.ssrc = ssrc
        self._rate = rate
        self._base: int | None = None  # first sequence number
        self._cycles = 0
        self._max = 0
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit: float | None = None
        self._jitter = 0.0  # in timestamp units
        self._last_sr: tuple[int, float] | None = None  # (middle 32 bits of NTP, when)

    def packet(self, packet: RtpPacket, arrival: float) -> None:
        seq = packet.sequence
        if self._base is None:
            self._base, self._max = seq, seq
        elif seq_distance(seq, self._max) > 0:
            if seq < self._max:
                self._cycles += 1 << 16
            self._max = seq
        self.received += 1
        transit = arrival * self._rate - packet.timestamp
        if self._transit is not None:
            delta = abs(transit - self._transit)
            self._jitter += (delta - self._jitter) / 16
        self._transit = transit

    def sender_report(self, report: SenderReport, arrival: float) -> None:
        self._last_sr = ((report.ntp >> 16) & 0xFFFFFFFF, arrival)

    def block(self, now: float) -> RtcpReceiverInfo:
        """A report block for the interval since the last one (RFC 3550 A.3)."""
        base = self._base if self._base is not None else 0
        highest = self._cycles + self._max
        expected = highest - base + 1 if self._base is not None else 0
        lost = max(0, min(expected - self.received, 0x7FFFFF))
        interval_expected = expected - self._expected_prior
        interval_lost = interval_expected - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = expected, self.received
        fraction = (interval_lost << 8) // interval_expected if interval_expected > 0 else 0
        lsr, dlsr = 0, 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = int((now - self._last_sr[1]) * 65536) & 0xFFFFFFFF
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=max(0, min(fraction, 255)),
            packets_lost=lost,
            highest_sequence=highest & 0xFFFFFFFF,
            jitter=int(self._jitter),
            lsr=lsr,
            dlsr=dlsr,
        )


def receiver_report(ssrc: int, sources: list[ReceptionStats]) -> bytes:
    """An RR from `ssrc` (ours) with a block for each source heard from."""
    now = time.monotonic()
    blocks = [s.block(now) for s in sources if s.received][:31]
    return bytes(RtcpRrPacket(ssrc=ssrc, reports=blocks))

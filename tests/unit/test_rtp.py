"""RTP back to access units: packets, the reorder window, H.264 and H.265 payloads, and
units complete on the marker bit, with nothing broken forwarded."""

from __future__ import annotations

import base64
import struct

import pytest
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from media_server.aiortc_internals import packetize_h264
from media_server.codecs.h264 import START_CODE
from media_server.rtp.assembler import Assembler, Unit
from media_server.rtp.audio import Mpeg4Generic, audio_depacketizer
from media_server.rtp.clock import SenderReport, TrackClock, Unwrapper
from media_server.rtp.packet import MalformedPacket, RtpPacket, seq_after, seq_distance
from media_server.rtp.payload import H265Depacketizer, sdp_parameter_sets
from media_server.rtp.reorder import ReorderWindow
from media_server.rtp.rtcp import ReceptionStats, receiver_report, sender_reports

SPS = bytes([0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF, 0xE5, 0x84])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65]) + bytes(range(256)) * 20  # 5 KB: fragmented (FU-A)
SLICE = bytes([0x41]) + bytes(300)  # a P-frame slice


def annexb(*nals: bytes) -> bytes:
    return b"".join(START_CODE + nal for nal in nals)


def rtp(payload: bytes, seq: int, ts: int, marker: bool, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, 0x1234) + payload


class Camera:
    """Sends access units as RTP, packetized as aiortc (and most cameras) do."""

    def __init__(self, seq: int = 65_530, marker: bool = True) -> None:
        self.seq = seq
        self.marker = marker

    def send(self, unit: bytes, ts: int) -> list[RtpPacket]:
        payloads = packetize_h264(unit)
        packets = []
        for i, payload in enumerate(payloads):
            last = i == len(payloads) - 1
            packets.append(RtpPacket.parse(rtp(payload, self.seq, ts, last and self.marker)))
            self.seq = (self.seq + 1) & 0xFFFF
        return packets


def feed(assembler: Assembler, packets: list[RtpPacket]) -> list[Unit]:
    return [unit for packet in packets for unit in assembler.push(packet)]


def test_packets_are_read_with_every_length_checked() -> None:
    csrc_ext_pad = (
        struct.pack("!BBHII", 0xB1, 0xE0, 7, 9000, 1)  # padding, extension, 1 CSRC, marker
        + b"\x00\x00\x00\x02"  # CSRC
        + b"\xbe\xde\x00\x01"
        + b"\x10\xaa\x00\x00"  # one-word extension
        + b"payload"
        + b"\x00\x00\x03"  # 3 bytes of padding
    )
    packet = RtpPacket.parse(csrc_ext_pad)
    assert (packet.marker, packet.payload_type, packet.sequence) == (True, 96, 7)
    assert packet.payload == b"payload"
    for bad in (b"\x80\x60", b"\x40" + bytes(11), struct.pack("!BBHII", 0x8F, 0, 0, 0, 0)):
        with pytest.raises(MalformedPacket):
            RtpPacket.parse(bad)
    with pytest.raises(MalformedPacket):  # padding longer than the payload
        RtpPacket.parse(struct.pack("!BBHII", 0xA0, 0, 0, 0, 0) + b"ab\x09")
    assert seq_after(2, 65_535) and not seq_after(65_535, 2) and seq_distance(2, 65_535) == 3


def test_h264_units_come_back_whole_through_fragmentation_and_aggregation() -> None:
    camera, assembler = Camera(), Assembler("h264")
    key = feed(assembler, camera.send(annexb(SPS, PPS, IDR), 3000))  # STAP-A, then FU-A
    delta = feed(assembler, camera.send(annexb(SLICE), 6000))  # across the sequence wrap
    assert key == [Unit(annexb(SPS, PPS, IDR), 3000, True)]
    assert delta == [Unit(annexb(SLICE), 6000, False)]


def test_a_unit_completes_on_its_marker_not_on_the_next_one() -> None:
    camera, assembler = Camera(), Assembler("h264")
    packets = camera.send(annexb(SPS, PPS, IDR), 3000)
    assert feed(assembler, packets[:-1]) == []
    assert len(assembler.push(packets[-1])) == 1  # the last packet completes it: no wait


def test_without_markers_a_new_timestamp_completes_the_unit() -> None:
    camera, assembler = Camera(marker=False), Assembler("h264")
    assert feed(assembler, camera.send(annexb(SPS, PPS, IDR), 3000)) == []
    units = feed(assembler, camera.send(annexb(SLICE), 6000))
    assert [u.timestamp for u in units] == [3000]


def test_a_lost_packet_drops_its_unit_and_the_rest_until_a_keyframe() -> None:
    camera, assembler = Camera(), Assembler("h264", [SPS, PPS])
    first = camera.send(annexb(SPS, PPS, IDR), 3000)
    assert len(feed(assembler, first)) == 1
    broken = camera.send(annexb(IDR), 6000)
    del broken[1]  # a fragment lost
    assert feed(assembler, broken) == []
    assert feed(assembler, camera.send(annexb(SLICE), 9000)) == []  # refers to the lost one
    again = feed(assembler, camera.send(annexb(IDR), 12000))
    assert [u.keyframe for u in again] == [True]
    assert again[0].data.startswith(annexb(SPS, PPS))  # parameter sets put back in front
    assert assembler.dropped_units == 2


def test_parameter_sets_from_the_sdp_go_before_keyframes_that_lack_them() -> None:
    fmtp = (
        "packetization-mode=1;profile-level-id=42c01e;sprop-parameter-sets="
        f"{base64.b64encode(SPS).decode()},{base64.b64encode(PPS).decode()}"
    )
    assembler = Assembler("h264", sdp_parameter_sets("h264", fmtp))
    units = feed(assembler, Camera().send(annexb(IDR), 3000))
    assert units[0].data == annexb(SPS, PPS, IDR) and units[0].keyframe
    assert sdp_parameter_sets("h264", "sprop-parameter-sets=!!!,") == []  # broken: skipped


def test_h265_single_aggregated_and_fragmented_units() -> None:
    vps, sps, pps = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc1"
    idr = bytes([0x26, 0x01]) + bytes(range(200))  # IDR_W_RADL (19)
    ap = bytes([48 << 1, 1]) + b"".join(len(u).to_bytes(2, "big") + u for u in (vps, sps, pps))
    fu_header = bytes([49 << 1, 1])
    fu = [fu_header + bytes([0x80 | 19]) + idr[2:100], fu_header + bytes([0x40 | 19]) + idr[100:]]
    depacketizer = H265Depacketizer()
    assert depacketizer.push(ap) == [vps, sps, pps]
    assert depacketizer.push(fu[0]) == []
    assert depacketizer.push(fu[1]) == [idr]
    assert depacketizer.push(fu[1]) == [] and depacketizer.dropped == 1  # no start: dropped

    sets = (("vps", vps), ("sps", sps), ("pps", pps))
    fmtp = ";".join(f"sprop-{name}={base64.b64encode(unit).decode()}" for name, unit in sets)
    assembler = Assembler("h265", sdp_parameter_sets("h265", fmtp))
    packets = [RtpPacket.parse(rtp(p, i, 9000, i == 1)) for i, p in enumerate(fu)]
    units = feed(assembler, packets)
    assert units == [Unit(annexb(vps, sps, pps, idr), 9000, True)]


def test_the_reorder_window_puts_udp_back_in_order_and_gives_up_on_gaps() -> None:
    window = ReorderWindow(size=4)

    def packet(seq: int) -> RtpPacket:
        return RtpPacket(96, False, seq & 0xFFFF, 0, 1, b"")

    out = [p.sequence for s in (65_534, 0, 65_535, 1) for p in window.push(packet(s))]
    assert out == [65_534, 65_535, 0, 1]  # reordered, across the wrap
    assert window.push(packet(0)) == [] and window.duplicates == 1  # already left
    held = [p.sequence for s in (3, 4, 5) for p in window.push(packet(s))]  # 2 is missing
    assert held == []
    released = [p.sequence for p in window.push(packet(6))]  # the window is full: 2 is lost
    assert released == [3, 4, 5, 6] and window.lost == 1
    # A gap open for max_wait is given up without waiting for the window to fill.
    timed = ReorderWindow(size=32, max_wait=0.02)
    assert [p.sequence for s in (10, 11) for p in timed.push(packet(s), now=1.0)] == [10, 11]
    assert timed.push(packet(13), now=1.001) == []  # 12 is late
    assert timed.expire(now=1.01) == []
    assert [p.sequence for p in timed.expire(now=1.03)] == [13] and timed.lost == 1
    # The very first packet waits for a second that may have been sent before it.
    start = ReorderWindow(max_wait=0.02)
    assert start.push(packet(101), now=5.0) == []
    assert [p.sequence for p in start.push(packet(100), now=5.001)] == [100, 101]
    alone = ReorderWindow(max_wait=0.02)
    assert alone.push(packet(7), now=5.0) == []
    assert [p.sequence for p in alone.expire(now=5.03)] == [7]


# -- audio payloads, clocks and RTCP ------------------------------------------------------
def aac_packet(
    units: list[bytes], seq: int, ts: int, marker: bool = True, size: int = 0
) -> RtpPacket:
    """RFC 3640 AAC-hbr: 13-bit sizes and 3-bit indexes; `size` overrides a fragment's."""
    headers = 0
    for unit in units:
        headers = (headers << 16) | ((size or len(unit)) << 3)
    bits = 16 * len(units)
    payload = bits.to_bytes(2, "big") + headers.to_bytes(bits // 8, "big") + b"".join(units)
    return RtpPacket.parse(rtp(payload, seq, ts, marker, pt=97))


AAC_FMTP = (
    "streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1190;"
    "sizelength=13;indexlength=3;indexdeltalength=3"
)


def test_aac_units_come_out_of_au_headers_with_their_own_timestamps() -> None:
    depacketizer = audio_depacketizer("mpeg4-generic", AAC_FMTP)
    assert isinstance(depacketizer, Mpeg4Generic) and depacketizer.config == b"\x11\x90"
    one, two = b"\x21" * 200, b"\x22" * 180
    assert depacketizer.push(aac_packet([one, two], 1, 5000)) == [(one, 5000), (two, 6024)]
    # One unit larger than a packet, in two fragments up to the marker.
    big = bytes(range(256)) * 10
    first = aac_packet([big[:1400]], 2, 7048, marker=False, size=len(big))
    second = aac_packet([big[1400:]], 3, 7048, marker=True, size=len(big))
    assert depacketizer.push(first) == []
    assert depacketizer.push(second) == [(big, 7048)]
    # A fragment whose start was lost does not make a unit of its end.
    depacketizer.reset()
    assert depacketizer.push(second) == []
    # Modes other than AAC's, and codecs not taken, have no depacketizer.
    assert audio_depacketizer("mpeg4-generic", "mode=CELP-cbr") is None
    assert audio_depacketizer("g726-32", "") is None
    whole = audio_depacketizer("opus", "")
    assert whole is not None and whole.push(RtpPacket.parse(rtp(b"op", 9, 960, True))) == [
        (b"op", 960)
    ]


def test_timestamps_unwrap_and_sender_reports_place_them_on_the_camera_clock() -> None:
    unwrapper = Unwrapper()
    assert unwrapper.unwrap(0xFFFF_FF00) == 0xFFFF_FF00
    assert unwrapper.unwrap(0x100) == (1 << 32) + 0x100  # wrapped forwards
    assert unwrapper.unwrap(0xFFFF_FFF0) == 0xFFFF_FFF0  # a late one from before the wrap
    assert unwrapper.unwrap(0x50) == (1 << 32) + 0x50  # a B-frame's step back
    video, audio = TrackClock(90_000), TrackClock(48_000)
    assert video.wall(0) is None and audio.at(1.0) is None
    video.report(SenderReport(1, 1000 << 32, 90_000))  # NTP 1000 s is video's 90,000
    audio.report(SenderReport(2, (1000 << 32) + (1 << 31), 48_000))  # 1000.5 s is 48,000
    wall = audio.wall(48_000 + 24_000)  # half a second after its report: 1001.0 s
    assert wall is not None and wall == pytest.approx(1001.0)
    assert video.at(wall) == 180_000  # one second after video's report


def test_receiver_reports_count_what_was_lost_and_echo_the_last_sender_report() -> None:
    stats = ReceptionStats(0xCAFE, 90_000)
    for seq in [65_534, 65_535, 0, 2, 3]:  # 1 lost, across the wrap
        stats.packet(RtpPacket.parse(rtp(b"x", seq, seq * 3000, True)), arrival=seq / 30)
    sr = SenderReport(0xCAFE, 0x0000_1234_5678_0000, 0)
    stats.sender_report(sr, arrival=100.0)
    block = stats.block(now=100.5)
    assert (block.ssrc, block.packets_lost, block.highest_sequence) == (0xCAFE, 1, 65_536 + 3)
    assert block.fraction_lost == 256 // 6  # 1 of 6 expected
    assert block.lsr == 0x1234_5678 and block.dlsr == 65_536 // 2
    report = receiver_report(0xBEEF, [stats])
    assert report[1] == 201 and int.from_bytes(report[4:8], "big") == 0xBEEF  # an RR from us
    assert sender_reports(bytes(RtcpSrPacket(ssrc=7, sender_info=SENDER_INFO))) == [
        SenderReport(7, SENDER_INFO.ntp_timestamp, SENDER_INFO.rtp_timestamp)
    ]
    assert sender_reports(b"not rtcp") == []


SENDER_INFO = RtcpSenderInfo(
    ntp_timestamp=(5 << 32) | 7, rtp_timestamp=1234, packet_count=1, octet_count=1
)

"""RTP back to access units: packets, the reorder window, H.264 and H.265 payloads, and
units complete on the marker bit, with nothing broken forwarded."""

from __future__ import annotations

import base64
import struct

import pytest

from media_server.aiortc_internals import packetize_h264
from media_server.rtp.assembler import START_CODE, Assembler, Unit
from media_server.rtp.packet import MalformedPacket, RtpPacket, seq_after, seq_distance
from media_server.rtp.payload import H265Depacketizer, sdp_parameter_sets
from media_server.rtp.reorder import ReorderWindow

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

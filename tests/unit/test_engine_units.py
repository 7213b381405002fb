"""The fan-out engine's parts on their own: packetizing once, the send paths' SRTP across
the 16-bit and 32-bit wraps (decrypted by pylibsrtp, the library aiortc's receivers use),
NACK answers, sender reports, and a stream's feed of viewers."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSrPacket,
)
from pylibsrtp import Policy, Session

from media_server.engine import _fanout, rtcp, sendpath, srtp
from media_server.engine.engine import Engine, EngineConfig
from media_server.engine.feed import Feed
from media_server.engine.lanes import Lanes
from media_server.engine.sendpath import SendPath, TxViewer
from media_server.engine.units import History, Packetizer
from media_server.engine.viewer import RTX_BURST, RTX_RATE, EngineViewer
from media_server.model import clock
from media_server.model.media import AccessUnit
from tests.support.streams import bare_stream

PATHS = ["native", "python"]
PROFILE = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
KEY = bytes(range(30))


def unit(pts: int, keyframe: bool, size: int = 100) -> AccessUnit:
    nal = (b"\x65" if keyframe else b"\x41") + bytes([7]) * size
    return AccessUnit(b"\x00\x00\x00\x01" + nal, pts, Fraction(1, 90_000), keyframe)


def test_the_native_send_path_is_built() -> None:
    """The suite runs after scripts/setup.sh, which compiles it: its absence is a failure."""
    assert sendpath.native_available()
    assert sendpath.load("native").name == "native"
    assert sendpath.load("python").name == "python"


def test_packetizing_once_gives_what_aiortc_packetizes_per_viewer() -> None:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, 90_000)
    encoder.options = {"tune": "zerolatency"}
    noise = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(noise, format="rgb24").reformat(format="yuv420p")
    frame.pts = 0
    packets = [p for p in encoder.encode(frame)] + [p for p in encoder.encode(None)]
    packet = packets[0]
    packet.time_base = Fraction(1, 90_000)
    packer = Packetizer()
    first = packer.packetize(AccessUnit(bytes(packet), 0, Fraction(1, 90_000), True))
    expected, _ = H264Encoder().pack(packet)
    assert list(first.payloads) == expected
    assert len(first.payloads) > 10  # a noisy keyframe: many FU-A fragments
    second = packer.packetize(AccessUnit(bytes(packet), 3000, Fraction(1, 90_000), False))
    assert second.first == first.end  # packets are numbered across the stream


def test_history_is_bounded_and_finds_packets_by_index() -> None:
    history = History(capacity=50)
    packer = Packetizer()
    units = [packer.packetize(unit(i * 3000, i % 10 == 0, size=3000)) for i in range(40)]
    for packed in units:
        history.add(packed)
    assert len(units[0].payloads) == 3  # 3000 bytes: three FU-A packets
    assert history.find(0) is None  # long gone
    last = units[-1]
    assert history.find(last.end) is None  # not sent yet
    found = history.find(last.first + 2)
    assert found is not None and found[0] is last and found[1] == 2
    assert history._packets <= 50


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.settimeout(2)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    yield rx, tx
    rx.close()
    tx.close()


VIEWER: dict[str, Any] = {
    "host": "127.0.0.1",
    "profile": PROFILE,
    "key": KEY,
    "ssrc": 0x11223344,
    "payload_type": 102,
    "seq": 10,
    "ts_offset": 0,
    "mid_id": 1,
    "mid": b"0",
    "abs_send_time_id": 3,
    "rtx_ssrc": 0x55667788,
    "rtx_payload_type": -1,
    "rtx_seq": 7,
}


def make_viewer(
    path: SendPath, tx: socket.socket, rx: socket.socket, seq: int, ts_offset: int, rtx: bool
) -> TxViewer:
    given = {"fd": tx.fileno(), "port": rx.getsockname()[1], "seq": seq, "ts_offset": ts_offset}
    return path.viewer(**{**VIEWER, **given, "rtx_payload_type": 103 if rtx else -1})


def receiver() -> Session:
    return Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILE))


def parse(packet: bytes) -> dict[str, Any]:
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
    assert first == 0x90  # version 2, with header extensions
    profile, words = struct.unpack("!HH", packet[12:16])
    assert profile == 0xBEDE
    ext = packet[16 : 16 + 4 * words]
    assert ext[0] == (1 << 4) and ext[1:2] == b"0"  # mid "0"
    assert ext[2] == (3 << 4) | 2  # abs-send-time, 3 bytes
    return {
        "marker": bool(second & 0x80),
        "pt": second & 0x7F,
        "seq": seq,
        "ts": ts,
        "ssrc": ssrc,
        "payload": packet[16 + 4 * words :],
    }


@pytest.mark.parametrize("name", PATHS)
def test_srtp_holds_past_65535_packets_and_both_wraps(
    name: str, udp_pair: tuple[socket.socket, socket.socket]
) -> None:
    """66,000 packets from sequence number 65,000: the sequence number wraps (the SRTP
    rollover counter must follow), the timestamp too; the receiver decrypts every one."""
    rx, tx = udp_pair
    path = sendpath.load(name)  # type: ignore[arg-type]
    viewer = make_viewer(path, tx, rx, seq=65_000, ts_offset=2**32 - 30_000, rtx=False)
    decrypt = receiver()
    per_unit = 100
    payloads = tuple(struct.pack("!I", i) * 5 for i in range(per_unit))
    expected_seq = 65_000
    wrapped_ts = False
    for n in range(660):
        stream_ts = n * 3000
        assert path.send_unit((viewer,), payloads, stream_ts, n * per_unit) == per_unit
        for i in range(per_unit):
            p = parse(decrypt.unprotect(rx.recv(2048)))
            assert p["seq"] == expected_seq
            assert p["ts"] == (stream_ts + 2**32 - 30_000) % 2**32
            assert p["payload"] == payloads[i]
            assert p["marker"] == (i == per_unit - 1)
            assert p["pt"] == 102 and p["ssrc"] == 0x11223344
            wrapped_ts |= p["ts"] < 30_000
            expected_seq = (expected_seq + 1) & 0xFFFF
    assert wrapped_ts
    packets, octets, dropped, _, errors, _, last_ntp, next_seq = viewer.sender_info()
    assert (packets, dropped, errors, next_seq) == (66_000, 0, 0, expected_seq)
    assert octets == 66_000 * 20
    assert abs((last_ntp >> 32) - (clock.ntp_now() >> 32)) <= 1
    assert viewer.lookup((65_000 + 65_999) & 0xFFFF) == (65_999, 659 * 3000)
    # Sent 1,024 packets before the last one: out of the ring, too old to retransmit.
    assert viewer.lookup((65_000 + 65_999 - 1_024) & 0xFFFF) is None
    viewer.close()
    assert viewer.closed and path.send_unit((viewer,), payloads, 0, 0) == 0


def feed_with(path: SendPath, units: list[AccessUnit]) -> Feed:
    stream = bare_stream()
    feed = Feed(stream.attach("fanout"), path, Lanes(0, 8), 1024, gop_units=64, gop_bytes=1 << 20)
    for u in units:
        stream.hub.publish_unit(u)
    return feed


def engine_viewer(tx: TxViewer) -> EngineViewer:
    return EngineViewer(tx=tx, lane=0, ssrc=0x11223344, cname="gw", pair=None, connection=None)


@pytest.mark.parametrize(("name", "rtx"), [("native", True), ("native", False), ("python", True)])
def test_a_nack_is_answered_from_the_history(
    name: str, rtx: bool, udp_pair: tuple[socket.socket, socket.socket]
) -> None:
    rx, tx = udp_pair
    path = sendpath.load(name)  # type: ignore[arg-type]
    feed = feed_with(path, [])
    viewer = engine_viewer(make_viewer(path, tx, rx, seq=100, ts_offset=5, rtx=rtx))
    feed.add(viewer)
    big = unit(9000, True, size=3000)  # three packets: seq 100, 101, 102
    feed.on_unit(big)
    decrypt = receiver()
    datagrams = [rx.recv(2048) for _ in range(3)]
    lost = Packetizer().packetize(big).payloads[1]
    # 101 is lost on the way: the viewer decrypts 100 and 102 and asks for it.
    sent = [parse(decrypt.unprotect(datagrams[i])) for i in (0, 2)]
    assert [p["seq"] for p in sent] == [100, 102]
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=0x11223344)
    nack.lost = [101, 7_000]  # 7000 was never sent: ignored
    rtcp.handle(viewer, feed, nack)
    again = parse(decrypt.unprotect(rx.recv(2048)))
    if rtx:  # RFC 4588: RTX payload type and SSRC, original sequence number first
        assert (again["pt"], again["ssrc"], again["seq"]) == (103, 0x55667788, 7)
        assert again["payload"] == struct.pack("!H", 101) + lost
    else:
        assert (again["pt"], again["seq"], again["payload"]) == (102, 101, lost)
    assert again["ts"] == sent[0]["ts"] == 9005 and not again["marker"]
    assert viewer.nacks == 1 and viewer.nacked_packets == 2
    assert viewer.tx.sender_info()[3] == 1  # one retransmission
    rx.settimeout(0.2)
    with pytest.raises(TimeoutError):
        rx.recv(2048)


def test_a_nack_flood_is_deduplicated_capped_and_budgeted(
    udp_pair: tuple[socket.socket, socket.socket],
) -> None:
    """One 1.4 KB NACK can name about 5,900 packets: each is sent again once at most, at
    most NACK_MOST per message, within the viewer's budget per second."""
    rx, tx = udp_pair
    path = sendpath.load("native")
    feed = feed_with(path, [])
    viewer = engine_viewer(make_viewer(path, tx, rx, seq=100, ts_offset=5, rtx=False))
    feed.add(viewer)
    for i in range(40):  # 40 units of 3 packets: seq 100..219 are in the history
        feed.on_unit(unit(9000 + i * 3000, i == 0, size=3000))
    rx.settimeout(1)
    for _ in range(120):
        rx.recv(2048)

    def retransmitted() -> int:
        return viewer.tx.sender_info()[3]

    flood = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=0x11223344)
    flood.lost = [100 + i % 120 for i in range(5_900)]
    rtcp.handle(viewer, feed, flood)
    assert retransmitted() == rtcp.NACK_MOST  # distinct, and no more than the cap
    rtcp.handle(viewer, feed, flood)  # the same at once: just sent, not again
    assert retransmitted() == rtcp.NACK_MOST
    for i in range(20):  # a flood of fresh requests drains the budget, then stops
        again = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=0x11223344)
        again.lost = [100 + (i * 7 + j) % 120 for j in range(64)]
        time.sleep(0.06)
        rtcp.handle(viewer, feed, again)
    assert retransmitted() <= RTX_BURST + RTX_RATE * 1.5
    assert viewer.nacks_refused > 0


def test_a_sender_report_maps_now_to_the_rtp_clock(
    udp_pair: tuple[socket.socket, socket.socket],
) -> None:
    rx, tx = udp_pair
    path = sendpath.load("native")
    viewer = engine_viewer(make_viewer(path, tx, rx, seq=1, ts_offset=1000, rtx=False))
    viewer.ts_offset = 1000
    # A unit whose timestamp stands for 0.2 s ago on the media clock, sent only now.
    pts = clock.ticks_now(90_000) - 18_000
    path.send_unit((viewer.tx,), (b"x" * 10, b"y" * 20), pts, 0)
    report = rtcp.sender_report(viewer, clock.CaptureClock())
    sr, sdes = RtcpPacket.parse(report)
    assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
    info = sr.sender_info
    assert sr.ssrc == 0x11223344 and info.packet_count == 2 and info.octet_count == 30
    # Now maps to the unit's moment plus 0.2 s (about 18,000 ticks later), not to when it
    # left: what the moment of a timestamp is does not depend on how late it was sent.
    sent_as = (pts + 1000) & 0xFFFFFFFF
    assert 16_000 < (info.rtp_timestamp - sent_as) & 0xFFFFFFFF < 22_000
    assert abs(info.ntp_timestamp - clock.ntp_now()) < (1 << 32) // 10
    assert sdes.chunks[0].items == [(1, b"gw")]

    # A camera that said when it captured that unit: the report is on the camera's clock
    # (an hour behind ours, say), at the same rate.
    camera = clock.CaptureClock()
    captured = clock.ntp_now() / (1 << 32) - 3600.0
    camera.follow(pts, Fraction(1, 90_000), captured)
    sr, _ = RtcpPacket.parse(rtcp.sender_report(viewer, camera))
    assert isinstance(sr, RtcpSrPacket)
    info = sr.sender_info
    ticks = (info.rtp_timestamp - sent_as) & 0xFFFFFFFF
    assert abs(info.ntp_timestamp / (1 << 32) - (captured + ticks / 90_000)) < 1e-4


class Recorder:
    """A send path that records what the feed asks for (pure logic: no sockets)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], tuple[bytes, ...], int, int]] = []

    def send_unit(
        self, viewers: tuple[Any, ...], payloads: tuple[bytes, ...], ts: int, i: int
    ) -> int:
        self.calls.append((viewers, payloads, ts, i))
        return len(payloads) * len(viewers)

    def path(self) -> SendPath:
        return SendPath("python", lambda **kw: None, self.send_unit, False)  # type: ignore[arg-type]


def gop(start: int, count: int) -> list[AccessUnit]:
    return [unit(start + i * 3000, i == 0) for i in range(count)]


def test_a_new_viewer_starts_from_the_cached_gop_or_waits_for_a_keyframe() -> None:
    rec = Recorder()
    feed = feed_with(rec.path(), gop(0, 5))  # the hub's GOP seeds the feed
    first: list[str] = []
    early = engine_viewer("early")  # type: ignore[arg-type]
    early.on_first = lambda: first.append("early")
    feed.add(early)
    assert [c[2] for c in rec.calls] == [0, 3000, 6000, 9000, 12000]  # the GOP, in order
    assert first == ["early"]
    rec.calls.clear()
    feed.on_unit(unit(15000, False))
    assert rec.calls == [(("early",), rec.calls[0][1], 15000, rec.calls[0][3])]

    feed.on_reset()  # the source changed: the GOP no longer leads anywhere
    late = engine_viewer("late")  # type: ignore[arg-type]
    feed.add(late)
    rec.calls.clear()
    feed.on_unit(unit(18000, False))
    assert [c[0] for c in rec.calls] == [("early",)]  # late waits for a keyframe
    feed.on_unit(unit(21000, True))
    assert sorted(rec.calls[-1][0]) == ["early", "late"]
    assert feed.viewers == 2


def test_a_picture_loss_replays_the_gop_squeezed_before_the_next_unit() -> None:
    rec = Recorder()
    feed = feed_with(rec.path(), gop(90_000, 6))
    viewer = engine_viewer("v")  # type: ignore[arg-type]
    feed.add(viewer)
    rec.calls.clear()
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=0x11223344)
    rtcp.handle(viewer, feed, pli)
    stamps = [c[2] for c in rec.calls]
    assert len(stamps) == 6 and rec.calls[0][1] == feed._gop[0].payloads  # from its keyframe
    last = 90_000 + 5 * 3000
    assert last < stamps[0] and all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[-1] < last + 3000  # all before the next unit's timestamp
    rtcp.handle(viewer, feed, pli)  # at once again: a PLI storm is not answered twice
    assert len(rec.calls) == 6 and viewer.plis == 2 and viewer.replays == 1


def test_a_lane_that_falls_behind_sends_its_viewers_back_to_a_keyframe() -> None:
    rec = Recorder()
    feed = feed_with(rec.path(), gop(0, 2))
    lanes = Lanes(1, 8)
    lanes._threads[0].join(0)
    feed._lanes = lanes
    viewer = engine_viewer("v")  # type: ignore[arg-type]
    blocker = threading.Event()
    lanes.submit(0, None, blocker.wait)  # the lane's thread is stuck
    feed.add(viewer)  # two GOP units queued
    for i in range(2, 12):
        feed.on_unit(unit(i * 3000, False))
    assert feed.restarts == 1 and feed.viewers == 1 and lanes.dropped_jobs >= 1
    assert viewer not in feed._live
    blocker.set()
    while lanes.backlog():
        time.sleep(0.01)
    feed.on_unit(unit(12 * 3000, True))
    assert viewer in feed._live
    lanes.close()


@pytest.mark.parametrize("gso", [True, False])
def test_runs_of_equal_packets_leave_as_separate_datagrams_in_order(
    gso: bool, udp_pair: tuple[socket.socket, socket.socket]
) -> None:
    """With UDP GSO the kernel cuts each run (balanced FU-A fragments and a shorter last
    one) into datagrams: the viewer must see exactly the packets, in order."""
    rx, tx = udp_pair
    native = sendpath.load("native")
    assert native.name == "native"
    viewer = native.viewer(**{**VIEWER, "fd": tx.fileno(), "port": rx.getsockname()[1], "gso": gso})
    assert isinstance(viewer, _fanout.Viewer)
    sizes = [30, 1201, 1201, 1200, 1200, 1200, 700, 90, 90]
    payloads = tuple(bytes([i]) * size for i, size in enumerate(sizes))
    assert _fanout.send_unit((viewer,), payloads, 0, 0) == len(sizes)
    decrypt = receiver()
    got = [parse(decrypt.unprotect(rx.recv(2048))) for _ in sizes]
    assert [p["payload"] for p in got] == list(payloads)
    assert [p["seq"] for p in got] == list(range(10, 10 + len(sizes)))
    assert viewer.gso == gso  # loopback takes GSO: it was never turned off


def test_the_native_path_links_no_libsrtp_of_its_own() -> None:
    """It calls the libsrtp inside pylibsrtp (the one aiortc uses): no libsrtp2 to link."""
    linked = subprocess.run(["ldd", _fanout.__file__], capture_output=True, text=True).stdout
    assert "srtp" not in linked
    assert sendpath.load("native").name == "native"


def test_pylibsrtp_gives_what_the_native_path_calls() -> None:
    """Each private of pylibsrtp the engine uses (engine/srtp.py) is still there."""
    protect, protect_rtcp = srtp.protect_functions()
    assert protect and protect_rtcp and protect != protect_rtcp
    session = srtp.session(PROFILE, KEY)
    assert srtp.context(session) != 0
    assert srtp.context(session) != srtp.context(srtp.session(PROFILE, KEY))


def test_a_libsrtp_of_another_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """libsrtp 3 changed srtp_protect's arguments: calling it as 2's would corrupt memory."""
    monkeypatch.setattr(srtp, "PROTECT_TYPE", "srtp_err_status_t(*)(void)")
    with pytest.raises(ImportError, match="srtp_protect"):
        srtp.protect_functions()
    assert sendpath.load("native").name == "python"


def test_without_the_native_part_the_engine_falls_back_to_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "media_server.engine._fanout", None)  # import fails
    assert not sendpath.native_available()
    assert sendpath.load("native").name == "python"


class Pair:
    """What the engine reads of an aioice candidate pair: its socket and remote address."""

    def __init__(self, sock: socket.socket, to: socket.socket) -> None:
        self.protocol = type("Protocol", (), {})()
        self.protocol.transport = type("Transport", (), {"get_extra_info": lambda _, k: sock})()
        self.remote_addr = to.getsockname()


@pytest.mark.parametrize("name", PATHS)
async def test_a_viewer_follows_ice_to_another_pair_and_is_closed_when_none_is_left(
    name: Literal["native", "python"], udp_pair: tuple[socket.socket, socket.socket]
) -> None:
    """Browsers may nominate a second pair after the first: the engine sends there."""
    rx, tx = udp_pair
    rx2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx2.bind(("127.0.0.1", 0))
    stream = bare_stream("s", asyncio.get_running_loop())
    config = EngineConfig(name, 0, 8, 1024, 64, 1 << 20)
    engine = Engine(config, lambda stream_id: stream)
    seq, offset = engine.start("s")
    first = Pair(tx, rx)
    connection = type("Connection", (), {"_nominated": {1: first}})()
    lost: list[str] = []
    viewer = EngineViewer(
        tx=make_viewer(engine.path, tx, rx, seq, offset, rtx=False),
        lane=engine.lanes.assign(),
        ssrc=0x11223344,
        cname="gw",
        pair=first,
        connection=connection,
        on_lost=lost.append,
    )
    engine.add("s", viewer)
    decrypt = receiver()
    try:
        await asyncio.sleep(1.3)  # a tick: the route holds, a sender report goes out
        rx.settimeout(0)
        assert isinstance(RtcpPacket.parse(decrypt.unprotect_rtcp(rx.recv(2048)))[0], RtcpSrPacket)
        connection._nominated[1] = Pair(tx, rx2)  # ICE now sends elsewhere
        await asyncio.sleep(1.2)
        assert not lost and not viewer.tx.closed
        rx2.settimeout(0)
        assert isinstance(RtcpPacket.parse(decrypt.unprotect_rtcp(rx2.recv(2048)))[0], RtcpSrPacket)
        del connection._nominated[1]  # ICE gave up
        await asyncio.sleep(1.2)
        assert lost == ["ICE has no selected pair"] and viewer.tx.closed
    finally:
        engine.remove(viewer)
        await engine.close()
        rx2.close()


def test_a_send_that_waited_too_long_in_its_lane_is_skipped_and_its_owner_told() -> None:
    lanes = Lanes(1, 64, max_lag=0.05)
    blocker = threading.Event()
    ran: list[str] = []
    try:
        lanes.submit(0, "other", blocker.wait)
        lanes.submit(0, "feed", ran.append, "late")
        time.sleep(0.15)  # the second job is now older than max_lag
        blocker.set()
        while lanes.backlog():
            time.sleep(0.01)
        time.sleep(0.05)
        assert ran == [] and lanes.dropped_jobs == 1
        assert lanes.behind(0, "feed") and not lanes.behind(0, "feed")  # told once
        assert not lanes.behind(0, "other")
        lanes.submit(0, "feed", ran.append, "fresh")
        while not ran:
            time.sleep(0.01)
        assert ran == ["fresh"]
    finally:
        lanes.close()

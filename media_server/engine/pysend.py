"""The engine's send path in pure Python: the same Viewer and send_unit as `_fanout.c`.

Kept for comparison (the harness measures both) and as the fallback where the native part
was not built. It runs on the event loop: pylibsrtp's protect and one sendto per packet
hold the GIL, so lanes of threads would gain nothing.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from pylibsrtp import Error as SrtpError

from media_server.engine import srtp
from media_server.model.clock import ntp_now

RING = 1024


class Viewer:
    """One viewer's SRTP session, its own duplicate of the ICE socket, and header state."""

    def __init__(
        self,
        *,
        fd: int,
        host: str,
        port: int,
        profile: int,
        key: bytes,
        ssrc: int,
        payload_type: int,
        seq: int,
        ts_offset: int,
        mid_id: int,
        mid: bytes,
        abs_send_time_id: int,
        rtx_ssrc: int,
        rtx_payload_type: int,
        rtx_seq: int,
        gso: bool = False,
    ) -> None:
        """`gso` is accepted for the native path's sake: one sendto per packet here."""
        self._srtp = srtp.session(profile, key)
        self._sock = socket.socket(fileno=os.dup(fd))
        self._sock.setblocking(False)
        self._addr = (host, port)
        self._ssrc = ssrc
        self._pt = payload_type
        self._seq = seq
        self._ts_offset = ts_offset
        self._rtx = (rtx_payload_type, rtx_ssrc) if rtx_payload_type >= 0 else None
        self._rtx_seq = rtx_seq
        ext = b""
        self._abs_at = -1
        if mid_id > 0 and mid:
            ext += bytes([(mid_id << 4) | (len(mid) - 1)]) + mid
        if abs_send_time_id > 0:
            self._abs_at = 4 + len(ext) + 1
            ext += bytes([(abs_send_time_id << 4) | 2]) + b"\0\0\0"
        if ext:
            ext += b"\0" * (-len(ext) % 4)
            ext = b"\xbe\xde" + struct.pack("!H", len(ext) // 4) + ext
        self._ext = ext
        self._ring: list[tuple[int, int, int]] = [(-1, -1, 0)] * RING
        self.closed = False
        self.packets = self.octets = self.dropped = self.retransmits = self.errors = 0
        self.last_ts = 0
        self.last_ntp = 0

    def _packet(self, pt: int, marker: bool, seq: int, ts: int, ssrc: int, abs_time: int) -> bytes:
        first = 0x90 if self._ext else 0x80
        header = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc)
        if self._abs_at < 0:
            return header + self._ext
        ext = bytearray(self._ext)
        ext[self._abs_at : self._abs_at + 3] = abs_time.to_bytes(3, "big")
        return header + bytes(ext)

    def _send(self, data: bytes) -> bool:
        try:
            self._sock.sendto(data, self._addr)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                self.dropped += 1
            else:
                self.errors += 1
            return False

    def send(self, payloads: tuple[bytes, ...], timestamp: int, first_index: int) -> int:
        if self.closed:
            return 0
        ntp = ntp_now()
        abs_time = (ntp >> 14) & 0xFFFFFF
        ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
        sent = 0
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            seq = self._seq
            self._seq = (seq + 1) & 0xFFFF
            self._ring[seq % RING] = (seq, first_index + i, timestamp)
            header = self._packet(self._pt, i == last, seq, ts, self._ssrc, abs_time)
            try:
                data = self._srtp.protect(header + payload)
            except SrtpError:
                self.errors += 1
                continue
            self.packets += 1
            self.octets += len(payload)
            sent += self._send(data)
        self.last_ts = ts
        self.last_ntp = ntp
        return sent

    def retransmit(self, seq: int, payload: bytes, timestamp: int, marker: bool) -> bool:
        if self.closed:
            return False
        ts = (timestamp + self._ts_offset) & 0xFFFFFFFF
        abs_time = (ntp_now() >> 14) & 0xFFFFFF
        if self._rtx is not None:
            pt, ssrc = self._rtx
            header = self._packet(pt, marker, self._rtx_seq, ts, ssrc, abs_time)
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            payload = struct.pack("!H", seq) + payload
        else:
            header = self._packet(self._pt, marker, seq, ts, self._ssrc, abs_time)
        ok = self._send(self._srtp.protect(header + payload))
        self.retransmits += ok
        return ok

    def send_rtcp(self, data: bytes) -> bool:
        return not self.closed and self._send(self._srtp.protect_rtcp(data))

    def lookup(self, seq: int) -> tuple[int, int] | None:
        stored, index, timestamp = self._ring[seq % RING]
        return (index, timestamp) if stored == seq else None

    def sender_info(self) -> tuple[int, int, int, int, int, int, int, int]:
        return (
            self.packets,
            self.octets,
            self.dropped,
            self.retransmits,
            self.errors,
            self.last_ts,
            self.last_ntp,
            self._seq,
        )

    def retarget(self, fd: int, host: str, port: int) -> None:
        if self.closed:
            return
        old, self._sock = self._sock, socket.socket(fileno=os.dup(fd))
        self._sock.setblocking(False)
        self._addr = (host, port)
        old.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._sock.close()


def send_unit(
    viewers: tuple[Viewer, ...], payloads: tuple[bytes, ...], timestamp: int, first_index: int
) -> int:
    return sum(v.send(payloads, timestamp, first_index) for v in viewers)

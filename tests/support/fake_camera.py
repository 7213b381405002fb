"""A small scripted RTSP server for tests that need a camera that misbehaves.

It answers each request by its method, as `behaviour` says: redirect DESCRIBE elsewhere,
or describe one H.264 track and answer SETUP with a Transport of its choosing (a
`source=` pointing somewhere else, say). Given RTP payloads, it sends them after PLAY,
interleaved or over UDP as SETUP asked, the way a misbehaving camera would: without
marker bits, out of order, closing mid-stream, or dropping a session that is not kept
alive. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;"
    "sprop-parameter-sets=Z0LAHtoCgL/lhAAAAwAEAAADAPA8WLqA,aM48gA==\r\n"
    "a=control:trackID=0\r\n"
)
#: Seconds from 1900 (NTP's era) to 1970.
NTP_EPOCH = 2_208_988_800


@dataclass
class Behaviour:
    #: DESCRIBE answers 302 with this Location when set.
    redirect: str | None = None
    #: Added to the SETUP reply's Transport (e.g. ";source=169.254.169.254").
    transport_extra: str = ""
    #: Digest authentication asked for, with this algorithm (MD5, SHA-256), of user:password.
    digest: str | None = None
    credentials: tuple[str, str] = ("admin", "s3cret")
    #: The SDP DESCRIBE answers (default: one H.264 track), and a Content-Base header.
    sdp: str = SDP
    content_base: str | None = None
    #: A Content-Length DESCRIBE claims (a camera that lies or floods), bytes sent anyway.
    describe_length: int | None = None
    #: Answer everything with bytes that are not RTSP.
    garbage: bool = False
    #: The interleaved channels SETUP answers with, whatever was asked (e.g. "4-5").
    interleaved: str | None = None
    #: Requests seen, as "METHOD uri".
    requests: list[str] = field(default_factory=list)
    #: RTP payloads of each access unit, sent in a loop at `fps` after PLAY.
    media: list[list[bytes]] | None = None
    fps: float = 30.0
    #: False: a camera that never sets the marker bit.
    marker: bool = True
    #: Over UDP, send each pair of packets of a unit in the wrong order.
    reorder: bool = False
    #: Close the connection after sending this many units.
    close_after: int | None = None
    #: The session timeout SETUP announces; with `drop_silent`, a session that hears no
    #: request for that long is ended (the connection closed), as cameras do.
    session_timeout: int | None = None
    drop_silent: bool = False
    #: When each request came (monotonic), in the order of `requests`.
    times: list[float] = field(default_factory=list)
    #: Send an RTCP sender report with every 10th unit, its NTP time the wall clock
    #: plus this many seconds (a camera whose clock is off), when set.
    report_offset: float | None = None


class FakeCamera:
    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, 0))
        self._server.listen(8)
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._client_port = 0  # where SETUP asked for RTP over UDP (0: interleaved)
        self._channel = 0  # the interleaved channel of RTP
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/cam") -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        lock = threading.Lock()  # replies and interleaved media share the connection
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while buffer.startswith(b"$") and len(buffer) >= 4:  # our RTCP: skip it
                    size = int.from_bytes(buffer[2:4], "big")
                    if len(buffer) < 4 + size:
                        break
                    buffer = buffer[4 + size :]
                while b"\r\n\r\n" in buffer and not buffer.startswith(b"$"):
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    text = head.decode("latin-1")
                    with lock:
                        conn.sendall(self._answer(text))
                    if text.startswith("PLAY") and self.behaviour.media:
                        threading.Thread(
                            target=self._send_media, args=(conn, lock), daemon=True
                        ).start()

    def _send_media(self, conn: socket.socket, lock: threading.Lock) -> None:
        """RTP as SETUP asked for it: interleaved on `conn`, or to the client's UDP port."""
        behaviour = self.behaviour
        assert behaviour.media is not None
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if self._client_port else None
        seq, ts, sent = 1000, 90_000, 0
        started = time.monotonic()
        try:
            while not self._closed.is_set():
                unit = behaviour.media[sent % len(behaviour.media)]
                packets = []
                for i, payload in enumerate(unit):
                    marker = behaviour.marker and i == len(unit) - 1
                    header = struct.pack(
                        "!BBHII", 0x80, (0x80 if marker else 0) | 96, seq & 0xFFFF, ts, 0xC0FFEE
                    )
                    packets.append(header + payload)
                    seq += 1
                if behaviour.report_offset is not None and sent % 10 == 0:
                    packets.append(self._sender_report(ts, behaviour.report_offset))
                if udp is not None:
                    if behaviour.reorder:
                        for i in range(0, len(packets) - 1, 2):
                            packets[i], packets[i + 1] = packets[i + 1], packets[i]
                    for packet in packets:
                        rtcp = packet[1] == 200
                        udp.sendto(packet, ("127.0.0.1", self._client_port + rtcp))
                else:
                    with lock:
                        for packet in packets:
                            channel = self._channel + (packet[1] == 200)
                            conn.sendall(b"$" + bytes([channel]) + struct.pack("!H", len(packet)))
                            conn.sendall(packet)
                sent += 1
                ts += int(90_000 / behaviour.fps)
                if behaviour.close_after is not None and sent >= behaviour.close_after:
                    break
                silent = time.monotonic() - (behaviour.times[-1] if behaviour.times else started)
                if behaviour.drop_silent and silent > (behaviour.session_timeout or 60):
                    break
                time.sleep(max(0.0, started + sent / behaviour.fps - time.monotonic()))
        except OSError:
            pass
        finally:
            if udp is not None:
                udp.close()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _sender_report(rtp: int, offset: float) -> bytes:
        """RTCP SR: RTP timestamp `rtp` (the unit sent now) stands for now + `offset`."""
        ntp = round((time.time() + NTP_EPOCH + offset) * (1 << 32))
        return struct.pack("!BBHIQIII", 0x80, 200, 6, 0xC0FFEE, ntp, rtp & 0xFFFFFFFF, 0, 0)

    def _answer(self, head: str) -> bytes:
        lines = head.split("\r\n")
        method, uri = [*lines[0].split(" "), "", ""][:2]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        self.behaviour.requests.append(f"{method} {uri}")
        self.behaviour.times.append(time.monotonic())
        cseq = headers.get("cseq", "0")
        extra, body = "", ""
        behaviour = self.behaviour
        if behaviour.garbage:
            return b"HELLO THERE\r\n\r\n"
        if behaviour.digest is not None and not self._authorized(method, headers):
            challenge = (
                f'Digest realm="cam", nonce="n0nce", algorithm={behaviour.digest}, qop="auth"'
            )
            return (
                f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\nWWW-Authenticate: {challenge}\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
        elif method == "DESCRIBE" and self.behaviour.redirect is not None:
            return (
                f"RTSP/1.0 302 Moved\r\nCSeq: {cseq}\r\nLocation: {self.behaviour.redirect}\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        elif method == "DESCRIBE" and behaviour.describe_length is not None:
            return (
                f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {behaviour.describe_length}\r\n\r\n"
            ).encode() + b"v=0\r\n" * 1000
        elif method == "DESCRIBE":
            extra = "Content-Type: application/sdp\r\n"
            if behaviour.content_base:
                extra += f"Content-Base: {behaviour.content_base}\r\n"
            body = behaviour.sdp
        elif method == "SETUP":
            transport = headers.get("transport", "RTP/AVP;unicast")
            if behaviour.interleaved is not None:
                transport = re.sub(
                    r"interleaved=[\d-]+", f"interleaved={behaviour.interleaved}", transport
                )
            if "client_port" in transport:
                port = re.search(r"client_port=(\d+)", transport)
                self._client_port = int(port.group(1)) if port else 0
                transport += ";server_port=8554-8555"
            channel = re.search(r"interleaved=(\d+)", transport)
            self._channel = int(channel.group(1)) if channel else 0
            timeout = behaviour.session_timeout
            session = f"12345;timeout={timeout}" if timeout else "12345"
            extra = (
                f"Transport: {transport}{self.behaviour.transport_extra}\r\nSession: {session}\r\n"
            )
        elif method == "PLAY":
            extra = "Session: 12345\r\nRange: npt=0.000-\r\n"
        return (
            f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def _authorized(self, method: str, headers: dict[str, str]) -> bool:
        """Whether the request's Digest answer is right (RFC 7616, qop=auth)."""
        given = headers.get("authorization", "")
        if not given.startswith("Digest "):
            return False
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', given[7:]))
        algorithm = self.behaviour.digest or "MD5"
        digest = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5

        def h(text: str) -> str:
            return digest(text.encode()).hexdigest()

        user, password = self.behaviour.credentials
        ha1 = h(f"{user}:cam:{password}")
        ha2 = h(f"{method}:{params.get('uri', '')}")
        nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
        expected = h(f"{ha1}:n0nce:{nc}:{cnonce}:auth:{ha2}")
        return params.get("username") == user and params.get("response") == expected

"""How RTP reaches the native RTSP client: interleaved on the RTSP connection, or over UDP
on a pair of ports per track from `ingest.udp_ports` (RFC 2326 10.12, 12.39).

Both name a track's RTP and RTCP by a channel number (over UDP: which socket), so the
client reads `(channel, bytes)` alike. Over UDP only the camera's own address is heard:
the sockets are open to anyone, the gateway is not.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Protocol

from media_server.ingest.rtsp_session import RtspSession
from media_server.ingest.source import SourceError

#: Kernel receive buffer per RTP socket: a second of a 4 Mbit/s camera while a keep-alive
#: reply is awaited on the RTSP connection.
UDP_BUFFER = 1 << 20


class PortPairs:
    """Even/odd UDP port pairs from a range, shared by every stream of the process. A
    pair is free when both ports bind; a cursor spreads streams over the range."""

    def __init__(self, first: int, last: int) -> None:
        self._first = first + first % 2
        self._last = last
        self._cursor = self._first
        self._lock = threading.Lock()

    def bind(self, host: str) -> tuple[socket.socket, socket.socket]:
        count = max(0, (self._last - self._first + 1) // 2)
        with self._lock:
            start = self._cursor
            for i in range(count):
                port = self._first + ((start - self._first) // 2 + i) % count * 2
                pair = _bind_pair(host, port)
                if pair is not None:
                    self._cursor = port + 2 if port + 2 < self._last else self._first
                    return pair
        raise SourceError(f"no free UDP port pair in {self._first}-{self._last} (ingest.udp_ports)")


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket] | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bound: list[socket.socket] = []
    try:
        for number in (port, port + 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            bound.append(sock)
            sock.bind((host, number))
    except OSError:
        for sock in bound:
            sock.close()
        return None
    with contextlib.suppress(OSError):
        bound[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
    return bound[0], bound[1]


class RtpTransport(Protocol):
    ordered: bool  # whether packets arrive in order (TCP) or may need reordering (UDP)

    def transport_header(self, index: int) -> str:
        """The Transport header to SETUP track `index` with."""
        ...

    def configured(self, index: int, reply: str) -> tuple[int, int]:
        """The (RTP, RTCP) channels of track `index`, given the SETUP reply's Transport."""
        ...

    def receive(self, timeout: float) -> tuple[int, bytes] | None:
        """The next (channel, data), or None when nothing came within `timeout`."""
        ...

    def send(self, channel: int, data: bytes) -> None:
        """Send RTCP on a channel."""
        ...

    def sockets(self) -> list[socket.socket]:
        """Every socket media or the camera's messages come on, made non-blocking: for
        one thread reading many sessions (ingest/reactor.py)."""
        ...

    def take(self, ready: socket.socket) -> list[tuple[int, bytes]]:
        """What the non-blocking `ready` holds now, as (channel, data); never waits."""
        ...

    def close(self) -> None: ...


def _params(transport: str) -> dict[str, str]:
    params = {}
    for part in transport.split(";"):
        name, _, value = part.strip().partition("=")
        params[name.lower()] = value
    return params


def _pair(value: str) -> tuple[int, int] | None:
    first, _, second = value.partition("-")
    if not first.isdigit():
        return None
    return int(first), int(second) if second.isdigit() else int(first) + 1


class Interleaved:
    """RTP and RTCP as `$`-framed data on the RTSP connection."""

    ordered = True

    def __init__(self, session: RtspSession) -> None:
        self._session = session

    def transport_header(self, index: int) -> str:
        return f"RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}"

    def configured(self, index: int, reply: str) -> tuple[int, int]:
        # Cameras may choose other channels than asked.
        return _pair(_params(reply).get("interleaved", "")) or (2 * index, 2 * index + 1)

    def receive(self, timeout: float) -> tuple[int, bytes] | None:
        return self._session.frame()  # the session's own read timeout ends a stall

    def send(self, channel: int, data: bytes) -> None:
        self._session.send_frame(channel, data)

    def sockets(self) -> list[socket.socket]:
        sock = self._session.socket()
        sock.setblocking(False)
        return [sock]

    def take(self, ready: socket.socket) -> list[tuple[int, bytes]]:
        return self._session.frames_ready()

    def close(self) -> None:
        pass


class Udp:
    """RTP and RTCP on UDP port pairs of ours, from the camera's address only."""

    ordered = False

    def __init__(self, session: RtspSession, pairs: PortPairs) -> None:
        self._session = session
        self._pairs = pairs
        local, peer = session.addresses()
        self._local = local
        self._camera = peer
        self._sockets: dict[int, socket.socket] = {}  # channel -> socket
        self._destinations: dict[int, tuple[str, int]] = {}  # RTCP channel -> camera port

    def transport_header(self, index: int) -> str:
        rtp, rtcp = self._pairs.bind(self._local)
        self._sockets[2 * index], self._sockets[2 * index + 1] = rtp, rtcp
        port = rtp.getsockname()[1]
        return f"RTP/AVP;unicast;client_port={port}-{port + 1}"

    def configured(self, index: int, reply: str) -> tuple[int, int]:
        params = _params(reply)
        if "interleaved" in params:
            raise SourceError("the camera answered a UDP SETUP with TCP interleaving")
        server = _pair(params.get("server_port", ""))
        if server is not None:
            self._destinations[2 * index + 1] = (self._camera, server[1])
        return 2 * index, 2 * index + 1

    def receive(self, timeout: float) -> tuple[int, bytes] | None:
        control = self._session.socket()
        watched = [control, *self._sockets.values()]
        readable, _, _ = select.select(watched, [], [], timeout)
        if control in readable:
            self._session.drain()  # the camera said something unasked, or closed
        for channel, sock in self._sockets.items():
            if sock in readable and (got := self._datagram(channel, sock)) is not None:
                return got
        return None

    def _datagram(self, channel: int, sock: socket.socket) -> tuple[int, bytes] | None:
        try:
            data, (host, _port, *_) = sock.recvfrom(65536)
        except OSError:  # nothing there after all (non-blocking), or an ICMP error
            return None
        return (channel, data) if host == self._camera else None  # anyone may send here

    def sockets(self) -> list[socket.socket]:
        control = self._session.socket()
        socks = [control, *self._sockets.values()]
        for sock in socks:
            sock.setblocking(False)
        return socks

    def take(self, ready: socket.socket) -> list[tuple[int, bytes]]:
        if ready is self._session.socket():
            self._session.drain()  # the camera said something unasked, or closed
            return []
        out = []
        for channel, sock in self._sockets.items():
            if sock is ready:
                for _ in range(64):  # what queued since, a bounded batch at a time
                    got = self._datagram(channel, sock)
                    if got is None:
                        break
                    out.append(got)
        return out

    def send(self, channel: int, data: bytes) -> None:
        destination = self._destinations.get(channel)
        sock = self._sockets.get(channel)
        if destination is not None and sock is not None:
            with contextlib.suppress(OSError):
                sock.sendto(data, destination)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

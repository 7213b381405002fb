"""An RTSP/1.0 conversation with one camera (RFC 2326), blocking, for one ingest thread.

Requests carry CSeq, the session and credentials (Basic, or Digest with MD5 or SHA-256 as
the camera offers); every reply is bounded in size and time; a redirect is followed only
to where the source guard allows, for at most MAX_REDIRECTS hops. After PLAY the same
connection carries RTP and RTCP interleaved (`$`, channel, length), which `frame`
returns, replies to keep-alives being read past on the way.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from media_server.ingest.guard import SourceGuard
from media_server.ingest.rtsp_gate import MAX_REDIRECTS
from media_server.ingest.source import PermanentSourceError, SourceError
from media_server.urls import redact_url

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
#: Interleaved frames kept while a reply is awaited (a keep-alive's round trip).
MAX_PENDING = 4096
USER_AGENT = "media_server"
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')


class _Buffer:
    """What the connection gave and was not yet consumed. Consuming from the front moves
    an offset (the rest is not copied for every frame); the space is reclaimed in bulk."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._pos = 0

    def __len__(self) -> int:
        return len(self._data) - self._pos

    def startswith(self, prefix: bytes) -> bool:
        return self._data.startswith(prefix, self._pos)

    def at(self, index: int) -> int:
        return self._data[self._pos + index]

    def peek(self, size: int) -> bytes:
        return bytes(self._data[self._pos : self._pos + size])

    def find(self, marker: bytes) -> int:
        found = self._data.find(marker, self._pos)
        return found - self._pos if found >= 0 else -1

    def take(self, size: int) -> bytes:
        data = bytes(self._data[self._pos : self._pos + size])
        self._pos += size
        if self._pos >= 65536:
            del self._data[: self._pos]
            self._pos = 0
        return data

    def extend(self, data: bytes) -> None:
        self._data += data

    def clear(self) -> None:
        self._data.clear()
        self._pos = 0


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _authorization(
    challenge: str, method: str, uri: str, user: str, password: str, count: int
) -> str:
    scheme, _, rest = challenge.partition(" ")
    if scheme.lower() == "basic":
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    params = {m.group(1).lower(): m.group(2) or m.group(3) for m in _PARAM.finditer(rest)}
    algorithm = params.get("algorithm", "MD5").upper()
    digest = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5

    def h(text: str) -> str:
        return digest(text.encode()).hexdigest()

    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1, ha2 = h(f"{user}:{realm}:{password}"), h(f"{method}:{uri}")
    fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = os.urandom(8).hex(), f"{count:08x}"
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    if "opaque" in params:
        fields += f', opaque="{params["opaque"]}"'
    return f'Digest {fields}, response="{response}", algorithm={algorithm}'


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            value = value.strip()
            return int(value) if value.isdigit() else 0
    return 0


class RtspSession:
    def __init__(self, url: str, guard: SourceGuard, timeout: float) -> None:
        self._guard = guard
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = _Buffer()
        self._pending: list[tuple[int, bytes]] = []  # frames read while awaiting a reply
        self._cseq = 0
        self._challenge: str | None = None
        self._auth_count = 0
        self.session: str | None = None
        self.session_timeout = 60.0
        #: The SDP's aggregate control URL, once described: requests without a URL of
        #: their own (PLAY, GET_PARAMETER, TEARDOWN) go there (RFC 2326 C.1.1).
        self.aggregate: str | None = None
        self.url = url
        parts = urlsplit(url)
        self._user = unquote(parts.username or "")
        self._password = unquote(parts.password or "")

    @property
    def plain_url(self) -> str:
        """The URL as requests name it: without credentials."""
        parts = urlsplit(self.url)
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))

    # -- the connection -------------------------------------------------------------
    def connect(self) -> None:
        up = self._guard.upstream(self.url)  # checked on every attempt and every hop
        try:
            sock = up.connect(self._timeout)
        except (OSError, ssl.SSLError) as exc:
            raise SourceError(f"cannot connect: {exc}") from None
        self._sock = sock
        self._buffer.clear()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def socket(self) -> socket.socket:
        if self._sock is None:
            raise SourceError("not connected")
        return self._sock

    def addresses(self) -> tuple[str, str]:
        """(our address, the camera's) on the connection: where RTP over UDP is taken
        on, and the only address it is taken from."""
        sock = self.socket()
        return str(sock.getsockname()[0]), str(sock.getpeername()[0])

    def drain(self) -> None:
        """Read what the camera sent unasked while RTP comes over UDP (a request of its
        own, say); raise SourceError when it closed the connection. The socket polled
        readable: this never waits."""
        self._recv_ready()
        self._buffer.clear()  # nothing of ours is awaited: replies are read as requests go

    def set_timeout(self, seconds: float) -> None:
        if self._sock is not None:
            self._sock.settimeout(seconds)

    # -- requests -------------------------------------------------------------------
    def request(
        self, method: str, url: str | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        """Send a request and read its reply; authenticate once if asked, and follow a
        checked redirect (DESCRIBE, OPTIONS) by reconnecting to its Location."""
        for _ in range(MAX_REDIRECTS + 1):
            target = url or self.aggregate or self.plain_url
            reply = self._exchange(method, target, headers or {})
            challenge = reply.headers.get("www-authenticate")
            if reply.status == 401 and self._challenge is None and challenge:
                self._challenge = challenge
                reply = self._exchange(method, target, headers or {})
            if 300 <= reply.status < 400 and method in ("OPTIONS", "DESCRIBE"):
                self._redirect(reply.headers.get("location", ""))
                url = None
                continue
            return reply
        raise PermanentSourceError(f"the camera redirected more than {MAX_REDIRECTS} times")

    def _redirect(self, location: str) -> None:
        self.url = self._guard.redirect(self.url, location)
        parts = urlsplit(self.url)
        self._user = unquote(parts.username or self._user)
        self._password = unquote(parts.password or self._password)
        self.close()
        self.connect()

    def _exchange(self, method: str, url: str, headers: dict[str, str]) -> Reply:
        self._send(method, url, headers)
        while True:
            reply = self._read_reply()
            if reply.headers.get("cseq", str(self._cseq)) == str(self._cseq):
                return reply

    def send_request(self, method: str) -> None:
        """Send a request and leave its reply to be read past with the media (a
        keep-alive from a session read without blocking: `frames_ready`)."""
        self._send(method, self.aggregate or self.plain_url, {})

    def _send(self, method: str, url: str, headers: dict[str, str]) -> None:
        if self._sock is None:
            raise SourceError("not connected")
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        if self._challenge and (self._user or self._password):
            self._auth_count += 1
            lines.append(
                "Authorization: "
                + _authorization(
                    self._challenge, method, url, self._user, self._password, self._auth_count
                )
            )
        lines += [f"{name}: {value}" for name, value in headers.items()]
        try:
            self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        except OSError as exc:  # a full send buffer on a non-blocking socket too
            raise SourceError(f"the camera closed the connection ({exc})") from None

    def _read_reply(self) -> Reply:
        """The next reply; interleaved frames on the way are kept for `frame`."""
        while True:
            item = self._parse()
            if item is None:
                self._recv()
            elif isinstance(item, Reply):
                return item
            elif len(self._pending) >= MAX_PENDING:
                raise SourceError("the camera sends media but does not answer")
            else:
                self._pending.append(item)

    # -- interleaved media ----------------------------------------------------------
    def frame(self) -> tuple[int, bytes]:
        """The next interleaved (channel, data), reading past replies to keep-alives."""
        if self._pending:
            return self._pending.pop(0)
        while True:
            item = self._parse()
            if item is None:
                self._recv()
            elif not isinstance(item, Reply):
                return item

    def frames_ready(self) -> list[tuple[int, bytes]]:
        """On a non-blocking socket that polled readable: what it holds, as the whole
        interleaved frames now in the buffer; replies (to keep-alives) are read past.
        Never blocks; the same parser and bounds as a blocking read."""
        out, self._pending = self._pending, []
        self._recv_ready()
        while (item := self._parse()) is not None:
            if not isinstance(item, Reply):
                out.append(item)
        return out

    def _parse(self) -> tuple[int, bytes] | Reply | None:
        """The next whole interleaved frame or reply in the buffer, taken from it; None
        while it is incomplete. The one reader of the connection's bytes, whether the
        caller then waits for more (an ingest thread) or polls again (the reactor)."""
        buffer = self._buffer
        if buffer.startswith(b"$"):
            if len(buffer) < 4:
                return None
            size = buffer.at(2) << 8 | buffer.at(3)
            if len(buffer) < 4 + size:
                return None
            channel = buffer.take(4)[1]
            return channel, buffer.take(size)
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise SourceError("the camera's reply head is too large")
            return None
        text = buffer.peek(end).decode("utf-8", "replace")
        first, *rest = text.split("\r\n")
        match = re.match(r"RTSP/1\.\d (\d{3})", first)
        if match is None:
            raise SourceError(f"the camera's reply is not RTSP: {first[:80]!r}")
        size = _content_length(text)
        if size > MAX_BODY:
            raise SourceError(f"the camera's reply of {size} bytes is too large")
        if len(buffer) < end + 4 + size:
            return None
        buffer.take(end + 4)
        headers = {}
        for line in rest:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        reply = Reply(int(match.group(1)), headers, buffer.take(size))
        if "session" in headers and reply.status < 300:
            value, *params = headers["session"].split(";")
            self.session = value.strip()
            for param in params:
                name, _, seconds = param.strip().partition("=")
                if name.lower() == "timeout" and seconds.isdigit():
                    self.session_timeout = max(5.0, float(seconds))
        return reply

    def _recv_ready(self) -> None:
        """Read what the socket holds, without waiting."""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except OSError as exc:
                raise SourceError(f"the camera's connection failed ({exc})") from None
            if not data:
                raise SourceError("the camera closed the connection")
            self._buffer.extend(data)
            # TLS may hold decrypted bytes the socket will not poll readable for.
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return

    def send_frame(self, channel: int, data: bytes) -> None:
        """Send RTCP (our receiver reports) interleaved on the connection."""
        if self._sock is None:
            return
        try:
            self._sock.sendall(b"$" + bytes([channel]) + len(data).to_bytes(2, "big") + data)
        except OSError as exc:
            raise SourceError(f"the camera closed the connection ({exc})") from None

    # -- reads ---------------------------------------------------------------------
    def _recv(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            raise SourceError("the camera sent nothing in time") from None
        except OSError as exc:
            raise SourceError(f"the camera's connection failed ({exc})") from None
        if not data:
            raise SourceError("the camera closed the connection")
        self._buffer.extend(data)

    def shown(self) -> str:
        return redact_url(self.url)

"""The one connection FFmpeg's RTSP client gets to a camera: the gateway's own.

FFmpeg follows an RTSP redirect (3xx + Location) to any host without asking, and takes a
camera's `Transport: ...;source=` as where to send its UDP, so a camera (or whoever
answers in its name) could make the gateway contact any address. The source guard cannot
see inside FFmpeg; so FFmpeg is given `rtsp://127.0.0.1:<gate>/...` and the gate makes
the connection to the address the guard checked (TLS for rtsps, with the camera's name
for SNI: pinned like plain RTSP), and passes the conversation through, reading the
camera's replies until PLAY:

- a redirect is not passed on: FFmpeg gets `502` and fails; the gate keeps the Location,
  which RtspSource checks with the guard before following (at most MAX_REDIRECTS hops);
- a SETUP reply's Transport is pinned: `source=` is the checked camera address, and a
  multicast transport is refused (`461`);
- every reply head and body is bounded in size, and the handshake in time.

After PLAY the gate only copies bytes (RTP interleaved over TCP, keep-alives), until
either side closes or the source stops it.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass

#: The most a reply head or body may be before the camera counts as broken.
MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024
MAX_REDIRECTS = 3
CHUNK = 64 * 1024

_STATUS = re.compile(rb"^RTSP/1\.\d (\d{3})")
_HEADER = re.compile(rb"(?im)^([A-Za-z-]+):[ \t]*(.*?)\r?$")
_SOURCE = re.compile(rb"(?i);\s*source=[^;\r\n]*")


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where the gate connects: the checked address, and the name for TLS (rtsps)."""

    address: str
    port: int
    tls_name: str | None  # None: plain RTSP

    def connect(self, timeout: float) -> socket.socket:
        """A connection to the checked address; for rtsps, TLS as FFmpeg's own rtsps
        does it: encrypted, the certificate not verified (cameras carry self-signed
        ones), the name given for SNI. What is pinned is the address."""
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((self.address, self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls_name is None:
                return sock
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context.wrap_socket(sock, server_hostname=self.tls_name)
        except BaseException:
            sock.close()
            raise


class Gate:
    """Accepts FFmpeg's one connection on 127.0.0.1 and joins it to the camera's."""

    def __init__(self, upstream: Upstream, timeout: float) -> None:
        self._upstream = upstream
        self._timeout = timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self.port: int = self._listener.getsockname()[1]
        #: Where the camera redirected, if it did (the source decides whether to follow).
        self.redirect: str | None = None
        #: Why the gate ended the conversation, if it did.
        self.refused: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtsp-gate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(2)

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        client = camera = None
        try:
            self._listener.settimeout(self._timeout)
            client, _ = self._listener.accept()
            self._listener.close()
            camera = self._upstream.connect(self._timeout)
            _Conversation(client, camera, self, self._stop, self._timeout).run()
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            if self.refused is None and not self._stop.is_set():
                self.refused = f"camera connection failed: {exc}"
        finally:
            for sock in (client, camera):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


class _Conversation:
    def __init__(
        self,
        client: socket.socket,
        camera: socket.socket,
        gate: Gate,
        stop: threading.Event,
        timeout: float,
    ) -> None:
        self._client = client
        self._camera = camera
        self._gate = gate
        self._stop = stop
        self._deadline = time.monotonic() + 4 * timeout  # the whole handshake, to PLAY
        self._methods: dict[bytes, bytes] = {}  # CSeq -> method, of FFmpeg's requests
        self._requests = b""  # FFmpeg's unparsed request text (until PLAY)
        self._replies = b""  # the camera's unparsed reply text (until PLAY)
        self._playing = False

    def run(self) -> None:
        for sock in (self._client, self._camera):
            sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(self._client, selectors.EVENT_READ, self._from_client)
            selector.register(self._camera, selectors.EVENT_READ, self._from_camera)
            while not self._stop.is_set():
                if not self._playing and time.monotonic() > self._deadline:
                    self._gate.refused = "the camera did not reach PLAY in time"
                    return
                ready = selector.select(0.2)
                pending = isinstance(self._camera, ssl.SSLSocket) and self._camera.pending()
                if pending:
                    ready.append((selector.get_key(self._camera), selectors.EVENT_READ))
                for key, _ in ready:
                    if not key.data():
                        return

    def _read(self, sock: socket.socket) -> bytes | None:
        try:
            return sock.recv(CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None  # nothing yet: not the end
        except OSError:
            return b""

    def _from_client(self) -> bool:
        data = self._read(self._client)
        if data is None:
            return True
        if not data:
            return False
        if not self._playing:
            self._note_requests(data)
        self._send(self._camera, data)
        return True

    def _from_camera(self) -> bool:
        data = self._read(self._camera)
        if data is None:
            return True
        if not data:
            return False
        if self._playing:
            self._send(self._client, data)
            return True
        self._replies += data
        return self._pass_replies()

    def _send(self, sock: socket.socket, data: bytes) -> None:
        sock.setblocking(True)
        try:
            sock.settimeout(5)
            sock.sendall(data)
        finally:
            sock.setblocking(False)

    # -- before PLAY: the conversation read ------------------------------------------------
    def _note_requests(self, data: bytes) -> None:
        self._requests = (self._requests + data)[-MAX_HEAD:]
        while b"\r\n\r\n" in self._requests:
            head, _, self._requests = self._requests.partition(b"\r\n\r\n")
            method = head.split(b" ", 1)[0].upper()
            headers = {m.group(1).lower(): m.group(2) for m in _HEADER.finditer(head)}
            cseq = headers.get(b"cseq")
            if cseq is not None:
                self._methods[cseq.strip()] = method
            length = headers.get(b"content-length", b"0").strip()
            skip = int(length) if length.isdigit() else 0
            self._requests = self._requests[skip:]

    def _pass_replies(self) -> bool:
        """Pass on each whole reply, checked; False to end the conversation."""
        while not self._playing:
            end = self._replies.find(b"\r\n\r\n")
            if end < 0:
                if len(self._replies) > MAX_HEAD:
                    self._gate.refused = "the camera's reply head is too large"
                    return False
                return True
            head = self._replies[: end + 4]
            headers = {m.group(1).lower(): m.group(2) for m in _HEADER.finditer(head)}
            length = headers.get(b"content-length", b"0").strip()
            size = int(length) if length.isdigit() else 0
            if size > MAX_BODY:
                self._gate.refused = f"the camera's reply body of {size} bytes is too large"
                return False
            if len(self._replies) < end + 4 + size:
                return True  # the body is still coming
            body = self._replies[end + 4 : end + 4 + size]
            self._replies = self._replies[end + 4 + size :]
            reply = self._check(head, headers, body)
            if reply is None:
                return False
            self._send(self._client, reply)
        if self._replies:  # media already following the PLAY reply
            self._send(self._client, self._replies)
            self._replies = b""
        return True

    def _check(self, head: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes | None:
        status = _STATUS.match(head)
        if status is None:
            self._gate.refused = "the camera's reply is not RTSP"
            return None
        code = int(status.group(1))
        cseq = headers.get(b"cseq", b"").strip()
        method = self._methods.get(cseq, b"")
        if 300 <= code < 400:
            location = headers.get(b"location", b"").strip()
            self._gate.redirect = location.decode("utf-8", "replace")[:2048] or None
            return _reply(502, cseq, "redirect not followed here")  # FFmpeg must not
        if method == b"SETUP" and code == 200:
            transport = headers.get(b"transport", b"")
            if b"multicast" in transport.lower():
                return _reply(461, cseq, "multicast transport refused")
            pinned = _SOURCE.sub(b"", transport) + b";source=" + self._upstream_address()
            head = head.replace(transport, pinned, 1)
        if method == b"PLAY" and code == 200:
            self._playing = True
        return head + body

    def _upstream_address(self) -> bytes:
        peer = self._camera.getpeername()
        return str(peer[0]).encode()


def _reply(code: int, cseq: bytes, reason: str) -> bytes:
    return b"RTSP/1.0 %d %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n" % (
        code,
        reason.encode(),
        cseq or b"0",
    )

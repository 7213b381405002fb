"""A TCP front for a cluster, as a load balancer would be: each connection goes to the
first backend that accepts it, so a dead node's clients land on a live one when they
reconnect. Bytes are piped as they are (HTTP and WebSocket alike). Given a TLS context it
terminates TLS, as a camera's RTSPS does. Standard library only.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator

HOST = "127.0.0.1"


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        if self.server.tls is not None:
            try:
                self.request = self.server.tls.wrap_socket(self.request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        upstream = None
        for port in self.server.backends:
            with contextlib.suppress(OSError):
                upstream = socket.create_connection((HOST, port), timeout=2)
                break
        if upstream is None:
            return
        upstream.settimeout(None)
        with upstream:
            back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            back.start()
            _pipe(self.request, upstream)
            back.join(5)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, backends: list[int], tls: ssl.SSLContext | None) -> None:
        super().__init__((HOST, 0), _Handler)
        self.backends = backends
        self.tls = tls


@contextlib.contextmanager
def run_front(backends: list[int], tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve in a thread; yields the front's base URL. `backends` are ports, in order of
    preference, and may be changed while it runs."""
    server = _Server(backends, tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

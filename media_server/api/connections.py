"""Every connection to the gateway, watched before aiohttp reads it.

aiohttp gives a request as long as it likes to arrive: a client that sends its headers a
byte at a time, or announces a body it never sends, holds a connection (and a handler)
for ever. Here each request must arrive whole, head and body, within
`http.request_timeout` of its first byte (the first request: of connecting), or its
connection is closed; between requests aiohttp's keep-alive timeout applies; and one client
address holds at most `limits.connections_per_client` connections (not counted behind
`http.trusted_proxies`, where every client has the proxy's address). A WebSocket stops
being watched once upgraded: its own heartbeats and message limits take over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl as ssl_module
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web

log = logging.getLogger(__name__)

#: aiohttp's own bounds on a request line or header, and on the headers of a request:
#: past them the gateway answers (with its JSON error) before aiohttp sees the request.
MAX_LINE = 8190
MAX_HEADERS = 128
_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")
_CHUNKED = re.compile(rb"(?im)^transfer-encoding:.*chunked")
_UPGRADE = re.compile(rb"(?im)^upgrade:\s*websocket")


def _answer(status: int, code: str, message: str) -> bytes:
    """A whole HTTP response with the API's error body, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    reason = HTTPStatus(status).phrase.encode()
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % (status, reason, len(body))
    ) + body


class Watch(asyncio.Protocol):
    """One connection: passes everything to aiohttp's handler, and times each request
    from its first byte until its head and body have arrived."""

    def __init__(self, gate: Gate, inner: asyncio.Protocol) -> None:
        self._gate = gate
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._client: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._head = b""  # the request head so far, until it is whole
        self._body: int | None = None  # body bytes still to come (None: reading a head)
        self._chunked = b""  # the tail of a chunked body, to find its end
        self._watching = True
        self._refused = False

    # -- the connection -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are no asyncio.Transport
        self._transport = transport
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if peer else "unknown"
        if not self._gate.admit(client):
            limit = f"a client may hold {self._gate.per_client} connections"
            transport.write(_answer(429, "too-many-connections", limit))
            transport.close()
            self._watching = False
            return
        self._client = client
        self._start_clock()  # the first request is due from the moment of connecting
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        if self._client is not None:
            self._gate.release(self._client)
            self._client = None
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._client is None:
            return
        if self._watching:
            data = self._feed(data)
        if data:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._client is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def __getattr__(self, name: str) -> Any:  # aiohttp's own attributes of its handler
        return getattr(self._inner, name)

    # -- requests, as they arrive --------------------------------------------------------
    def _feed(self, data: bytes) -> bytes:
        """Pass on what has arrived of requests: a head once it is whole and sound, body
        bytes as they come. Returns what follows once the connection is no longer
        watched (a WebSocket's frames)."""
        while data and self._watching:
            if self._deadline is None:
                self._start_clock()
            if self._body is None:
                head, data = self._take_head(data)
                if head:
                    self._inner.data_received(head)
            else:
                body, data = self._take_body(data)
                self._inner.data_received(body)
        return data if not self._refused else b""

    def _take_head(self, data: bytes) -> tuple[bytes, bytes]:
        """(the head, once whole, and what follows it) or (b"", b"") while it is not."""
        seen = len(self._head)
        self._head += data
        end = self._head.find(b"\r\n\r\n", max(0, seen - 3))
        if end < 0:
            lines = self._head.split(b"\r\n")
            if len(lines[-1]) > MAX_LINE or len(lines) > MAX_HEADERS + 1:
                self._refuse("the request line or a header is too long, or too many headers")
            return b"", b""
        head, rest = self._head[: end + 4], self._head[end + 4 :]
        self._head = b""
        lines = head[:-4].split(b"\r\n")
        if any(len(line) > MAX_LINE for line in lines) or len(lines) > MAX_HEADERS + 1:
            self._refuse("the request line or a header is too long, or too many headers")
            return b"", b""
        target = lines[0].split(b" ")
        if len(target) > 1 and target[1] == b"*":
            self._refuse("the request target '*' is not served here")
            return b"", b""
        if _UPGRADE.search(head):
            self._watching = False  # a WebSocket from here on: its own limits apply
            self._stop_clock()
            return head, rest
        if _CHUNKED.search(head):
            self._body, self._chunked = -1, b""
        else:
            length = _LENGTH.search(head)
            self._body = int(length.group(1)) if length else 0
        if self._body == 0:
            self._done()
        return head, rest

    def _take_body(self, data: bytes) -> tuple[bytes, bytes]:
        """(the bytes of the body among `data`, what follows the body)."""
        assert self._body is not None
        if self._body < 0:  # chunked: whole once the last (empty) chunk has come
            tail = self._chunked + data
            if tail.startswith(b"0\r\n\r\n"):
                end = 5
            else:
                found = tail.find(b"\r\n0\r\n\r\n")
                end = found + 7 if found >= 0 else -1
            if end < 0:
                self._chunked = tail[-7:] if len(tail) > 7 else b"\r\n" + tail
                return data, b""
            self._done()
            cut = end - (len(tail) - len(data))  # where the body ends within `data`
            return data[:cut], data[cut:]
        if len(data) < self._body:
            self._body -= len(data)
            return data, b""
        body, rest = data[: self._body], data[self._body :]
        self._done()
        return body, rest

    def _refuse(self, why: str) -> None:
        """Answer 400 ourselves (aiohttp would log a traceback and echo the input back)."""
        self._watching = False
        self._refused = True
        self._stop_clock()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_answer(400, "bad-request", why))
            self._transport.close()

    def _done(self) -> None:
        """The request has arrived: the next one's clock starts at its first byte."""
        self._body = None
        self._stop_clock()

    def _start_clock(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._gate.request_timeout, self._too_slow)

    def _stop_clock(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            log.info(
                "closing a connection from %s: its request did not arrive within %g s",
                self._client,
                self._gate.request_timeout,
            )
            self._transport.abort()


class Gate:
    """Makes the watched protocol for each connection, and counts them by client."""

    def __init__(
        self,
        server: Callable[[], asyncio.Protocol],
        request_timeout: float,
        per_client: int,
        count_clients: bool,
    ) -> None:
        self._server = server
        self.request_timeout = request_timeout
        self.per_client = per_client
        self._count = count_clients
        self._open: Counter[str] = Counter()

    def __call__(self) -> Watch:
        return Watch(self, self._server())

    def admit(self, client: str) -> bool:
        if self._count and self._open[client] >= self.per_client:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


async def listen(
    runner: web.AppRunner,
    host: str,
    port: int,
    ssl: ssl_module.SSLContext | None,
    request_timeout: float,
    per_client: int,
    behind_proxy: bool,
) -> asyncio.Server:
    """Listen with the runner's aiohttp server behind the gate (close the returned server
    before the runner's cleanup, as a site would be)."""
    assert runner.server is not None, "set the runner up first"
    factory = Gate(runner.server, request_timeout, per_client, count_clients=not behind_proxy)
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host, port, ssl=ssl, reuse_address=True)

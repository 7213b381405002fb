"""WebSocket signaling: offer -> answer, trickled candidates, errors as messages.

Or MSE instead of WebRTC: ``{"type": "mse"}`` (with ``"opus": false`` from a client that
cannot play Opus in MP4, ``"hevc": true`` from one that plays H.265 as ``hvc1``: else an
H.265 stream comes as its H.264 transcode) is answered ``{"type": "mse", "codecs":
"<RFC 6381>"}``, then binary messages: the init segment, then fragments of the stream's
fMP4, from its cached keyframe on (api/mse.py). A new picture size sends a new codecs
message and init segment.

``{"type": "ping"}`` is answered ``{"type": "pong"}`` (with the ping's ``id`` echoed), at
any time: players and the perf harness measure the signaling round trip with it.

An error ends nothing but the request that caused it: the socket stays open and other
viewers never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from media_server.api.access import client_key, require_viewer
from media_server.api.context import Gateway, gateway
from media_server.api.errors import ApiError, error_response
from media_server.api.mse import MseSession, open_mse
from media_server.runtime.jsoncodec import JsonCodec
from media_server.streams.stream import Stream
from media_server.tokenbucket import TokenBucket
from media_server.webrtc.session import SignalingError, ViewerSession

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_MESSAGE_BYTES = 128 * 1024


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def _pong(ping: dict[str, Any]) -> dict[str, Any]:
    pong: dict[str, Any] = {"type": "pong"}
    echo = ping.get("id")
    number = isinstance(echo, (int, float)) and not isinstance(echo, bool)
    if number or (isinstance(echo, str) and len(echo) <= 64):
        pong["id"] = echo  # anything else (objects, long strings) is not echoed
    return pong


class _Conversation:
    """One signaling socket: at most one viewer session, messages within a rate."""

    def __init__(self, gw: Gateway, stream_id: str, client: str, ws: web.WebSocketResponse) -> None:
        self.gw = gw
        self.ws = ws
        self.stream_id = stream_id
        self.client = client
        self.session: ViewerSession | None = None
        self.mse: MseSession | None = None
        self.watcher: asyncio.Task[None] | None = None
        limits = gw.settings.limits
        self._bucket = TokenBucket(limits.ws_messages_per_second, limits.ws_messages_burst)

    async def handle(self, raw: str) -> dict[str, Any] | None:
        wait = self._bucket.take()
        if wait:
            return _error("rate-limited", f"too many messages; wait {max(wait, 0.1):.1f} s")
        try:
            message = self.gw.json.loads(raw)
        except (ValueError, RecursionError):
            return _error("invalid-json", "message is not valid JSON (or nested too deeply)")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return _error("invalid-message", "message must be an object with a string 'type'")
        kind = message["type"]
        if kind == "ping":
            return _pong(message)
        try:
            if kind == "offer":
                return await self._offer(message)
            if kind == "candidate":
                return await self._candidate(message)
            if kind == "mse":
                await self._mse(message)  # its answer goes out with its first segment
                return None
        except SignalingError as exc:
            return _error(exc.code, exc.message)
        except ApiError as exc:  # the per-client offer rate
            return _error(exc.code, exc.message)
        return _error("unknown-type", f"unknown message type '{kind[:40]}'")

    @property
    def negotiated(self) -> bool:
        return self.session is not None or self.mse is not None

    async def _mse(self, message: dict[str, Any]) -> None:
        if self.negotiated:
            raise SignalingError("invalid-state", "this socket has negotiated already")
        opus = message.get("opus", True)
        hevc = message.get("hevc", False)
        if not isinstance(opus, bool) or not isinstance(hevc, bool):
            raise SignalingError("invalid-message", "'opus' and 'hevc' must be true or false")
        stream = self._stream()
        self.gw.offers.check(self.client)
        self.mse = await open_mse(self.gw, stream, self.ws, opus, hevc)

    def _stream(self) -> Stream:
        """The stream this socket is for (a viewer asks for it: WebRTC or MSE)."""
        stream = self.gw.streams.get(self.stream_id)
        if stream is None:
            raise SignalingError("stream-not-found", f"no stream '{self.stream_id}'")
        return stream

    async def _offer(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.negotiated:
            raise SignalingError("invalid-state", "this socket has negotiated already")
        stream = self._stream()
        sdp = message.get("sdp")
        if not isinstance(sdp, str):
            raise SignalingError("invalid-sdp", "offer needs an 'sdp' string")
        self.gw.offers.check(self.client)
        started = time.perf_counter()
        self.session, answer = await self.gw.sessions.open(stream, sdp, "ws", self.client)
        self.gw.metrics.signaling_seconds.labels("ws").observe(time.perf_counter() - started)
        # The media path this viewer gets (a canary may differ from the stream's default).
        return {"type": "answer", "sdp": answer, "media_transport": self.session.transport}

    async def _candidate(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if self.session is None:
            raise SignalingError("invalid-state", "send an offer before candidates")
        candidate = message.get("candidate")
        if candidate is not None and not isinstance(candidate, dict):
            raise SignalingError("invalid-candidate", "candidate must be an object or null")
        await self.session.add_candidate(candidate)
        return None

    def watch(self, ws: web.WebSocketResponse) -> None:
        """Tell the viewer when the gateway ends its session (stream removed, peer failed),
        so a player can reconnect instead of staring at a frozen picture."""
        session = self.session
        assert session is not None

        async def wait() -> None:
            await session.closed.wait()
            if not ws.closed:
                await _send(ws, _error("session-closed", session.close_reason), self.gw.json)

        self.watcher = asyncio.ensure_future(wait())

    async def close(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        if self.mse is not None:
            self.mse.close()
        if self.session is not None:
            await self.gw.sessions.close(self.session, "signaling socket closed")


async def _send(ws: web.WebSocketResponse, message: dict[str, Any], codec: JsonCodec) -> None:
    """Send unless the viewer already left (it may vanish right after its offer)."""
    if ws.closed:
        return
    with contextlib.suppress(ConnectionError):
        await ws.send_str(codec.dumps(message))


@routes.get("/ws/{stream_id}")
async def websocket(request: web.Request) -> web.StreamResponse:
    gw = gateway(request)
    stream_id = request.match_info["stream_id"]
    require_viewer(request, stream_id)  # before the upgrade, so it can answer 401/403
    limits = gw.settings.limits
    if len(gw.websockets) >= limits.websockets:
        return error_response(503, "capacity", f"the gateway holds {limits.websockets} sockets")
    client = client_key(request)
    if gw.socket_clients[client] >= limits.websockets_per_client:
        limit = limits.websockets_per_client
        return error_response(429, "too-many-sockets", f"a client may hold {limit} sockets")
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    gw.websockets.add(ws)
    gw.socket_clients[client] += 1
    conversation = _Conversation(gw, stream_id, client, ws)
    if conversation.stream_id not in gw.streams:
        await _send(
            ws, _error("stream-not-found", f"no stream '{conversation.stream_id}'"), gw.json
        )
    # A socket that never offers would hold a place for ever: it gets the connect timeout.
    deadline = asyncio.get_running_loop().time() + gw.settings.webrtc.connect_timeout
    try:
        while not ws.closed:
            left = None
            if not conversation.negotiated:
                left = deadline - asyncio.get_running_loop().time()
            try:
                msg = await ws.receive(timeout=left if left is None else max(left, 0.001))
            except TimeoutError:
                await _send(ws, _error("no-offer", "no offer within the connect timeout"), gw.json)
                await ws.close(code=WSCloseCode.POLICY_VIOLATION)
                break
            if msg.type == WSMsgType.TEXT:
                reply = await conversation.handle(msg.data)
                if reply is not None:
                    await _send(ws, reply, gw.json)
                if conversation.session is not None and conversation.watcher is None:
                    conversation.watch(ws)
            elif msg.type == WSMsgType.BINARY:
                await _send(
                    ws, _error("invalid-message", "binary frames are not accepted"), gw.json
                )
            elif msg.type in (
                WSMsgType.CLOSE,
                WSMsgType.CLOSING,
                WSMsgType.CLOSED,
                WSMsgType.ERROR,
            ):
                break
    except Exception:
        # After the upgrade an HTTP error page would corrupt the socket: say so and close.
        log.exception("signaling error on stream %s", stream_id)
        await _send(ws, _error("internal", "internal error; the session was closed"), gw.json)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR)
    finally:
        gw.websockets.discard(ws)
        gw.socket_clients[client] -= 1
        if gw.socket_clients[client] <= 0:
            del gw.socket_clients[client]
        await conversation.close()
    return ws

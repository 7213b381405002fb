"""MSE over the signaling WebSocket: a viewer's fMP4, sent as binary messages.

The viewer is a consumer of the stream (kind `mse`: it holds an on-demand camera open) and
a reader of the stream's one muxer. Its messages go out from a task of its own, so a
viewer whose socket drains slowly holds up only that task; its queue (`egress.mse`)
drops to the next keyframe meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from aiohttp import web

from media_server.api.context import Gateway
from media_server.egress.mse import MseViewer
from media_server.egress.muxer import Init, Muxer, transcoded
from media_server.streams.consumer import Consumer
from media_server.streams.stream import Stream
from media_server.webrtc.session import SignalingError

log = logging.getLogger(__name__)

#: How long a viewer waits for a stream's first keyframe (an on-demand camera opening).
START_TIMEOUT = 15.0
#: The kernel's send buffer for an MSE socket, as a share of the viewer's queue (the
#: kernel doubles it). Left to autotuning it grows to megabytes, seconds of video a
#: stalled viewer would hold before its queue noticed; by default it is 512 KiB, still a
#: full second of an 8 Mbit/s stream.
SEND_BUFFER_SHARE = 8


class MseSession:
    def __init__(
        self, gw: Gateway, ws: web.WebSocketResponse, consumer: Consumer, viewer: MseViewer
    ) -> None:
        self.gw = gw
        self.ws = ws
        self.consumer = consumer
        self.viewer = viewer
        self.opened = time.monotonic()
        self._task = asyncio.ensure_future(self._send())

    @property
    def stream_id(self) -> str:
        return self.consumer.stream.id

    async def _send(self) -> None:
        gw, viewer, ws = self.gw, self.viewer, self.ws
        first = True
        try:
            while (message := await viewer.next()) is not None:
                if isinstance(message, Init):
                    audio = viewer.takes_audio(message)
                    reply = {"type": "mse", "codecs": message.codecs(audio)}
                    await ws.send_str(gw.json.dumps(reply))
                    await ws.send_bytes(message.segment(audio))
                    continue
                await ws.send_bytes(message.data)
                gw.muxers.count(self.stream_id, "mse", len(message.data))
                if first and message.video:
                    first = False
                    seconds = time.monotonic() - self.opened
                    gw.metrics.first_media_seconds.labels("mse").observe(seconds)
            error = {"type": "error", "code": "session-closed", "message": "the stream ended"}
            await ws.send_str(gw.json.dumps(error))
        except (ConnectionError, asyncio.CancelledError):
            pass

    def close(self) -> None:
        self._task.cancel()
        self.viewer.close()
        self.gw.muxers.release(self.viewer.muxer)
        self.consumer.close()


def _admit(gw: Gateway, stream: Stream) -> None:
    """MSE viewers count against the same limits as WebRTC viewers."""
    limits = gw.settings.limits
    if not gw.sessions.accepting:
        raise SignalingError("shutting-down", "the gateway is shutting down")
    if len(gw.sessions) + sum(s.consumers["mse"] for s in gw.streams.all()) >= limits.viewers:
        raise SignalingError("node-full", f"the gateway serves at most {limits.viewers} viewers")
    watching = stream.consumers["viewer"] + stream.consumers["mse"]
    if watching >= limits.viewers_per_stream:
        limit = limits.viewers_per_stream
        raise SignalingError("stream-full", f"stream has its maximum of {limit} viewers")


async def open_mse(
    gw: Gateway, stream: Stream, ws: web.WebSocketResponse, opus: bool, hevc: bool = False
) -> MseSession:
    """Start a viewer at the stream's cached keyframe; its messages follow on `ws`. An
    H.265 stream comes as it is to a viewer that plays it (`hevc`), else transcoded."""
    _admit(gw, stream)
    consumer = stream.attach("mse")
    muxer: Muxer | None = None
    try:
        await stream.wait_info(START_TIMEOUT)  # which muxer depends on the codec
        if transcoded(stream, hevc):
            consumer.take_transcode()
        muxer = gw.muxers.acquire(stream, hevc)
        await asyncio.wait_for(muxer.ready.wait(), START_TIMEOUT)
    except BaseException as exc:
        if muxer is not None:
            gw.muxers.release(muxer)
        consumer.close()
        if isinstance(exc, TimeoutError):
            raise SignalingError(
                "not-ready", f"stream '{stream.id}' sent no keyframe in {START_TIMEOUT:.0f} s"
            ) from None
        raise
    sock = ws.get_extra_info("socket")  # asyncio's TransportSocket
    if sock is not None:
        size = gw.settings.mse.viewer_bytes // SEND_BUFFER_SHARE
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    viewer = MseViewer(muxer, opus, gw.settings.mse.viewer_bytes)
    viewer.start()
    gw.metrics.sessions.labels("ws", "mse").inc()
    log.info("MSE viewer of stream %s", stream.id, extra={"stream_id": stream.id})
    return MseSession(gw, ws, consumer, viewer)

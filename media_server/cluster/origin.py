"""The origin's end of the internal link: a stream's units, sent to an edge node.

An edge is one consumer of the stream here, of kind relay (an on-demand camera opens for it), and
its units come from the same bounded hub queue as any viewer's: an edge that cannot keep
up loses units up to the next keyframe and never slows the stream or anyone else. An
edge that asks for an H.265 stream's H.264 transcode gets it too, from a queue of its
own, while it asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, web

from media_server.cluster import wire
from media_server.model.media import AccessUnit, SourceInfo
from media_server.streams.fanout import StreamEnded, Subscriber
from media_server.streams.stream import Stream

log = logging.getLogger(__name__)

#: How often a quiet link checks that this node still holds the stream's lease.
FENCE_CHECK = 0.5


async def serve(ws: web.WebSocketResponse, stream: Stream, fenced: Callable[[], bool]) -> None:
    """Relay `stream` on `ws` until the edge leaves, the stream goes, or `fenced` says
    this node no longer holds the lease the edge was told of."""
    consumer = stream.attach("relay")
    video = consumer.video("units")
    audio = consumer.audio()
    sending = asyncio.Lock()
    described: list[SourceInfo | None] = [None]

    async def send(unit: AccessUnit, kind: int) -> None:
        async with sending:
            info, codec = stream.info, stream.video_codec
            if info is not None and codec is not None and info is not described[0]:
                await ws.send_str(wire.describe(info, codec))
                described[0] = info
            if described[0] is not None:
                await ws.send_bytes(wire.pack(kind, unit.keyframe, unit.pts, unit.data))

    async def forward(sub: Subscriber, kind: int) -> None:
        while not fenced():
            try:
                item = await asyncio.wait_for(sub.get(), FENCE_CHECK)
            except TimeoutError:
                continue
            if isinstance(item, AccessUnit):
                await send(item, kind)

    transcoding: list[tuple[Subscriber, asyncio.Task[None]]] = []

    def ask(wanted: bool) -> None:
        """The edge wants the H.264 transcode (its first H.264 viewer came), or no more."""
        if wanted and not transcoding:
            sub = consumer.transcode()
            transcoding.append((sub, asyncio.ensure_future(forward(sub, wire.TRANSCODE))))
        elif not wanted and transcoding:
            sub, task = transcoding.pop()
            consumer.drop(sub)
            task.cancel()

    async def drain() -> None:
        """What the edge says: whether it wants the transcode. Ends when it goes."""
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                ask(wire.parse_ask(message.data))

    tasks = [
        asyncio.ensure_future(forward(video, wire.VIDEO)),
        asyncio.ensure_future(forward(audio, wire.AUDIO)),
        asyncio.ensure_future(drain()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for _, task in transcoding:
            task.cancel()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        consumer.close()
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, (StreamEnded, ConnectionError)):
            log.error(
                "relay of stream %s failed",
                stream.id,
                exc_info=result,
                extra={"stream_id": stream.id},
            )
    with contextlib.suppress(ConnectionError):
        if fenced():
            await ws.close(code=wire.NOT_ORIGIN, message=b"this node no longer ingests the stream")
        else:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"stream ended")
    log.info("relay of stream %s to an edge ended", stream.id, extra={"stream_id": stream.id})

"""JPEG of a stream's latest picture, for thumbnails and `snapshot.jpg`.

The picture is decoded from the hub's GOP cache (the last keyframe and what followed),
off the event loop. Requests within `max_age` of the last snapshot get it again; requests
while one is being made wait for that one: a hundred thumbnails asking at once cost one
decode. A process-wide semaphore keeps snapshots of many streams from taking every core.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from fractions import Fraction
from typing import TYPE_CHECKING, cast

import av
from av.video.codeccontext import VideoCodecContext

from media_server.model.media import AccessUnit
from media_server.streams.fanout import Picture

if TYPE_CHECKING:
    from media_server.streams.stream import Stream

#: Snapshots decoded at once across all streams, per event loop.
DECODING_AT_ONCE = 2
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _decoding_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(DECODING_AT_ONCE)
    return slots


class NoPicture(Exception):
    """Nothing to make a picture from yet (no keyframe since the stream (re)started)."""


def _decode_last(units: list[AccessUnit], codec: str) -> av.VideoFrame:
    decoder = cast(VideoCodecContext, av.CodecContext.create(codec, "r"))
    last = None
    for unit in units:
        try:
            for frame in decoder.decode(av.Packet(unit.data)):
                last = frame
        except av.FFmpegError:
            continue  # a damaged unit: the ones after it may still decode
    try:
        for frame in decoder.decode(None):
            last = frame
    except av.FFmpegError:
        pass
    if not isinstance(last, av.VideoFrame):
        raise NoPicture("the cached pictures did not decode")
    return last


def _jpeg(picture: Picture, codec: str) -> bytes:
    """A JPEG of the picture: a decoded frame, or the units (in `codec`: h264, hevc)
    since a keyframe, decoded."""
    assert picture is not None
    frame = picture if isinstance(picture, av.VideoFrame) else _decode_last(picture, codec)
    width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, VideoCodecContext)
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"q:v": "4"}
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    packets = encoder.encode(image) + encoder.encode(None)
    return b"".join(bytes(p) for p in packets)


class Snapshots:
    """One stream's snapshot: cached for `max_age` seconds, made once however many ask."""

    def __init__(self, stream: Stream, max_age: float = 1.0) -> None:
        self._stream = stream
        self._max_age = max_age
        self._cached: tuple[float, bytes] | None = None
        self._making: asyncio.Future[bytes] | None = None

    async def jpeg(self) -> bytes:
        if self._cached and time.monotonic() - self._cached[0] < self._max_age:
            return self._cached[1]
        if self._making is None:
            self._making = asyncio.ensure_future(self._make())
        making = self._making
        try:
            return await asyncio.shield(making)  # one caller leaving cancels nobody else
        finally:
            if making.done() and self._making is making:
                self._making = None

    async def _make(self) -> bytes:
        consumer = self._stream.attach("snapshot")  # reads what the stream has: no hold
        try:
            picture = consumer.picture()
            codec = consumer.video_codec or "h264"
        finally:
            consumer.close()
        if picture is None:
            raise NoPicture("no picture yet: the stream has not sent a keyframe")
        async with _decoding_slots():
            data = await asyncio.to_thread(_jpeg, picture, codec)
        self._cached = (time.monotonic(), data)
        return data

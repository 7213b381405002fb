"""The track a viewer's aiortc sender pulls from: its consumer's queue, as aiortc wants it.

An `av.Packet` goes to aiortc's H.264 packetizer untouched (passthrough); an
`av.VideoFrame` is encoded by the sender (transcode). Subscribing waits for the first
`recv()`, so a viewer whose transport never comes up is never fed. Each `recv()` first
tells the sender the moment its last frame stands for, so its sender reports map to the
stream's clock as the engine's do (model/clock.py: the camera's, where it says).
"""

from __future__ import annotations

from collections.abc import Callable

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from media_server import aiortc_internals as internals
from media_server.model.media import AccessUnit, Packet
from media_server.streams.consumer import Consumer
from media_server.streams.fanout import StreamEnded, Subscriber, Wants


class HubTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, consumer: Consumer, wants: Wants = "any", kind: str = "video") -> None:
        super().__init__()
        self.kind = kind
        self._consumer = consumer
        self._wants = wants
        self._sub: Subscriber | None = None
        #: Told when the first item goes to the sender (time to first frame).
        self.on_first: Callable[[], None] | None = None
        self._fed = False
        #: The aiortc sender this track feeds (set once it is added to a connection).
        self.sender: RTCRtpSender | None = None
        self._sent: Packet | av.VideoFrame | None = None

    @property
    def subscriber(self) -> Subscriber | None:
        return self._sub

    async def recv(self) -> Packet | av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        sent = self._sent
        if self.sender and sent is not None and sent.pts is not None and sent.time_base:
            capture = self._consumer.stream.capture
            internals.set_report_time(self.sender, capture.ntp(sent.pts, sent.time_base))
        if self._sub is None:
            audio = self.kind == "audio"
            self._sub = self._consumer.audio() if audio else self._consumer.video(self._wants)
        try:
            item = await self._sub.get()
        except StreamEnded:
            self.stop()
            raise MediaStreamError from None
        if not self._fed:
            self._fed = True
            if self.on_first is not None:
                self.on_first()
        self._sent = item.packet if isinstance(item, AccessUnit) else _own_copy(item)
        return self._sent

    def stop(self) -> None:
        if self._sub is not None:
            self._consumer.drop(self._sub)
            self._sub = None
        super().stop()


def _own_copy(frame: av.VideoFrame) -> av.VideoFrame:
    """A viewer's own copy of a shared decoded frame.

    aiortc's encoders set `pict_type` on the frame they encode, in executor threads: on a
    frame shared by several viewers, one viewer's forced keyframe could be undone by
    another's encode. The copy costs far less than the per-viewer encode it feeds.
    """
    source = frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
    copy = av.VideoFrame.from_ndarray(source.to_ndarray(), format="yuv420p")
    copy.pts = frame.pts
    copy.time_base = frame.time_base
    return copy

"""Decode a stream's pictures, and encode them once to H.264 for the viewers that share it.

Two paths use it: a stream transcoded for all its viewers (mode `transcode`), and an
H.265 stream passed through to the viewers that decode H.265, whose H.264 viewers share
one transcode made only while any of them watch (`ShareOnDemand`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext

from media_server.ingest.encoder import SharedEncoder
from media_server.model.clock import CaptureClock
from media_server.model.media import TIME_BASE, AccessUnit

#: What a transcode that starts mid-GOP decodes first, at most, to catch up to the live
#: picture (ten seconds at 30 fps; a longer GOP waits for its next keyframe instead).
CATCH_UP_UNITS = 300
CATCH_UP_BYTES = 16 * 1024 * 1024


class Transcoder:
    """One decoder, and one H.264 encoder where `bitrate` is given."""

    def __init__(self, codec: str, bitrate: int | None) -> None:
        self._codec = codec
        self._decoder: VideoCodecContext | None = None
        self._encoder = SharedEncoder(bitrate) if bitrate is not None else None
        #: The camera's capture times, carried over to what the encoder makes.
        self._capture = CaptureClock()
        self._last_pts: int | None = None

    def decode(self, unit: AccessUnit) -> list[av.VideoFrame]:
        """The pictures `unit` completes, on the unit's 90 kHz clock; raises
        av.FFmpegError for a unit that does not decode."""
        self._capture.follow(unit.pts, unit.time_base, unit.capture)
        if self._decoder is None:
            self._decoder = cast(VideoCodecContext, av.CodecContext.create(self._codec, "r"))
        packet = av.Packet(unit.data)  # its own: the unit's packet may be on the loop
        packet.pts = unit.pts
        packet.time_base = unit.time_base
        frames = self._decoder.decode(packet)
        for frame in frames:
            # Encoders (libvpx above all) refuse a frame whose pts does not increase.
            last = self._last_pts
            if frame.pts is None or (last is not None and frame.pts <= last):
                frame.pts = unit.pts if last is None else max(unit.pts, last + 1)
            self._last_pts = frame.pts
            frame.time_base = TIME_BASE
        return frames

    def encode(self, frame: av.VideoFrame, fps: float) -> list[AccessUnit]:
        """H.264 access units for one decoded frame, with the camera's capture times."""
        if self._encoder is None:
            return []
        units = []
        for encoded in self._encoder.encode(frame, fps):
            capture = self._capture.at(encoded.pts, encoded.time_base)
            units.append(replace(encoded, capture=capture) if capture is not None else encoded)
        return units


class ShareOnDemand:
    """An H.265 stream's one H.264 transcode, for its viewers that take only H.264.

    It keeps the units since the last keyframe (shared with the stream's hub, so only
    references), and when the first such viewer comes it decodes them to catch up and
    encodes from the live picture: the viewer need not wait for the camera's next
    keyframe. It stops (decoder and encoder dropped) when the last one leaves.
    """

    def __init__(self, codec: str, bitrate: int) -> None:
        self._codec = codec
        self._bitrate = bitrate
        self._gop: list[AccessUnit] = []
        self._gop_bytes = 0
        self._transcoder: Transcoder | None = None

    @property
    def running(self) -> bool:
        return self._transcoder is not None

    def take(self, unit: AccessUnit, wanted: bool) -> list[av.VideoFrame]:
        """Keep `unit`; when `wanted`, the frames it decodes to (after catching up). Raises
        av.FFmpegError for a unit that does not decode (then it restarts at a keyframe)."""
        self._keep(unit)
        if not wanted:
            self._transcoder = None
            return []
        if self._transcoder is None:
            if not self._gop:
                return []  # a keyframe first
            self._transcoder = Transcoder(self._codec, self._bitrate)
            try:
                for earlier in self._gop[:-1]:
                    self._transcoder.decode(earlier)
            except av.FFmpegError:
                self.stop()
                raise
        try:
            return self._transcoder.decode(unit)
        except av.FFmpegError:
            self.stop()
            raise

    def encode(self, frame: av.VideoFrame, fps: float) -> list[AccessUnit]:
        return self._transcoder.encode(frame, fps) if self._transcoder is not None else []

    def stop(self) -> None:
        """Drop the transcode and what it would catch up from: it starts at a keyframe."""
        self._transcoder = None
        self._gop, self._gop_bytes = [], 0

    def _keep(self, unit: AccessUnit) -> None:
        if unit.keyframe:
            self._gop, self._gop_bytes = [], 0
        elif not self._gop:
            return
        self._gop.append(unit)
        self._gop_bytes += unit.size
        if len(self._gop) > CATCH_UP_UNITS or self._gop_bytes > CATCH_UP_BYTES:
            self._gop, self._gop_bytes = [], 0

"""Encode once per stream: the transcode path whose output all viewers share.

Per-viewer transcoding (aiortc encodes for every viewer) costs an encoder per viewer.
Here the ingest thread encodes each decoded frame once, to constrained-baseline H.264
with SPS/PPS before every keyframe, and the hub fans the access units out exactly as in
passthrough: viewers then cost only packetization and sending.
"""

from __future__ import annotations

from fractions import Fraction

import av
from av.video.codeccontext import VideoCodecContext

from media_server.codecs import h264
from media_server.model.media import TIME_BASE, AccessUnit


class SharedEncoder:
    """Constrained-baseline H.264 at a level stated up front (`codecs`), so a playlist can
    name what the encode will be before it runs."""

    def __init__(self, bitrate: int, gop_seconds: float = 1.0) -> None:
        self._bitrate = bitrate
        self._gop_seconds = gop_seconds
        self._codec: VideoCodecContext | None = None

    def _open(self, frame: av.VideoFrame, fps: float) -> VideoCodecContext:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = frame.width, frame.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = Fraction(TIME_BASE)
        # x264's rate control budgets bits per frame from the frame rate; unset, it takes
        # the 90 kHz time base for one and starves every P-frame into a skip.
        codec.framerate = Fraction(round(fps * 1000), 1000)
        codec.bit_rate = self._bitrate
        keyint = max(1, round(fps * self._gop_seconds))
        level = h264.level_for(frame.width, frame.height, fps, self._bitrate)
        codec.options = {
            "profile": "baseline",
            "level": f"{level // 10}.{level % 10}",
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:repeat-headers=1",
        }
        codec.open()
        return codec

    @staticmethod
    def codecs(width: int, height: int, fps: float, bitrate: int) -> str:
        """The RFC 6381 codecs string of what it makes of pictures of this size and rate:
        constrained baseline (constraint sets 0 and 1, as x264 marks it) at its level."""
        level = h264.level_for(width - width % 2, height - height % 2, fps, bitrate)
        return f"avc1.42C0{level:02X}"

    def encode(self, frame: av.VideoFrame, fps: float) -> list[AccessUnit]:
        """Access units for one decoded frame (pts already on the 90 kHz output clock)."""
        width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
        if frame.format.name != "yuv420p" or (width, height) != (frame.width, frame.height):
            pts = frame.pts
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts = pts
        codec = self._codec
        if codec is None or (codec.width, codec.height) != (width, height):
            codec = self._codec = self._open(frame, fps or 30.0)
        units = []
        for packet in codec.encode(frame):
            data = bytes(packet)
            key = h264.NAL_IDR in h264.nal_types(data)
            units.append(AccessUnit(data, int(packet.pts or 0), TIME_BASE, key))
        return units

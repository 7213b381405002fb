"""The embedded demo: an H.264 test pattern with a running clock, made in process.

It lets a newcomer see live video with no camera and no network. It behaves like a
camera (constrained baseline, 1 s GOP, SPS/PPS before each keyframe, paced in real time),
so it exercises the same passthrough path as an RTSP source.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from media_server.ingest.source import Source
from media_server.model.media import Packet, SourceInfo, SourcePacket
from media_server.model.registration import Registration

if TYPE_CHECKING:
    from media_server.ingest.sources import SourceContext, SourceFactory

DEMO_ID = "demo"
DEMO_URL = "demo://test-pattern"


def registration() -> Registration:
    """The demo's own registration: built in, never stored, never relayed (its URL is no
    camera URL, so it is not validated as one)."""
    return Registration.model_construct(id=DEMO_ID, url=DEMO_URL, mode="passthrough")


def source_for(registration: Registration, context: SourceContext) -> SourceFactory:
    demo = context.settings.demo_source

    def make(stop: threading.Event) -> Source:
        return DemoSource(demo.width, demo.height, demo.fps, demo.bitrate, stop)

    return make


# 3x5 bitmap glyphs for the clock, one string of 15 bits per character.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ":": "000010000010000",
    ".": "000000000000010",
    " ": "000000000000000",
}


def _glyph_masks(scale: int) -> dict[str, np.ndarray]:
    masks = {}
    for char, bits in _GLYPHS.items():
        grid = np.array([int(b) for b in bits], dtype=bool).reshape(5, 3)
        masks[char] = np.kron(grid, np.ones((scale, scale), dtype=bool))
    return masks


class DemoSource:
    """A `Source` that encodes synthetic frames at the configured rate."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        stop: threading.Event | None = None,
    ):
        self._width, self._height, self._fps = width, height, fps
        self._bitrate = bitrate
        self._stop = stop or threading.Event()
        self._encoder: VideoCodecContext | None = None
        self._pending: list[Packet] = []
        self._index = 0
        self._start = 0.0
        self._scale = max(2, height // 60)
        self._glyphs = _glyph_masks(self._scale)
        y = np.arange(height, dtype=np.uint16)[:, None]
        x = np.arange(width, dtype=np.uint16)[None, :]
        self._background = ((x * 255 // max(1, width - 1) + y // 4) % 256).astype(np.uint8)
        self._u = np.full((height // 2, width // 2), 90, dtype=np.uint8)
        self._v = np.full((height // 2, width // 2), 160, dtype=np.uint8)

    def open(self) -> SourceInfo:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = self._width, self._height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, self._fps)
        encoder.framerate = Fraction(self._fps, 1)
        encoder.bit_rate = self._bitrate
        encoder.gop_size = self._fps
        encoder.options = {
            "profile": "baseline",
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={self._fps}:min-keyint={self._fps}:scenecut=0:threads=1",
        }
        encoder.open()
        self._encoder = encoder
        self._start = time.monotonic()
        self._index = 0
        return SourceInfo(
            codec="h264",
            width=self._width,
            height=self._height,
            fps=float(self._fps),
            profile="constrained-baseline",
            extradata=b"",
            browser_safe=True,
            client="demo",
        )

    def _draw(self) -> av.VideoFrame:
        luma = self._background.copy()
        # A bar sweeping once a second makes motion (and stalls) obvious.
        bar = (self._index * self._width // self._fps) % self._width
        luma[:, bar : bar + max(4, self._width // 64)] = 235
        text = datetime.now().strftime("%H:%M:%S.") + f"{datetime.now().microsecond // 1000:03d}"
        step = 4 * self._scale
        x0 = (self._width - step * len(text)) // 2
        y0 = (self._height - 5 * self._scale) // 2
        pad = self._scale
        luma[y0 - pad : y0 + 5 * self._scale + pad, x0 - pad : x0 + step * len(text)] = 16
        for i, char in enumerate(text):
            mask = self._glyphs[char]
            region = luma[y0 : y0 + mask.shape[0], x0 + i * step : x0 + i * step + mask.shape[1]]
            region[mask] = 235
        frame = av.VideoFrame(self._width, self._height, "yuv420p")
        frame.planes[0].update(luma.tobytes())
        frame.planes[1].update(self._u.tobytes())
        frame.planes[2].update(self._v.tobytes())
        frame.pts = self._index
        frame.time_base = Fraction(1, self._fps)
        return frame

    def read(self) -> SourcePacket | None:
        assert self._encoder is not None, "open() first"
        while not self._pending:
            due = self._start + self._index / self._fps
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return None
            self._pending = list(self._encoder.encode(self._draw()))
            self._index += 1
        packet = self._pending.pop(0)
        packet.time_base = Fraction(1, self._fps)
        return SourcePacket.of("video", packet)

    def polled(self) -> None:
        return None  # paced by its own clock, on the stream's thread

    def close(self) -> None:
        self._encoder = None
        self._pending = []

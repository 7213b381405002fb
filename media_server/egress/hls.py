"""LL-HLS (RFC 8216bis) of one stream: its segments and parts in memory, and its playlists.

A reader of the stream's muxer. Each picture's fragment joins the part being made; a part
closes when the next picture would take it past the part target, and a segment closes at
the first keyframe after `hls.segment_duration`, so every segment starts with one (and
so does every part marked INDEPENDENT). A part is published when the picture after it
comes, its duration then exact.

Names carry an epoch drawn for each window, so a segment's or a part's URI always means
the same bytes (a CDN may keep them for good) even after the stream's muxer starts anew.

Memory: `hls.segments` whole segments and the one being made, and no more than
`hls.max_bytes` of them (the oldest go first).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from media_server.config import HlsSettings
from media_server.egress.muxer import Fragment, Init, Muxer
from media_server.model.media import CLOCK_RATE

#: Playlists list the parts of the segments within this many target durations of the end.
PART_SEGMENTS_SPAN = 3
#: A request for a part or playlist this far ahead of the newest is refused, not held.
MAX_AHEAD = 2
#: Media playlists kept rendered at once (one per distinct token).
RENDERED_QUERIES = 64
#: A part may exceed its target by this share, so clock jitter does not cut one picture
#: short of a part.
JITTER = 1.02

NAME = re.compile(
    r"^(?P<epoch>[0-9a-f]{8})-(?:init(?P<init>\d+)|(?P<msn>\d+)(?:\.(?P<part>\d+))?)$"
)


@dataclass(slots=True)
class Part:
    data: bytes
    duration: int  # 90 kHz
    independent: bool  # starts with a keyframe


@dataclass(slots=True)
class Segment:
    msn: int
    init: Init
    start: int  # 90 kHz, on the muxer's clock
    made: float  # wall clock of its first fragment
    parts: list[Part] = field(default_factory=list)
    duration: int = 0  # once complete
    complete: bool = False
    data: bytes = b""  # once complete: its parts, joined

    @property
    def size(self) -> int:
        return len(self.data) if self.complete else sum(len(p.data) for p in self.parts)


class Window:
    def __init__(self, muxer: Muxer, settings: HlsSettings) -> None:
        self.muxer = muxer
        self.epoch = secrets.token_hex(4)
        self._part_target = round(settings.part_duration * CLOCK_RATE)
        self._segment_least = round(settings.segment_duration * CLOCK_RATE)
        self._keep = settings.segments
        self._max_bytes = settings.max_bytes
        self.segments: deque[Segment] = deque()
        self._fragments: list[Fragment] = []  # the part being made
        self._part_start: int | None = None  # its first picture's decode time
        self._independent = False
        self._changed = asyncio.Event()
        self.target_duration = max(1, math.ceil(settings.segment_duration))
        self.ended = False
        #: Media playlists as rendered since the last part, by query: hundreds of players
        #: ask for the same one as each part is made.
        self._rendered: dict[str, bytes] = {}

    def start(self) -> None:
        for fragment in self.muxer.gop():
            self.on_fragment(fragment)
        self.muxer.add(self)

    def close(self) -> None:
        self.muxer.remove(self)
        self.on_end()

    # -- from the muxer -----------------------------------------------------------------
    def on_fragment(self, fragment: Fragment) -> None:
        current = self.segments[-1] if self.segments else None
        if fragment.video:
            if current is None or current.complete:
                if not fragment.keyframe:
                    return  # a segment starts at a keyframe
                self._open(fragment)
            elif fragment.keyframe and (
                fragment.init is not current.init
                or fragment.start - current.start >= self._segment_least
            ):
                self._close_part(fragment.start)
                self._close_segment(current, fragment.start)
                self._open(fragment)
            elif self._part_start is not None and (
                fragment.start + fragment.duration - self._part_start > self._part_target * JITTER
            ):
                self._close_part(fragment.start)
            if self._part_start is None:
                self._part_start = fragment.start
                self._independent = fragment.keyframe
        elif current is None or current.complete:
            return
        self._fragments.append(fragment)

    def on_end(self) -> None:
        self.ended = True
        self._notify()

    def _open(self, fragment: Fragment) -> None:
        msn = self.segments[-1].msn + 1 if self.segments else 0
        self.segments.append(Segment(msn, fragment.init, fragment.start, fragment.made))
        self._part_start = None

    def _close_part(self, end: int) -> None:
        if self._part_start is None or not self._fragments or not self.segments:
            return
        data = b"".join(f.data for f in self._fragments)
        part = Part(data, end - self._part_start, self._independent)
        self.segments[-1].parts.append(part)
        self._fragments = []
        self._part_start = None
        self._notify()

    def _close_segment(self, segment: Segment, end: int) -> None:
        segment.duration = end - segment.start
        segment.data = b"".join(p.data for p in segment.parts)
        segment.complete = True
        # EXTINF rounded to the nearest second may not exceed it (RFC 8216bis 4.4.3.1)
        self.target_duration = max(self.target_duration, round(segment.duration / CLOCK_RATE))
        whole = [s for s in self.segments if s.complete]
        size = sum(s.size for s in self.segments)
        while len(whole) > self._keep or (size > self._max_bytes and len(whole) > 1):
            gone = self.segments.popleft()
            whole.pop(0)
            size -= gone.size

    def _notify(self) -> None:
        self._rendered.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    # -- for requests -------------------------------------------------------------------
    def has(self, msn: int, part: int | None) -> bool:
        """Whether the playlist shows segment `msn` whole (`part` None) or its part."""
        last = self.segments[-1] if self.segments else None
        if last is None:
            return False
        if msn < last.msn:
            return True
        if msn > last.msn:
            return False
        return part is not None and part < len(last.parts)

    def too_far(self, msn: int) -> bool:
        last = self.segments[-1].msn if self.segments else 0
        return msn > last + MAX_AHEAD

    async def wait(self, msn: int, part: int | None, timeout: float) -> bool:
        """Hold until segment `msn` (or its `part`) is in the playlist; False on time out
        or when the stream ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.has(msn, part):
            left = deadline - loop.time()
            if self.ended or left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    def segment(self, msn: int) -> Segment | None:
        for segment in self.segments:
            if segment.msn == msn:
                return segment
        return None

    def init(self, version: int) -> Init | None:
        for segment in self.segments:
            if segment.init.version == version:
                return segment.init
        return None

    @property
    def bandwidth(self) -> int:
        """Bits per second of the parts kept (what a variant's BANDWIDTH says)."""
        parts = [p for s in self.segments for p in s.parts]
        seconds = sum(p.duration for p in parts) / CLOCK_RATE
        return round(8 * sum(len(p.data) for p in parts) / seconds) if seconds else 0

    # -- playlists ----------------------------------------------------------------------
    def name(self, msn: int, part: int | None = None) -> str:
        return f"{self.epoch}-{msn}" + (f".{part}" if part is not None else "") + ".mp4"

    def media_playlist(self, query: str) -> bytes:
        """The media playlist; `query` ("" or "?token=...") goes on every URI in it."""
        rendered = self._rendered.get(query)
        if rendered is None:
            if len(self._rendered) >= RENDERED_QUERIES:
                self._rendered.clear()  # many tokens: keep the cache bounded
            rendered = self._rendered[query] = self._render(query).encode()
        return rendered

    def _render(self, query: str) -> str:
        part_target = self._part_target / CLOCK_RATE
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * part_target:.3f}",
            f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.segments[0].msn if self.segments else 0}",
        ]
        init: Init | None = None
        span_start = self._parts_from()
        for segment in self.segments:
            if segment.init is not init:
                init = segment.init
                lines.append(f'#EXT-X-MAP:URI="{self.epoch}-init{init.version}.mp4{query}"')
                made = datetime.fromtimestamp(segment.made, UTC)
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{made.isoformat(timespec='milliseconds')}")
            if segment.msn >= span_start:
                for i, piece in enumerate(segment.parts):
                    independent = ",INDEPENDENT=YES" if piece.independent else ""
                    lines.append(
                        f"#EXT-X-PART:DURATION={piece.duration / CLOCK_RATE:.5f},"
                        f'URI="{self.name(segment.msn, i)}{query}"{independent}'
                    )
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration / CLOCK_RATE:.5f},")
                lines.append(self.name(segment.msn) + query)
        if self.segments:
            last = self.segments[-1]
            msn, part = (last.msn + 1, 0) if last.complete else (last.msn, len(last.parts))
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.name(msn, part)}{query}"')
        return "\n".join(lines) + "\n"

    def _parts_from(self) -> int:
        """The first segment whose parts the playlist lists: those of the last
        PART_SEGMENTS_SPAN target durations."""
        span = PART_SEGMENTS_SPAN * self.target_duration * CLOCK_RATE
        end = self.segments[-1].start if self.segments else 0
        for segment in self.segments:
            if end - segment.start <= span:
                return segment.msn
        return self.segments[-1].msn if self.segments else 0

    def multivariant_playlist(
        self, query: str, fps: float | None, others: tuple[Variant, ...] = ()
    ) -> str:
        """The multivariant playlist: the media playlist, then `others` (an H.265
        stream's H.264 transcode, for players that play no `hvc1`)."""
        init = self.segments[-1].init if self.segments else self.muxer.init
        assert init is not None
        own = Variant(
            f"media.m3u8{query}",
            max(self.bandwidth, 1) * 11 // 10,
            init.codecs(),
            init.video.width,
            init.video.height,
        )
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-INDEPENDENT-SEGMENTS"]
        for variant in (own, *others):
            attributes = [
                f"BANDWIDTH={variant.bandwidth}",
                f'CODECS="{variant.codecs}"',
                f"RESOLUTION={variant.width}x{variant.height}",
            ]
            if fps:
                attributes.append(f"FRAME-RATE={fps:.3f}")
            lines += ["#EXT-X-STREAM-INF:" + ",".join(attributes), variant.uri]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Variant:
    """One variant of a multivariant playlist: its media playlist and what it carries."""

    uri: str
    bandwidth: int
    codecs: str
    width: int
    height: int

"""The LL-HLS window's rules, from fragments alone: parts never longer than their target,
segments from keyframes, memory within its bounds, and playlists that say so."""

from __future__ import annotations

import re
from typing import Any

from media_server.config import HlsSettings
from media_server.egress.hls import Window
from media_server.egress.muxer import Fragment, Init
from media_server.mp4 import fmp4

TICK = 3000  # 30 fps on 90 kHz
INIT = Init(1, fmp4.VideoTrack(b"\x67\x42\xc0\x1e", b"\x68", 640, 480), None, b"i", b"i")


class Muxer:
    """What the window asks of a muxer: its GOP and to be read (no stream behind it)."""

    init = INIT

    def gop(self) -> list[Fragment]:
        return []

    def add(self, reader: Any) -> None: ...

    def remove(self, reader: Any) -> None: ...


def window(**settings: Any) -> Window:
    w = Window(Muxer(), HlsSettings(**settings))  # type: ignore[arg-type]
    w.start()
    return w


def feed(w: Window, pictures: int, gop: int = 30, size: int = 1000) -> None:
    for i in range(pictures):
        start = i * TICK
        w.on_fragment(Fragment(b"a" * 10, False, False, start, TICK, INIT, 0.0))
        w.on_fragment(Fragment(b"v" * size, True, i % gop == 0, start, TICK, INIT, 0.0))


def test_parts_keep_to_their_target_and_segments_start_at_keyframes() -> None:
    w = window(part_duration=0.2, segment_duration=1.0)
    feed(w, 30 * 5 + 1)  # five whole GOPs of a second, and the next keyframe
    whole = [s for s in w.segments if s.complete]
    assert [s.msn for s in whole] == [0, 1, 2, 3, 4]
    for segment in whole:
        assert segment.duration == 30 * TICK
        assert [p.duration for p in segment.parts] == [6 * TICK] * 5  # 200 ms each
        assert [p.independent for p in segment.parts] == [True, False, False, False, False]
        assert segment.data == b"".join(p.data for p in segment.parts)


def test_the_window_keeps_its_segments_and_bytes_and_no_more() -> None:
    w = window(segments=3)
    feed(w, 30 * 10 + 1)
    assert [s.msn for s in w.segments if s.complete] == [7, 8, 9]
    w = window(segments=60, max_bytes=1024 * 1024)
    feed(w, 30 * 60 + 1, size=4000)  # 120 kB a segment
    kept = sum(s.size for s in w.segments)
    assert kept <= 1024 * 1024 and len([s for s in w.segments if s.complete]) == 8


def test_the_media_playlist_lists_parts_hints_and_carries_the_query() -> None:
    w = window(segments=7)
    feed(w, 30 * 8 + 10)
    text = w.media_playlist("?token=t").decode()
    assert "#EXT-X-TARGETDURATION:1" in text and "#EXT-X-PART-INF:PART-TARGET=0.200" in text
    assert f"#EXT-X-MEDIA-SEQUENCE:{w.segments[0].msn}" in text
    uris = re.findall(r'URI="([^"]+)"', text) + [
        line for line in text.splitlines() if line and not line.startswith("#")
    ]
    assert uris and all(uri.endswith(".mp4?token=t") for uri in uris)
    # Parts only for the last three target durations; then the hint for the next part.
    listed = {int(u.split("-")[1].split(".")[0]) for u in uris if u.count(".") == 2}
    assert listed == {w.segments[-1].msn - n for n in range(4)}
    assert text.rstrip().splitlines()[-1].startswith("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=")
    assert w.media_playlist("?token=t") is w.media_playlist("?token=t")  # rendered once


def test_blocking_asks_are_answered_by_what_the_playlist_shows() -> None:
    w = window()
    feed(w, 30 * 2 + 13)  # two whole segments, two parts of the third
    last = w.segments[-1]
    assert (last.msn, len(last.parts)) == (2, 2)
    assert w.has(1, None) and w.has(2, 1) and not w.has(2, 2) and not w.has(2, None)
    assert not w.has(3, 0) and not w.too_far(4) and w.too_far(5)

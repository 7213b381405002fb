"""What a stream's recordings hold, read back: its segments and the spans of time they
cover, from the segment files' names (egress/recorder.py names them by start and length).

Spans join segments that follow each other without a gap; a camera outage (or anything
that ended a segment without a next one at once) stays a gap between spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from media_server.egress.recorder import parse_name, recorded_seconds

#: Segments this close (seconds) are one span: the next starts at the keyframe that
#: follows the last picture of the one before.
JOIN = 0.5


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    start: float  # UTC seconds
    end: float


def segments(
    folder: Path, start: float, end: float, live: tuple[float, float] | None = None
) -> list[Segment]:
    """The segments of a stream's folder that overlap [start, end), in time order; the one
    being written ends where `live` says (its recorder knows), one a crash left open
    where its whole fragments end."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        parsed = parse_name(path.name)
        if parsed is None or parsed[0] >= end:
            continue
        begun, seconds = parsed
        if seconds is None:
            if live is not None and abs(live[0] - begun) < 1e-3:
                seconds = live[1] - live[0]
            else:
                with path.open("rb") as file:
                    seconds = recorded_seconds(file, path.stat().st_size)
        if begun + seconds > start:
            found.append(Segment(path, begun, begun + seconds))
    return sorted(found, key=lambda segment: segment.start)


def spans(segments_found: list[Segment], start: float, end: float) -> list[tuple[float, float]]:
    """The recorded time within [start, end), as (start, end) spans without gaps."""
    out: list[tuple[float, float]] = []
    for segment in segments_found:
        first, last = max(segment.start, start), min(segment.end, end)
        if last <= first:
            continue
        if out and first - out[-1][1] <= JOIN:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out

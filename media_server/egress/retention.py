"""Which recorded segments go, and why: the rule alone, over what the disk holds.

Oldest first, for four reasons in turn: past `record.max_age`; a stream over
`record.max_stream_bytes`; all streams over `record.max_bytes`; and the disk's free space
under `record.min_free_bytes` (the floor that keeps a full disk from stopping anything
else). A limit of 0 is none. A segment being written is never taken.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from media_server.config import RecordSettings


@dataclass(frozen=True, slots=True)
class Kept:
    """A segment on disk: its stream (folder), times (UTC seconds) and size."""

    path: Path
    stream: str
    start: float
    end: float
    size: int


def to_delete(
    kept: list[Kept], now: float, free_bytes: int, settings: RecordSettings
) -> list[tuple[Kept, str]]:
    """The segments to delete, each with its reason (age, stream, total, disk)."""
    left = sorted(kept, key=lambda k: k.start)
    going: list[tuple[Kept, str]] = []

    def take(segment: Kept, reason: str) -> None:
        going.append((segment, reason))
        left.remove(segment)

    if settings.max_age:
        for segment in [k for k in left if k.end < now - settings.max_age]:
            take(segment, "age")
    if settings.max_stream_bytes:
        by_stream: defaultdict[str, list[Kept]] = defaultdict(list)
        for segment in left:
            by_stream[segment.stream].append(segment)
        for segments in by_stream.values():
            total = sum(k.size for k in segments)
            for segment in segments[:-1]:  # the newest stays, whatever its size
                if total <= settings.max_stream_bytes:
                    break
                take(segment, "stream")
                total -= segment.size
    if settings.max_bytes:
        total = sum(k.size for k in left)
        while len(left) > 1 and total > settings.max_bytes:
            total -= left[0].size
            take(left[0], "total")
    freed = free_bytes
    while left and freed < settings.min_free_bytes:
        freed += left[0].size
        take(left[0], "disk")
    return going

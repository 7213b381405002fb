"""Which recorded segments go: oldest first, by age, by a stream's size, by the total, and
by the disk's free-space floor; the newest of a stream stays whatever its size."""

from __future__ import annotations

from pathlib import Path

from media_server.config import RecordSettings
from media_server.egress.retention import Kept, to_delete

NOW = 1_800_000_000.0
MB = 1024 * 1024


def seg(stream: str, age: float, size: int = MB) -> Kept:
    start = NOW - age
    return Kept(Path(f"{stream}/{start}.mp4"), stream, start, start + 60, size)


def rules(**limits: float) -> RecordSettings:
    return RecordSettings(**{"max_age": 0, "min_free_bytes": 0, **limits})


def gone(going: list[tuple[Kept, str]]) -> list[tuple[str, float, str]]:
    return [(k.stream, NOW - k.start, why) for k, why in going]


def test_nothing_goes_without_limits() -> None:
    kept = [seg("a", 900), seg("b", 600)]
    assert to_delete(kept, NOW, 10 * MB, rules()) == []


def test_by_age() -> None:
    kept = [seg("a", 4000), seg("a", 3000), seg("b", 100)]
    assert gone(to_delete(kept, NOW, 10 * MB, rules(max_age=3000))) == [("a", 4000, "age")]


def test_by_stream_size_oldest_first_and_the_newest_stays() -> None:
    kept = [seg("a", 300), seg("a", 200), seg("a", 100), seg("b", 250, 5 * MB)]
    going = to_delete(kept, NOW, 10 * MB, rules(max_stream_bytes=2 * MB))
    assert gone(going) == [("a", 300, "stream")]  # b's one segment stays, too big or not


def test_by_total_then_the_disk_floor() -> None:
    kept = [seg("a", 400), seg("b", 300), seg("a", 200), seg("b", 100)]
    assert gone(to_delete(kept, NOW, 10 * MB, rules(max_bytes=2 * MB))) == [
        ("a", 400, "total"),
        ("b", 300, "total"),
    ]
    # 1 MB free under a 3 MB floor: the two oldest go (each frees 1 MB).
    assert gone(to_delete(kept, NOW, MB, rules(min_free_bytes=3 * MB))) == [
        ("a", 400, "disk"),
        ("b", 300, "disk"),
    ]

"""Segment files read back: their fragments' tracks and times, a name's start and length,
and a file a crash cut mid-fragment finalized to what plays."""

from __future__ import annotations

import io
import time
from pathlib import Path

from media_server.egress.recorder import finalize, parse_name, segment_name
from media_server.mp4 import fmp4
from media_server.mp4.fragments import fragments, whole_size
from tests.unit.test_fmp4 import TICKS, decoded, encode, gops, video_track

FRAMES = 30


def segment() -> tuple[bytes, list[bytes], list[int]]:
    """An init segment and a fragment per GOP, as the recorder writes them, and the
    number of pictures in each."""
    units = encode("baseline", FRAMES)
    init = fmp4.init_segment([video_track(units)])
    groups = gops(units)
    parts = [
        fmp4.fragment(n, [fmp4.Run(1, first * TICKS, samples)])
        for n, (first, samples) in enumerate(groups, 1)
    ]
    assert len(parts) >= 3
    return init, parts, [len(samples) for _, samples in groups]


def test_fragments_read_back_with_their_times() -> None:
    init, parts, pictures = segment()
    data = init + b"".join(parts)
    found_init, found = fragments(io.BytesIO(data), len(data))
    assert found_init == init
    assert [f.size for f in found] == [len(p) for p in parts]
    runs = [f.runs[0] for f in found]
    starts = [sum(pictures[:i]) * TICKS for i in range(len(pictures))]
    assert [r.decode_time for r in runs] == starts
    assert [r.duration for r in runs] == [n * TICKS for n in pictures]
    assert all(r.track == 1 and r.keyframe for r in runs)
    assert whole_size(io.BytesIO(data), len(data)) == len(data)


def test_names_give_start_and_length() -> None:
    started = 1_796_000_000.123456
    open_, closed = parse_name(segment_name(started)), parse_name(segment_name(started, 60.0126))
    assert open_ is not None and abs(open_[0] - started) < 1e-6 and open_[1] is None
    assert closed is not None and abs(closed[0] - started) < 1e-6 and closed[1] == 60.013
    for other in ("x.mp4", "20261202T140812.345678Z_1s.mp4", "20261202T140812.345678Z.txt"):
        assert parse_name(other) is None


def test_a_file_cut_mid_fragment_is_finalized_to_what_plays(tmp_path: Path) -> None:
    init, parts, pictures = segment()
    started = time.time()
    path = tmp_path / segment_name(started)
    path.write_bytes(init + parts[0] + parts[1] + parts[2][: len(parts[2]) // 2])
    final = finalize(path)
    assert final is not None and not path.exists()
    parsed = parse_name(final.name)
    assert parsed is not None and abs(parsed[0] - started) < 1e-6
    whole = pictures[0] + pictures[1]  # two whole GOPs
    assert parsed[1] == round(whole / 30, 3)
    assert final.stat().st_size == len(init + parts[0] + parts[1])
    assert len(decoded(final.read_bytes())) == whole
    # A file with no picture at all is nothing to keep.
    empty = tmp_path / segment_name(started + 1)
    empty.write_bytes(init + parts[0][:40])
    assert finalize(empty) is None and not empty.exists()

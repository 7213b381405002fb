"""The harness's own smoke test: a tiny real run produces a sane report (no speed claims)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf.harness import main

pytestmark = pytest.mark.e2e


def test_tiny_run_produces_a_sane_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--profiles", "passthrough,transcode-shared", "--viewers", "1,2", "--seconds", "3"]
    assert main([*args, "--warmup", "2", "--mount", "/small", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    runs = {(run["profile"], run["viewers"]): run for run in report["runs"]}
    assert set(runs) == {(p, n) for p in ("passthrough", "transcode-shared") for n in (1, 2)}
    for run in runs.values():
        assert run["viewers_failed"] == 0
        assert run["egress_packets_per_s"] > 5 * run["viewers"]  # /small: 320x240 at 15 fps
        assert 10 < run["fps_per_viewer_mean"] < 20
        assert 0 < run["cpu_percent"] < 400 and run["rss_mb"] > 20
        assert run["signaling_p50_ms"] is not None and run["first_frame_p50_ms"] is not None
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "Ratios to `passthrough`" in markdown and "Targets (phase1, at 2 viewers)" in markdown

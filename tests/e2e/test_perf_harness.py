"""The harness's own smoke test: a tiny real run produces a sane report (no speed claims)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perf.harness import main, register
from tests.support.gateway import FAST, GENEROUS, run_gateway
from tests.support.rtsp import HOST, free_port

pytestmark = pytest.mark.e2e

PROFILES = ("passthrough", "transcode-shared")


def test_tiny_run_produces_a_sane_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--profiles", ",".join(PROFILES), "--streams", "1,2", "--viewers", "1"]
    assert main([*args, "--seconds", "3", "--warmup", "2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    runs = {(run["profile"], run["streams"]): run for run in report["runs"]}
    assert set(runs) == {(p, n) for p in PROFILES for n in (1, 2)}
    for (_, streams), run in runs.items():
        assert run["viewers"] == streams and run["viewers_failed"] == 0
        assert run["egress_packets_per_s"] > 20 * streams  # /clock: 640x480 at 30 fps
        assert 20 < run["fps_per_viewer_mean"] < 40
        assert 0 < run["cpu_percent"] < 400 and run["rss_mb"] > 20
        assert run["signaling_p50_ms"] is not None and run["first_frame_p50_ms"] is not None
        # The probe read the capture stamps of most frames and got its pings answered.
        assert run["latency_samples"] >= 0.8 * 30 * 3, run
        assert run["probe_frames_unreadable"] <= 0.1 * run["probe_frames"], run
        assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"] < 1000, run
        # The camera read without the gateway: its own share of the latency.
        assert 0 < run["camera_latency_p50_ms"] < run["latency_p50_ms"], run
        assert run["ping_samples"] >= 10 and 0 < run["ping_p50_ms"] < 1000, run
        assert 0 < run["ping_control_p50_ms"] <= run["ping_control_p99_ms"] < 1000, run
        assert 0 <= run["gc_pause_ms_per_s"] < 1000, run
        assert run["transports"]["read_timeout"] == "socket", run  # labelled by the gateway
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "Ratios to `passthrough`" in markdown
    assert "Targets (phase1, at 2 streams x 1 viewers)" in markdown
    assert "latency p99 ms" in markdown and "ping p99 ms" in markdown


def test_cluster_run_spreads_viewers_over_three_nodes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--profiles", "engine-cluster3", "--viewers", "3", "--no-probe", "--out", str(out)]
    assert main([*args, "--seconds", "3", "--warmup", "2"]) == 0
    (run,) = json.loads((out / "report.json").read_text())["runs"]
    assert run["viewers"] == 3 and run["viewers_failed"] == 0
    assert 20 < run["fps_per_viewer_mean"] < 40
    nodes = run["nodes"]
    assert len(nodes) == 3 and [n["viewers"] for n in nodes] == [1, 1, 1], nodes
    # One node reads the camera and relays it to the other two.
    assert sorted(n["ingests"] for n in nodes) == [0, 0, 1], nodes
    assert sum(n["relays"] for n in nodes) == 2, nodes
    assert run["cpu_percent"] == pytest.approx(sum(n["cpu_percent"] for n in nodes))


def test_another_gateway_runs_as_a_profile_by_its_whep_endpoint_and_pid(tmp_path: Path) -> None:
    """Any running WHEP endpoint and process id is a profile: here a second gateway of
    ours, started outside the harness and pulling the harness's camera by its port."""
    port = free_port(HOST)
    env = {**GENEROUS, **FAST}
    with run_gateway("--no-demo", env=env) as other:
        camera = f"rtsp://{HOST}:{port}/clock"
        # The native client shares the camera's pipeline with the harness's camera probe,
        # so frames pair and the latency the gateway adds is known frame by frame.
        register(other, "cam", camera, "passthrough", client="native")
        whep = other.url("/api/v1/streams/cam/whep")
        out = tmp_path / "report"
        args = ["--profiles", "engine", "--viewers", "2", "--rtsp-port", str(port)]
        args += ["--external", f"other={whep},pid={other.pid}", "--warmup", "3"]
        assert main([*args, "--seconds", "3", "--out", str(out)]) == 0
    runs = {run["profile"]: run for run in json.loads((out / "report.json").read_text())["runs"]}
    assert set(runs) == {"engine", "other"}
    run = runs["other"]
    assert run["external"] == {"whep": whep, "pid": other.pid, "processes": 1}, run
    assert run["viewers"] == 2 and run["viewers_failed"] == 0, run
    assert 20 < run["fps_per_viewer_mean"] < 40, run
    assert 0 < run["cpu_percent"] < 400 and run["rss_mb"] > 20, run
    assert run["latency_samples"] >= 0.8 * 30 * 3, run
    assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"] < 1000, run
    assert "ping_p50_ms" not in run  # the signaling ping is our WebSocket's
    assert run["added_samples"] >= 0.8 * 30 * 3, run
    assert 0 < run["added_p50_ms"] < run["latency_p50_ms"], run
    assert "`other`, 1 streams x 2 viewers" in (out / "report.md").read_text()

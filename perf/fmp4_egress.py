"""The fMP4 egresses measured side by side with WebRTC on the same camera (issue 19).

    python -m perf.fmp4_egress latency --seconds 20 --rounds 2
    python -m perf.fmp4_egress pollers --pollers 500 --seconds 20
    python -m perf.fmp4_egress memory --streams 10

latency: a gateway ingests the RTSP test server's ``/clock`` camera (frames stamped with
their capture time); in one window a WebRTC probe (``latency_probe.py``), an MSE probe and
an LL-HLS probe (``fmp4_probe.py``) decode its frames and read the stamps. Paired by
stamp, each frame's MSE arrival less its WebRTC arrival is what MSE adds; HLS is given
as it arrives and as a player shows it (PART-HOLD-BACK later). Then MSE's first frame:
viewers one after another, each alone (so each makes the stream's muxer anew).

pollers: N LL-HLS clients (``hls_pollers.py``: blocking reload, then the part) on one
stream; the gateway's CPU and the bytes it served over the window give bytes per core.

memory: the gateway's RSS with S streams and nothing watching, then with one viewer of
one kind on each (WebRTC, MSE or HLS; a gateway for each kind): the difference per
stream.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from perf.harness import (
    UNLIMITED,
    _results,
    _spawn,
    added_latency,
    cpu_seconds,
    paired_ms,
    percentile,
    register,
    rss_mb,
    wait_live,
)
from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.rtsp import RtspServer, start_rtsp_server


@contextmanager
def camera_and_gateway(streams: int = 1) -> Iterator[tuple[RtspServer, Gateway, list[str]]]:
    with start_rtsp_server() as rtsp, run_gateway(env={**GENEROUS, **UNLIMITED}) as gw:
        ids = ["clock"] + [f"cam{i}" for i in range(1, streams)]
        for sid in ids:
            register(gw, sid, rtsp.url("/clock" if sid == "clock" else "/small"), "passthrough")
        wait_live(gw, ids)
        yield rtsp, gw, ids


def _ms(values: list[float], pct: float) -> float | None:
    value = percentile(values, pct)
    return round(value, 1) if value is not None else None


def latency(args: argparse.Namespace) -> dict[str, Any]:
    rounds = []
    with camera_and_gateway() as (_, gw, _):
        for _ in range(args.rounds):
            timing = ["--warmup", str(args.warmup), "--window", str(args.seconds)]
            procs = {
                "webrtc": _spawn("perf.latency_probe", gw.base_url, "clock", *timing),
                "mse": _spawn("perf.fmp4_probe", gw.base_url, "mse:clock", *timing),
                "hls": _spawn("perf.fmp4_probe", gw.base_url, "hls:clock", *timing),
            }
            got = {k: _results(p, args.warmup + args.seconds + 60)[0] for k, p in procs.items()}
            hold = got["hls"].get("hold_back_ms") or 0.0
            row: dict[str, Any] = {}
            for kind, result in got.items():
                row[f"{kind}_p50_ms"] = _ms(result["latencies_ms"], 50)
                row[f"{kind}_p95_ms"] = _ms(result["latencies_ms"], 95)
                row[f"{kind}_frames"] = len(result["latencies_ms"])
                if result.get("error"):
                    row[f"{kind}_error"] = result["error"]
            shown = [v + hold for v in got["hls"]["latencies_ms"]]
            row["hls_shown_p50_ms"] = _ms(shown, 50)
            row["hls_shown_p95_ms"] = _ms(shown, 95)
            paired = added_latency(got["webrtc"]["arrivals_us"], got["mse"]["arrivals_us"])
            row["mse_over_webrtc_p50_ms"] = paired["added_p50_ms"]
            row["mse_over_webrtc_p95_ms"] = percentile(
                paired_ms(got["webrtc"]["arrivals_us"], got["mse"]["arrivals_us"]), 95
            )
            row["paired_frames"] = paired["added_samples"]
            firsts = []
            for _ in range(args.first_frames):
                probe = _spawn(
                    "perf.fmp4_probe", gw.base_url, "mse:clock", "--warmup", "0", "--window", "1"
                )
                first = _results(probe, 60)[0].get("first_frame_ms")
                if first is not None:
                    firsts.append(first)
            row["mse_first_frame_p50_ms"] = _ms(firsts, 50)
            row["mse_first_frame_max_ms"] = round(max(firsts), 1) if firsts else None
            row["hls_first_frame_ms"] = got["hls"].get("first_frame_ms")
            rounds.append(row)
            print(json.dumps(row), flush=True)
    return {"rounds": rounds}


def pollers(args: argparse.Namespace) -> dict[str, Any]:
    with camera_and_gateway() as (_, gw, _):
        per = -(-args.pollers // args.processes)
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "perf.hls_pollers",
                    gw.base_url,
                    "clock",
                    str(per),
                    str(args.warmup),
                    str(args.seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.processes)
        ]
        time.sleep(args.warmup)
        cpu0, wall0 = cpu_seconds(gw.pid), time.monotonic()
        time.sleep(args.seconds)
        cpu = cpu_seconds(gw.pid) - cpu0
        wall = time.monotonic() - wall0
        rss = rss_mb(gw.pid)
        summaries = [json.loads(p.communicate(timeout=120)[0].splitlines()[-1]) for p in procs]
    served = sum(s["bytes"] for s in summaries)  # as the pollers received it, in the window
    row = {
        "pollers": per * args.processes,
        "gateway_cpu_percent": round(cpu / wall * 100, 1),
        "served_mbit_s": round(served * 8 / wall / 1e6, 2),
        "bytes_per_core_second": round(served / cpu) if cpu else None,
        "gbit_per_core": round(served * 8 / cpu / 1e9, 3) if cpu else None,
        "rss_mb": round(rss, 1),
        "client_parts": sum(s["parts"] for s in summaries),
        "client_errors": sum(s["errors"] for s in summaries),
        "client_part_fetch_p50_ms": _ms([a for s in summaries for a in s["ages_ms"]], 50),
    }
    print(json.dumps(row), flush=True)
    return row


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Each kind on a gateway of its own: RSS seldom shrinks, so one kind after another
    would count what the one before kept."""
    out: dict[str, Any] = {"streams": args.streams}
    for kind in ("webrtc", "mse", "hls"):
        with camera_and_gateway(args.streams) as (_, gw, ids):
            time.sleep(args.warmup)
            idle = rss_mb(gw.pid)
            window = ["--warmup", "0", "--window", str(args.seconds)]
            procs = [
                _spawn("perf.latency_probe", gw.base_url, sid, *window)
                if kind == "webrtc"
                else _spawn("perf.fmp4_probe", gw.base_url, f"{kind}:{sid}", *window)
                for sid in ids
            ]
            time.sleep(args.seconds * 0.8)
            watched = rss_mb(gw.pid)
            for proc in procs:
                _results(proc, 120)
        out[f"{kind}_rss_idle_mb"] = round(idle, 1)
        out[f"{kind}_mb_per_stream"] = round((watched - idle) / args.streams, 2)
    print(json.dumps(out), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["latency", "pollers", "memory"])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--first-frames", type=int, default=10)
    parser.add_argument("--pollers", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--streams", type=int, default=10)
    args = parser.parse_args()
    {"latency": latency, "pollers": pollers, "memory": memory}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

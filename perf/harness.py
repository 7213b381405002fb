"""The perf harness: real RTSP server, gateway under a transport profile, cheap viewers.

    python -m perf.harness --profiles passthrough,transcode --streams 1 --viewers 20 \\
        --seconds 20 --rounds 2 --out perf/results/run1

Profiles run alternately (A B A B ...) in one invocation so that they share the machine's
mood; the report gives each profile's figures per round, their means and the ratio of
every profile to the first. ``--streams`` and ``--viewers`` (per stream) take lists for
scale curves. Besides the cheap viewers, one decoding probe viewer (``latency_probe.py``)
reads the capture stamps of the ``/clock`` mount for latency; a reader of the camera
itself (``camera_probe.py``) reads the same stamps without the gateway, so the latency the
gateway adds is known frame by frame ("added"); and a process of its own
(``ping_probe.py``) measures the signaling round trip, and the same to a bare WebSocket
(``echo_server.py``) in the same window: the floor the host sets. Results: JSON (everything),
Markdown (the table), PNG (the chart).

Another gateway at hand can run in the same rounds on the same camera: point it at the
camera the harness serves (``--rtsp-port`` fixes its port; the URL is printed at the
start) and name its WHEP endpoint and process::

    python -m perf.harness --profiles engine-native-rtsp --rtsp-port 8554 \\
        --external mediamtx=http://127.0.0.1:8889/clock/whep,pid=4242 --viewers 10

Its viewers and latency probe then offer over WHEP, and its CPU and memory are those of
the process and its children.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tests.support.cluster import run_cluster
from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.redis_server import run_redis
from tests.support.rtsp import HOST, RtspServer, free_port, start_rtsp_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VIEWERS_PER_PROCESS = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Admission limits out of the way: the harness looks for where the gateway itself gives.
UNLIMITED = {
    # Every stream is registered at once: at 100, FFmpeg's sessions opening on a saturated
    # host take longer than the default 5 s, and their retries keep it saturated.
    "MEDIA_SERVER_INGEST__OPEN_TIMEOUT": "30",
    "MEDIA_SERVER_LIMITS__VIEWERS": "100000",
    "MEDIA_SERVER_LIMITS__VIEWERS_PER_STREAM": "100000",
    "MEDIA_SERVER_LIMITS__STREAMS": "100000",
}


def load_toml(name: str) -> dict[str, Any]:
    return tomllib.loads((HERE / name).read_text())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


#: Thread names (media_server.procstat.name_thread) grouped for the CPU breakdown.
THREAD_GROUPS = (("engine-lane", "lanes"), ("ingest", "ingest"))


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds by thread group: the engine's lanes, ingest, and the rest (the event
    loop's thread, aiortc's and the interpreter's helpers)."""
    out = {"lanes": 0.0, "ingest": 0.0, "loop+other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        group = next((g for prefix, g in THREAD_GROUPS if name.startswith(prefix)), "loop+other")
        out[group] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def host_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


#: Seconds a scrape of /metrics may take.
SCRAPE_TIMEOUT = 5.0


def _metrics(gw: Gateway) -> str:
    with urllib.request.urlopen(gw.url("/metrics"), timeout=SCRAPE_TIMEOUT) as response:
        text: str = response.read().decode()
    return text


def transports(gw: Gateway) -> dict[str, str]:
    """The transports the gateway says it runs (its transport_info metric's labels)."""
    for line in _metrics(gw).splitlines():
        if line.startswith("media_server_transport_info{"):
            labels = line.split("{", 1)[1].rsplit("}", 1)[0]
            pairs = (pair.split("=", 1) for pair in labels.split(","))
            return {key: value.strip('"') for key, value in pairs}
    return {}


def scrape(gw: Gateway, *names: str) -> dict[str, float] | None:
    """Sums of the named metrics (all their label sets) from the gateway's /metrics, or
    None when it does not answer within the timeout (an overloaded loop: a finding, not a
    reason to stop the run)."""
    try:
        text = _metrics(gw)
    except OSError:  # timeouts included
        return None
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


LAG = "media_server_event_loop_lag_seconds"
BACKLOG = "media_server_engine_lane_backlog"
GC = "media_server_gc_pause_seconds_total"
DROPS = "media_server_viewer_dropped_items_total"


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def register(gw: Gateway, stream_id: str, url: str, mode: str, **fields: Any) -> None:
    body = json.dumps({"id": stream_id, "url": url, "mode": mode, **fields}).encode()
    request = urllib.request.Request(
        gw.url("/api/v1/streams"), body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


def wait_live(gw: Gateway, stream_ids: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {s["id"]: s["state"] for s in gw.get_json("/api/v1/streams")["streams"]}
        if all(states.get(sid) == "live" for sid in stream_ids):
            return
        time.sleep(0.2)
    raise RuntimeError(f"streams not live within {timeout} s: {states}")


def _spawn(module: str, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def _results(proc: subprocess.Popen[str], timeout: float) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _viewers(
    bases: list[str], streams: str, total: int, args: argparse.Namespace, offer: str = ""
) -> list[subprocess.Popen[str]]:
    """`total` cheap viewers of `streams` (ids, or a WHEP URL), spread evenly over the
    base URLs, a process for every VIEWERS_PER_PROCESS or more; offering only `offer`
    (a profile's: H265, H264) where given."""
    shares = max(-(-total // VIEWERS_PER_PROCESS), min(total, len(bases)))
    remaining = total
    viewers = []
    for share in range(shares):
        count = total // shares + (share < total % shares)
        remaining -= count
        viewers.append(
            _spawn(
                "perf.cheap_viewer",
                bases[share % len(bases)],
                streams,
                "--count",
                str(count),
                "--offset",
                str(remaining),
                "--mode",
                args.viewer,
                *(["--offer", offer] if offer else []),
                *_timing(args),
            )
        )
    return viewers


def _timing(args: argparse.Namespace) -> list[str]:
    return ["--warmup", str(args.warmup), "--window", str(args.seconds)]


def _camera_probe(camera: str, args: argparse.Namespace) -> subprocess.Popen[str]:
    """The probe that reads the camera itself, without the gateway (camera_probe.py)."""
    return _spawn("perf.camera_probe", camera, "-", *_timing(args))


#: The stream id the ping probe gives the control (echo_server.py), to tell them apart.
CONTROL = "ping-control"


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """The signaling round trip's control (echo_server.py), on a port of its own."""
    port = free_port(HOST)
    proc = subprocess.Popen([sys.executable, "-m", "perf.echo_server", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the ping control did not start") from None
                time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def _load(
    gws: list[Gateway],
    stream_ids: list[str],
    per_stream: int,
    args: argparse.Namespace,
    camera: str,
    control: str,
    offer: str = "",
) -> tuple[list[subprocess.Popen[str]], list[subprocess.Popen[str]]]:
    """Start the viewers, spread evenly over the nodes (a process or more each), and the
    probes, which watch from a node that does not ingest the first stream, if any, read
    the camera itself and ping the control."""
    total = len(stream_ids) * per_stream
    viewers = _viewers([n.base_url for n in gws], ",".join(stream_ids), total, args, offer)
    if not args.probe:
        return viewers, []
    gw = gws[0]
    origin = gw.get_json(f"/api/v1/streams/{stream_ids[0]}").get("ingest_node")
    probed = next((n for n in gws if n.get_json("/api/v1/cluster")["node"] != origin), gw)
    probes = [
        _spawn(module, probed.base_url, stream_ids[0], *_timing(args))
        for module in ("perf.latency_probe", "perf.ping_probe")
    ]
    control_probe = _spawn("perf.ping_probe", control, CONTROL, *_timing(args))
    return viewers, [*probes, _camera_probe(camera, args), control_probe]


def _window(gws: list[Gateway], seconds: float) -> dict[str, Any]:
    """The gateways' figures over `seconds` of load: CPU (per node, per thread group, the
    host's), memory, event-loop lag, lane backlog, GC pauses and hub drops."""
    wall_start = time.monotonic()
    cpu_start = [cpu_seconds(node.pid) for node in gws]
    threads_start = [thread_cpu_seconds(node.pid) for node in gws]
    host_start = host_busy_seconds()
    before = [scrape(node, GC, DROPS) for node in gws]
    lags, rss, backlogs, unanswered = [], [], [], 0
    while time.monotonic() - wall_start < seconds:
        time.sleep(1)
        for node in gws:
            sample = scrape(node, LAG, BACKLOG)
            if sample is None:
                unanswered += 1
                lags.append(SCRAPE_TIMEOUT)  # the loop was late by at least that
            else:
                lags.append(sample[LAG])
                backlogs.append(sample[BACKLOG])
            rss.append(rss_mb(node.pid))
    elapsed = time.monotonic() - wall_start
    node_cpu = [
        (cpu_seconds(node.pid) - start) / elapsed * 100
        for node, start in zip(gws, cpu_start, strict=True)
    ]
    threads = dict.fromkeys(threads_start[0], 0.0)
    for node, start in zip(gws, threads_start, strict=True):
        for group, spent in thread_cpu_seconds(node.pid).items():
            threads[group] += (spent - start.get(group, 0.0)) / elapsed * 100
    host_cpu = (host_busy_seconds() - host_start) / elapsed * 100
    after = [scrape(node, GC, DROPS) for node in gws]
    gc_ms_per_s = drops_per_s = None
    pairs = [(a, b) for a, b in zip(after, before, strict=True) if a and b]
    if len(pairs) == len(gws):
        gc_ms_per_s = sum(a[GC] - b[GC] for a, b in pairs) / elapsed * 1000
        drops_per_s = sum(a[DROPS] - b[DROPS] for a, b in pairs) / elapsed
    return {
        "node_cpu": node_cpu,
        "lags": lags,
        "rss_max": max(rss, default=0.0),
        "host_cpu_percent": host_cpu,  # everything: gateway, viewers, RTSP server
        "cpu_percent_lanes": threads["lanes"],
        "cpu_percent_ingest": threads["ingest"],
        "cpu_percent_loop_other": threads["loop+other"],
        "metrics_unanswered": unanswered,  # scrapes of /metrics that timed out
        "lane_backlog_max": max(backlogs, default=0.0),  # engine sends waiting in lanes
        "gc_pause_ms_per_s": gc_ms_per_s,
        "hub_drops_per_s": drops_per_s,  # units or frames skipped for slow viewers
    }


def _profile(
    gw: Gateway, profile: str, streams: int, per_stream: int, args: argparse.Namespace
) -> threading.Thread:
    """py-spy on the (first) gateway for the window, saved beside the results."""
    stamp = time.strftime("%H%M%S")
    name = f"profile-{args.py_spy}-{profile}-{streams}x{per_stream}-{stamp}.json"
    profiler = threading.Thread(
        target=take_profile,
        args=(gw, max(1, int(args.seconds) - 1), args.py_spy == "gil", args.out / name),
    )
    profiler.start()
    return profiler


def measure(
    profile: str,
    spec: dict[str, Any],
    rtsp: RtspServer,
    args: argparse.Namespace,
    streams: int,
    per_stream: int,
) -> dict[str, Any]:
    """One run of one profile: start a gateway, load it, measure, stop it."""
    env = {**UNLIMITED, **{k: str(v) for k, v in spec.get("env", {}).items()}}
    with gateways(int(spec.get("nodes", 1)), env) as gws, echo_server() as control:
        gw = gws[0]
        stream_ids = [f"s{i}" for i in range(streams)]
        for sid in stream_ids:
            register(gw, sid, rtsp.url(args.mount), spec.get("mode", "auto"))
        for node in gws:
            wait_live(node, stream_ids, timeout=30 + streams / 2)
        labels = transports(gw)
        camera = rtsp.url(args.mount)
        offer = str(spec.get("offer", ""))
        procs, probes = _load(gws, stream_ids, per_stream, args, camera, control, offer)
        time.sleep(args.warmup)
        profiler = _profile(gw, profile, streams, per_stream, args) if args.py_spy else None
        window = _window(gws, args.seconds)
        node_cpu, lags, rss = window.pop("node_cpu"), window.pop("lags"), window.pop("rss_max")
        per_node = [node_figures(node, node_cpu[i]) for i, node in enumerate(gws)]
        if profiler is not None:
            profiler.join()
        timeout = args.seconds + args.warmup + 60
        viewers = [line for proc in procs for line in _results(proc, timeout)]
        probed = [line for proc in probes for line in _results(proc, timeout)]
    run = summarize(profile, viewers, sum(node_cpu), rss, lags)
    run.update(window)
    run["transports"] = labels  # what produced these figures, as the gateway reports it
    run["nodes"] = per_node
    run["cpu_percent_node_max"] = max(n["cpu_percent"] for n in per_node)
    run["viewers_per_node_max"] = max(n["viewers"] for n in per_node)
    run["env"] = spec.get("env", {})
    if streams >= 100:  # the Phase 1 memory target is stated at 100 streams
        run["rss_mb_100_streams"] = run["rss_mb"]
    return {**run, "streams": streams, "viewers_per_stream": per_stream, **probe_figures(probed)}


class External(NamedTuple):
    """Another gateway, running already and pulling the harness's camera: its WHEP
    endpoint, and its process (CPU and memory count it and its children)."""

    name: str
    whep: str
    pid: int


def external_profile(text: str) -> External:
    """`NAME=WHEP_URL,pid=PID` from the command line."""
    name, _, rest = text.partition("=")
    whep, _, pid = rest.rpartition(",pid=")
    if not name or not whep.startswith(("http://", "https://")) or not pid.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=WHEP_URL,pid=PID")
    return External(name, whep, int(pid))


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a gateway that runs FFmpeg for its cameras, say)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def _tree(measure: Any, pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += measure(pid)
    return float(total)


def measure_external(
    ext: External, rtsp: RtspServer, args: argparse.Namespace, per_stream: int
) -> dict[str, Any]:
    """One run of another gateway: the same viewers and probes over its WHEP endpoint,
    its process tree's CPU and memory (no signaling ping: that is ours)."""
    if not Path(f"/proc/{ext.pid}").is_dir():
        raise SystemExit(f"{ext.name}: no process {ext.pid}")
    viewers = _viewers(["-"], ext.whep, per_stream, args)
    probes = []
    if args.probe:
        probes = [
            _spawn("perf.latency_probe", "-", ext.whep, *_timing(args)),
            _camera_probe(rtsp.url(args.mount), args),
        ]
    time.sleep(args.warmup)
    pids = process_tree(ext.pid)
    wall_start, host_start = time.monotonic(), host_busy_seconds()
    cpu_start = _tree(cpu_seconds, pids)
    rss = []
    while time.monotonic() - wall_start < args.seconds:
        time.sleep(1)
        rss.append(_tree(rss_mb, pids))
    elapsed = time.monotonic() - wall_start
    cpu = (_tree(cpu_seconds, pids) - cpu_start) / elapsed * 100
    host_cpu = (host_busy_seconds() - host_start) / elapsed * 100
    timeout = args.seconds + args.warmup + 60
    seen = [line for proc in viewers for line in _results(proc, timeout)]
    probed = [line for proc in probes for line in _results(proc, timeout)]
    run = summarize(ext.name, seen, cpu, max(rss, default=0.0), [])
    run["host_cpu_percent"] = host_cpu
    run["external"] = {"whep": ext.whep, "pid": ext.pid, "processes": len(pids)}
    return {**run, "streams": 1, "viewers_per_stream": per_stream, **probe_figures(probed)}


def node_figures(gw: Gateway, cpu: float) -> dict[str, Any]:
    """One node's share of the load: its CPU and memory, viewers, relays and ingests."""
    me = gw.get_json("/api/v1/cluster")["node"]
    streams = gw.get_json("/api/v1/streams")["streams"]
    return {
        "node": me,
        "cpu_percent": cpu,
        "rss_mb": rss_mb(gw.pid),
        "viewers": sum(s["viewers"] for s in streams),
        "relays": sum(s.get("relays", 0) for s in streams),
        "ingests": sum(1 for s in streams if s.get("ingest_node", me) == me),
    }


@contextlib.contextmanager
def gateways(nodes: int, env: dict[str, str]) -> Iterator[list[Gateway]]:
    """One gateway, or `nodes` gateways as a cluster on a Redis of their own."""
    if nodes <= 1:
        with run_gateway("--no-demo", env={**GENEROUS, **env}) as gw:
            yield [gw]
        return
    names = [f"node-{i}" for i in range(nodes)]
    with (
        tempfile.TemporaryDirectory(prefix="perf-redis-") as scratch,
        run_redis(Path(scratch)) as redis,
        run_cluster(redis, *names, **env) as cluster,
    ):
        yield list(cluster.nodes.values())


def take_profile(gw: Gateway, seconds: int, gil: bool, path: Path) -> None:
    """A py-spy profile of the gateway through its own admin endpoint (speedscope)."""
    body = json.dumps({"seconds": seconds, "gil": gil}).encode()
    request = urllib.request.Request(
        gw.url("/api/v1/admin/profile"), body, {"Content-Type": "application/json"}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(request, timeout=seconds + 60) as response:
        path.write_bytes(response.read())
    print(f"profile: {path} (python -m perf.profile_summary {path})", file=sys.stderr)


def probe_figures(probed: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency figures of the decoding probe and round trips of the ping probe (which
    external profiles do not run)."""
    errors = [p["error"] for p in probed if p["error"]]
    if not probed or errors:
        return {"probe_error": "; ".join(errors) or "probes off"}
    figures: dict[str, Any] = {}
    camera = next((p for p in probed if p.get("camera")), None)
    latency = next((p for p in probed if "latencies_ms" in p and not p.get("camera")), None)
    if latency is not None:
        latencies = latency["latencies_ms"]
        unreadable = latency["incomplete"] + latency["undecodable"] + latency["unstamped"]
        figures |= {
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p99_ms": percentile(latencies, 99),
            "latency_max_ms": max(latencies, default=None),
            "latency_samples": len(latencies),
            "probe_frames": latency["frames"],
            "probe_frames_unreadable": unreadable,
        }
    if camera is not None:
        figures |= {
            "camera_latency_p50_ms": percentile(camera["latencies_ms"], 50),
            "camera_latency_p99_ms": percentile(camera["latencies_ms"], 99),
        }
    if camera is not None and latency is not None:
        figures |= added_latency(camera["arrivals_us"], latency["arrivals_us"])
    pinged = {p["stream"] == CONTROL: p["pings_ms"] for p in probed if "pings_ms" in p}
    if False in pinged:
        figures |= {
            "ping_p50_ms": percentile(pinged[False], 50),
            "ping_p99_ms": percentile(pinged[False], 99),
            "ping_samples": len(pinged[False]),
        }
    if True in pinged:  # the same probe's round trip to a bare WebSocket, same window
        figures |= {
            "ping_control_p50_ms": percentile(pinged[True], 50),
            "ping_control_p99_ms": percentile(pinged[True], 99),
        }
    return figures


def paired_ms(first: list[list[int]], second: list[list[int]]) -> list[float]:
    """For each frame both readers had (paired by stamp), how much later the second had
    it than the first, in ms."""
    seen = {value: at for value, at in first}
    out = []
    for value, at in second:
        if value in seen:
            delta = (at - seen[value]) & 0xFFFFFFFF  # the stamp clock wraps at 2**32 µs
            out.append((delta - (1 << 32) if delta >= 1 << 31 else delta) / 1000)
    return out


def added_latency(camera: list[list[int]], viewer: list[list[int]]) -> dict[str, Any]:
    """The latency the gateway adds to each frame: when the viewer had it, less when a
    reader of the camera itself had it (both on the stamp clock, paired by stamp).

    Frames pair only where the camera server gives both readers the same pipeline: the
    test server does for the native client, not for FFmpeg's through its gate (the
    server keys a shared pipeline by the URL's port, and the gate's differs): there the
    figures are None, and the latency less the camera's is the estimate."""
    added = paired_ms(camera, viewer)
    return {
        "added_p50_ms": percentile(added, 50),
        "added_p99_ms": percentile(added, 99),
        "added_samples": len(added),
    }


def summarize(
    profile: str, viewers: list[dict[str, Any]], cpu: float, rss: float, lags: list[float]
) -> dict[str, Any]:
    ok = [v for v in viewers if not v["error"]]
    window = statistics.mean(v["window_s"] for v in ok) if ok else 1.0
    packets = sum(v["packets"] for v in ok)
    fps = [v["frames"] / v["window_s"] for v in ok]
    ms = 1000.0
    firsts = [v["first_frame_s"] * ms for v in ok if v["first_frame_s"] is not None]
    signaling = [v["signaling_s"] * ms for v in ok if v["signaling_s"] is not None]
    return {
        "profile": profile,
        "viewers": len(viewers),
        "viewers_failed": len(viewers) - len(ok),
        "egress_packets_per_s": packets / window,
        "egress_payload_bits_per_s": sum(v["payload_bytes"] for v in ok) * 8 / window,
        "packets_lost": sum(v["lost"] for v in ok),
        "fps_per_viewer_mean": statistics.mean(fps) if fps else 0.0,
        "fps_per_viewer_min": min(fps, default=0.0),
        "cpu_percent": cpu,
        "rss_mb": rss,
        "first_frame_p50_ms": percentile(firsts, 50),
        "first_frame_p95_ms": percentile(firsts, 95),
        "signaling_p50_ms": percentile(signaling, 50),
        "signaling_p99_ms": percentile(signaling, 99),
        "loop_lag_max_ms": max(lags, default=0.0) * ms,
        "us_cpu_per_packet": (cpu / 100 * 1e6 / (packets / window)) if packets else None,
        "egress_packets_per_core_per_s": packets / window / (cpu / 100) if cpu else None,
        "cpu_percent_per_viewer": cpu / len(ok) if ok else None,
    }


class Column(NamedTuple):
    key: str
    label: str
    fmt: str
    scale: float = 1.0


COLUMNS = [
    Column("egress_packets_per_s", "pkt/s", "{:.0f}"),
    Column("egress_payload_bits_per_s", "Mbit/s", "{:.2f}", 1e-6),
    Column("cpu_percent", "CPU %", "{:.1f}"),
    Column("cpu_percent_node_max", "busiest node CPU %", "{:.1f}"),
    Column("viewers_per_node_max", "viewers on busiest node", "{:.0f}"),
    Column("host_cpu_percent", "host CPU %", "{:.0f}"),
    Column("cpu_percent_loop_other", "loop+other %", "{:.1f}"),
    Column("cpu_percent_lanes", "lanes %", "{:.1f}"),
    Column("cpu_percent_ingest", "ingest %", "{:.1f}"),
    Column("us_cpu_per_packet", "µs/pkt", "{:.1f}"),
    Column("egress_packets_per_core_per_s", "pkt/s per core", "{:.0f}"),
    Column("cpu_percent_per_viewer", "CPU %/viewer", "{:.3f}"),
    Column("rss_mb", "RSS MB", "{:.0f}"),
    Column("fps_per_viewer_mean", "fps", "{:.1f}"),
    Column("packets_lost", "lost", "{:.0f}"),
    Column("hub_drops_per_s", "hub drops/s", "{:.1f}"),
    Column("latency_p50_ms", "latency p50 ms", "{:.1f}"),
    Column("latency_p99_ms", "latency p99 ms", "{:.1f}"),
    Column("camera_latency_p50_ms", "camera p50 ms", "{:.1f}"),
    Column("added_p50_ms", "added p50 ms", "{:.1f}"),
    Column("added_p99_ms", "added p99 ms", "{:.1f}"),
    Column("first_frame_p50_ms", "TTFF p50 ms", "{:.0f}"),
    Column("first_frame_p95_ms", "TTFF p95 ms", "{:.0f}"),
    Column("signaling_p50_ms", "answer p50 ms", "{:.1f}"),
    Column("signaling_p99_ms", "answer p99 ms", "{:.1f}"),
    Column("ping_p50_ms", "ping p50 ms", "{:.2f}"),
    Column("ping_p99_ms", "ping p99 ms", "{:.2f}"),
    Column("ping_control_p99_ms", "control ping p99 ms", "{:.2f}"),
    Column("loop_lag_max_ms", "lag max ms", "{:.1f}"),
    Column("lane_backlog_max", "lane backlog max", "{:.0f}"),
    Column("gc_pause_ms_per_s", "GC ms/s", "{:.2f}"),
]
#: What a run is keyed by: a profile at a load.
Key = tuple[str, int, int]  # profile, streams, viewers per stream


def key_of(run: dict[str, Any]) -> Key:
    return run["profile"], run["streams"], run["viewers_per_stream"]


def _cells(values: dict[str, Any]) -> str:
    out = []
    for column in COLUMNS:
        value = values.get(column.key)
        out.append("—" if value is None else column.fmt.format(value * column.scale))
    return " | ".join(out)


def mean_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"profile": runs[0]["profile"]}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values and key != "profile":
            out[key] = statistics.mean(values)
    return out


def targets_report(mean: dict[str, Any], phase: str) -> list[str]:
    lines = []
    for metric, rule in load_toml("targets.toml").get(phase, {}).items():
        value = mean.get(metric)
        ((kind, limit),) = rule.items()
        if value is None:
            verdict = "not measured"
        else:
            met = value >= limit if kind == "min" else value <= limit
            verdict = ("met" if met else "missed") + f" ({value:.1f} vs {kind} {limit})"
        lines.append(f"- {phase} `{metric}`: {verdict}")
    return lines


def group_means(runs: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Mean figures per (profile, streams, viewers per stream), in the order first run."""
    keys = list(dict.fromkeys(key_of(r) for r in runs))
    return {k: mean_of([r for r in runs if key_of(r) == k]) for k in keys}


def markdown(command: str, runs: list[dict[str, Any]], phase: str) -> str:
    head = "| profile | streams | viewers | round | " + " | ".join(c.label for c in COLUMNS) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 4)
    lines = [f"Command: `{command}`", "", head, rule]
    means = group_means(runs)
    for key, mean in means.items():
        profile, streams, _ = key
        load = f"{streams} | {mean['viewers']:.0f}"
        for i, run in enumerate((r for r in runs if key_of(r) == key), 1):
            lines.append(f"| {profile} | {load} | {i} | " + _cells(run) + " |")
        lines.append(f"| **{profile}** | {load} | mean | " + _cells(mean) + " |")
    profiles = list(dict.fromkeys(p for p, _, _ in means))
    loads = list(dict.fromkeys((n, v) for _, n, v in means))
    if len(profiles) > 1:
        lines += ["", f"Ratios to `{profiles[0]}` (same run, alternating rounds):", ""]
        for streams, per_stream in loads:
            base = means[(profiles[0], streams, per_stream)]
            for profile in profiles[1:]:
                other = means[(profile, streams, per_stream)]
                parts = []
                for column in COLUMNS:
                    a, b = base.get(column.key), other.get(column.key)
                    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
                        parts.append(f"{column.label} x{b / a:.2f}")
                load = f"{streams} streams x {per_stream} viewers"
                lines.append(f"- `{profile}`, {load}: " + ", ".join(parts))
    streams, per_stream = loads[-1]
    lines += ["", f"Targets ({phase}, at {streams} streams x {per_stream} viewers):", ""]
    for profile in profiles:
        lines += [f"`{profile}`:", *targets_report(means[(profile, streams, per_stream)], phase)]
    return "\n".join(lines) + "\n"


def chart(runs: list[dict[str, Any]], path: Path) -> None:
    """CPU and packets/s against the load that varies (viewers, or streams), per profile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = group_means(runs)
    by_streams = len({n for _, n, _ in means}) > 1
    axis = "streams" if by_streams else "viewers"
    fig, (cpu_ax, pkt_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for profile in dict.fromkeys(p for p, _, _ in means):
        points = sorted((m[axis], m) for (p, _, _), m in means.items() if p == profile)
        xs = [x for x, _ in points]
        cpu_ax.plot(xs, [m["cpu_percent"] for _, m in points], marker="o", label=profile)
        pkt_ax.plot(xs, [m["egress_packets_per_s"] for _, m in points], marker="o", label=profile)
    cpu_ax.set(xlabel=axis, ylabel="gateway CPU (% of one core)", title="CPU")
    pkt_ax.set(xlabel=axis, ylabel="egress RTP packets/s", title="Packets out")
    for ax in (cpu_ax, pkt_ax):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _save(args: argparse.Namespace, command: str, runs: list[dict[str, Any]]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(
        json.dumps(
            {"command": command, "args": vars(args) | {"out": str(args.out)}, "runs": runs},
            indent=1,
        )
    )


def _counts(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="media_server perf harness")
    parser.add_argument(
        "--profiles", default="passthrough", help="comma-separated, see profiles.toml"
    )
    parser.add_argument("--streams", type=_counts, default=[1], help="a count, or counts: 1,10")
    parser.add_argument(
        "--viewers", type=_counts, default=[10], help="viewers per stream; counts: 1,10,50"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1, help="A B A B ... repetitions")
    parser.add_argument(
        "--mount", default="/clock", help="RTSP test server mount (/clock: stamped frames)"
    )
    parser.add_argument(
        "--no-probe",
        dest="probe",
        action="store_false",
        help="no latency and ping probes (no latency or ping figures)",
    )
    parser.add_argument(
        "--py-spy",
        choices=["all", "gil"],
        help="a py-spy profile of each run into --out: all threads, or the GIL holder only",
    )
    parser.add_argument(
        "--viewer",
        choices=["receiver", "counter"],
        default="receiver",
        help="cheap viewers' kind: aiortc's receiver without a decoder, or counting RTP "
        "headers without decrypting (hundreds of viewers on this machine)",
    )
    parser.add_argument(
        "--external",
        type=external_profile,
        action="append",
        default=[],
        metavar="NAME=WHEP_URL,pid=PID",
        help="another gateway as a profile, already running and pulling the harness's "
        "camera (--rtsp-port): its WHEP endpoint and process id; one stream only",
    )
    parser.add_argument(
        "--rtsp-port", type=int, help="the camera server's port (default: a free one)"
    )
    parser.add_argument("--phase", default="phase1", help="targets to check (targets.toml)")
    parser.add_argument("--out", type=Path, default=ROOT / "perf" / "results" / "latest")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    catalogue = load_toml("profiles.toml")
    profiles = [p for p in args.profiles.split(",") if p]
    unknown = [p for p in profiles if p not in catalogue]
    if unknown:
        parser.error(f"unknown profile(s) {unknown}; known: {sorted(catalogue)}")
    command = "python -m perf.harness " + " ".join(sys.argv[1:] if argv is None else argv)
    externals = {e.name: e for e in args.external}
    if args.external and args.streams != [1]:
        parser.error("--external compares one camera: --streams 1")
    runs = []
    with start_rtsp_server(args.rtsp_port) as rtsp:
        print(f"camera: {rtsp.url(args.mount)}", file=sys.stderr)
        for round_no in range(args.rounds):
            for streams in args.streams:
                for per_stream in args.viewers:
                    for profile in [*profiles, *externals]:
                        load = f"{streams} streams x {per_stream} viewers"
                        print(f"round {round_no + 1}: {profile}, {load} ...", file=sys.stderr)
                        if profile in externals:
                            external = externals[profile]
                            runs.append(measure_external(external, rtsp, args, per_stream))
                        else:
                            spec = catalogue[profile]
                            runs.append(measure(profile, spec, rtsp, args, streams, per_stream))
                        _save(args, command, runs)  # a long run that stops keeps its figures
    _save(args, command, runs)
    report = markdown(command, runs, args.phase)
    (args.out / "report.md").write_text(report)
    chart(runs, args.out / "chart.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A thread per session, or one thread for all: what reading native RTSP sessions costs.

    python -m perf.native_readers --streams 10,100 --seconds 15 --rounds 2

Issue 18 asks to decide by measurement between an event loop and a thread per stream for
the gateway's own RTSP client. This opens N sessions of `NativeRtspSource` on the test
server's ``/clock`` mount (30 fps, about 5 RTP packets a frame) and reads them for a
window in each way, alternately, in one process:

* ``threads``: a thread per session blocked in `read()`, as the gateway runs it today;
* ``selector``: one thread waits on every session's socket (epoll, as an asyncio loop
  would) and feeds each session what its socket holds, without blocking.

Both depacketize the same way (the same `_arrived`); what differs is how many threads
wake and take turns at the GIL. Reported: the process's CPU (a core = 100 %) per stream,
units read per second (every session must keep its 30), and the spread of delay from a
unit's marker packet arriving in the kernel to its leaving the reader is left out: the
gateway's latency probe measures that end to end.
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from media_server.ingest.guard import SourceGuard
from media_server.ingest.native import NativeRtspSource
from media_server.ingest.source import SourceError
from tests.support.rtsp import start_rtsp_server

MODES = ("threads", "selector")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_all(url: str, count: int) -> list[NativeRtspSource]:
    guard = SourceGuard(allow=[], deny=[])
    sources = [NativeRtspSource(url, 10, 10, guard) for _ in range(count)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda s: s.open(), sources))
    return sources


def read_threads(sources: list[NativeRtspSource], seconds: float) -> list[int]:
    counts = [0] * len(sources)
    stop = threading.Event()

    def run(i: int) -> None:
        source = sources[i]
        while not stop.is_set():
            read = source.read()
            if read is not None and read.track == "video":
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(sources))]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return counts


def pump(source: NativeRtspSource) -> int:
    """What the session's socket holds, depacketized without blocking; units out."""
    session = source._session
    assert session is not None
    buffer = session._buffer
    data = session.socket().recv(65536)
    if not data:
        raise SourceError("the camera closed the connection")
    buffer.extend(data)
    now = time.monotonic()
    while len(buffer) >= 4 and buffer.startswith(b"$"):
        size = buffer.at(2) << 8 | buffer.at(3)
        if len(buffer) < 4 + size:
            break
        channel = buffer.take(4)[1]
        source._arrived(channel, buffer.take(size), now)
    units = sum(1 for p in source._out if p.track == "video")
    source._out.clear()
    return units


def read_selector(sources: list[NativeRtspSource], seconds: float) -> list[int]:
    counts = [0] * len(sources)
    selector = selectors.DefaultSelector()
    for i, source in enumerate(sources):
        selector.register(source._session.socket(), selectors.EVENT_READ, i)  # type: ignore[union-attr]
    end = time.monotonic() + seconds

    def run() -> None:
        while (left := end - time.monotonic()) > 0:
            for key, _ in selector.select(min(left, 0.5)):
                counts[key.data] += pump(sources[key.data])

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join()
    selector.close()
    return counts


def measure(mode: str, sources: list[NativeRtspSource], seconds: float) -> dict[str, Any]:
    read = read_threads if mode == "threads" else read_selector
    read(sources, 1.0)  # settle: whatever queued while the other mode ran
    wall, cpu = time.monotonic(), cpu_seconds()
    counts = read(sources, seconds)
    elapsed = time.monotonic() - wall
    percent = (cpu_seconds() - cpu) / elapsed * 100
    rates = [c / elapsed for c in counts]
    return {
        "mode": mode,
        "streams": len(sources),
        "cpu_percent": percent,
        "cpu_percent_per_stream": percent / len(sources),
        "fps_mean": statistics.mean(rates),
        "fps_min": min(rates),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="10,100", help="counts: 10,100")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mount", default="/clock")
    args = parser.parse_args(argv)
    runs = []
    with start_rtsp_server() as rtsp:
        for count in (int(c) for c in args.streams.split(",")):
            sources = open_all(rtsp.url(args.mount), count)
            try:
                for round_no in range(args.rounds):
                    for mode in MODES:
                        run = measure(mode, sources, args.seconds)
                        run["round"] = round_no + 1
                        print(json.dumps(run), file=sys.stderr)
                        runs.append(run)
            finally:
                for source in sources:
                    source.close()
    print("| streams | mode | CPU % (rounds) | per stream | fps mean / min |")
    print("|---|---|---|---|---|")
    for count in sorted({r["streams"] for r in runs}):
        for mode in MODES:
            mine = [r for r in runs if r["streams"] == count and r["mode"] == mode]
            cpus = ", ".join(f"{r['cpu_percent']:.1f}" for r in mine)
            cpu = statistics.mean(r["cpu_percent"] for r in mine)
            fps = statistics.mean(r["fps_mean"] for r in mine)
            low = min(r["fps_min"] for r in mine)
            print(
                f"| {count} | {mode} | {cpu:.1f} ({cpus}) | {cpu / count:.2f} "
                f"| {fps:.1f} / {low:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

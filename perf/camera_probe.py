"""The harness's camera probe: when each stamped frame reaches a reader of the camera
itself, without the gateway in between.

It reads the ``/clock`` mount directly with the gateway's own RTSP client, whose units
leave on their marker bit, notes when each arrives, decodes it (on a thread of its own,
as the latency probe does) and reads its capture stamp. Its latencies are the camera's
own (encoding, packetizing, sending); paired by stamp with the latency probe's arrivals
in the same window, they give the latency the gateway adds to each frame.

    python -m perf.camera_probe RTSP_URL - --warmup W --window T

Prints one JSON line, as the other probes do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from media_server.ingest.guard import SourceGuard
from media_server.ingest.native import NativeRtspSource
from media_server.ingest.source import SourceError
from perf.latency_probe import FrameClock
from perf.probe_cli import probe_main
from tests.support import stamp


def read(url: str, warmup: float, window: float) -> dict[str, Any]:
    clock = FrameClock()
    source = NativeRtspSource(url, 10, 10, SourceGuard([], [], allow_loopback=True))
    error = None
    began = time.monotonic()
    try:
        source.open()
        start, end = began + warmup, began + warmup + window
        while (now := time.monotonic()) < end:
            packet = source.read()
            arrived = stamp.now_us()
            if packet is None:
                break
            if packet.track == "video":
                clock.recording = now >= start
                clock.unit("H264", packet.data, arrived)
    except SourceError as exc:
        error = str(exc)
    finally:
        source.close()
        clock.close()
    return {
        "camera": True,
        "stream": url,
        "error": error,
        "window_s": window,
        "latencies_ms": clock.latencies_ms,
        "arrivals_us": clock.arrivals_us,
        **clock.counts,
    }


async def run(url: str, _stream: str, warmup: float, window: float) -> dict[str, Any]:
    return await asyncio.to_thread(read, url, warmup, window)


if __name__ == "__main__":
    probe_main(run, __doc__)

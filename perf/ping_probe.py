"""The harness's signaling probe: round trips of ``ping`` on an open signaling WebSocket.

A process of its own that does nothing else, so that what it measures is the gateway's
control plane under load and not the client's own work (a decoding viewer in the same
process adds milliseconds to its own replies). It pings ten times a second; when the
gateway closes the socket (a socket that never offers is closed after the connect
timeout) it opens another.

    python -m perf.ping_probe BASE_URL STREAM --warmup W --window T

Prints one JSON line: the round trips in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from perf.probe_cli import probe_main

INTERVAL = 0.1


async def run(base_url: str, stream_id: str, warmup: float, window: float) -> dict[str, Any]:
    rtts: list[float] = []
    error = None
    began = time.monotonic()
    start, end = began + warmup, began + warmup + window
    async with aiohttp.ClientSession() as http:
        try:
            while time.monotonic() < end:
                async with http.ws_connect(f"{base_url}/ws/{stream_id}") as ws:
                    n = 0
                    while not ws.closed and time.monotonic() < end:
                        n += 1
                        sent = time.perf_counter()
                        await ws.send_str(json.dumps({"type": "ping", "id": n}))
                        reply = await ws.receive(timeout=10)
                        if reply.type != aiohttp.WSMsgType.TEXT:
                            break  # closed: open another
                        rtt = (time.perf_counter() - sent) * 1000
                        if json.loads(reply.data).get("id") == n and time.monotonic() >= start:
                            rtts.append(rtt)
                        await asyncio.sleep(INTERVAL)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = repr(exc)
    return {"stream": stream_id, "error": error, "pings_ms": rtts}


if __name__ == "__main__":
    probe_main(run, __doc__)

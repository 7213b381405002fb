"""Many LL-HLS clients at once, as players behind a CDN miss would be: each waits for the
next part with a blocking playlist reload, then fetches it, and again.

    python -m perf.hls_pollers BASE_URL STREAM COUNT WARMUP SECONDS

Prints one JSON line: parts fetched, errors, bytes (parts and playlists, as they came
within the window) and how long part requests took.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from perf.fmp4_probe import media_playlist


async def poller(
    http: aiohttp.ClientSession,
    root: str,
    window: tuple[float, float],
    tally: dict[str, float],
    took: list[float],
) -> None:
    start, end = window
    try:
        async with http.get(f"{root}/media.m3u8") as response:
            text = await response.text()
        parts, _, msn, part = media_playlist(text)
        done = {uri for uri, _ in parts}
        while time.monotonic() < end:
            async with http.get(f"{root}/media.m3u8?_HLS_msn={msn}&_HLS_part={part}") as response:
                text = await response.text()
            tally["bytes"] += len(text)
            parts, _, msn, part = media_playlist(text)
            for uri, _ in parts:
                if uri in done:
                    continue
                started = time.monotonic()
                async with http.get(f"{root}/{uri}") as response:
                    size = len(await response.read())
                if started >= start:
                    tally["bytes"] += size
                    took.append((time.monotonic() - started) * 1000)
                    tally["parts"] += 1
                done.add(uri)
            if len(done) > 200:
                done = {uri for uri, _ in parts}
    except (aiohttp.ClientError, OSError, TimeoutError):
        tally["errors"] += 1


async def main(base: str, stream: str, count: int, warmup: float, seconds: float) -> None:
    root = f"{base}/hls/{stream}"
    tally = {"parts": 0.0, "errors": 0.0, "bytes": 0.0}
    took: list[float] = []
    start = time.monotonic() + warmup
    end = start + seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        async with http.get(f"{root}/index.m3u8") as response:
            await response.read()
        await asyncio.gather(*(poller(http, root, (start, end), tally, took) for _ in range(count)))
    took.sort()
    print(
        json.dumps(
            {
                "parts": int(tally["parts"]),
                "errors": int(tally["errors"]),
                "bytes": int(tally["bytes"]),
                "ages_ms": took[:: max(1, len(took) // 500)],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    base, stream, count, warmup, seconds = sys.argv[1:6]
    asyncio.run(main(base, stream, int(count), float(warmup), float(seconds)))

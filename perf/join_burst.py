"""Offers answered in a burst: N viewers offer at once; offer to answer, per viewer.

    python -m perf.join_burst --profiles engine-native-rtsp --viewers 1,10 --bursts 10

Issue 18 asks that a burst of joins be answered as fast as MediaMTX and go2rtc answer it.
For each profile (a gateway of ours, started with the profile's settings and one stream
of the test camera) or external gateway (``--external NAME=WHEP_URL,pid=PID``, as in
harness.py), and each N: N aiortc peers make their offers first (not timed), then post
them to the WHEP endpoint at once; the time from each POST to its answer is one sample.
The viewers then leave (DELETE) and the next burst starts. Profiles alternate burst by
burst, so they share the machine's mood. ``--py-spy DIR`` saves a profile of each of our
gateways over its bursts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection
from yarl import URL

from perf.harness import (
    UNLIMITED,
    External,
    external_profile,
    gateways,
    load_toml,
    percentile,
    register,
    take_profile,
    wait_live,
)
from tests.support.gateway import Gateway
from tests.support.rtsp import start_rtsp_server


async def burst(whep: str, count: int) -> list[float]:
    """One burst: `count` offers posted at once; each one's offer-to-answer in ms."""
    peers = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(count)]
    for pc in peers:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:

        async def offer(pc: RTCPeerConnection) -> tuple[float, str | None]:
            started = time.perf_counter()
            async with http.post(
                whep, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
            ) as resp:
                await resp.read()
                took = (time.perf_counter() - started) * 1000
                if resp.status != 201:
                    raise RuntimeError(f"WHEP {resp.status}")
                return took, resp.headers.get("Location")

        answered = await asyncio.gather(*(offer(pc) for pc in peers))
        for _, location in answered:
            if location:
                with contextlib.suppress(aiohttp.ClientError):
                    await http.delete(URL(whep).join(URL(location)))
    await asyncio.gather(*(pc.close() for pc in peers))
    return [took for took, _ in answered]


@contextlib.contextmanager
def ours(profile: str, camera: str) -> Iterator[Gateway]:
    spec = load_toml("profiles.toml")[profile]
    env = {**UNLIMITED, **{k: str(v) for k, v in spec.get("env", {}).items()}}
    with gateways(1, env) as (gw,):
        register(gw, "cam", camera, spec.get("mode", "auto"))
        wait_live(gw, ["cam"])
        yield gw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="engine-native-rtsp", help="ours, comma-separated")
    parser.add_argument("--external", type=external_profile, action="append", default=[])
    parser.add_argument("--viewers", default="1,10", help="burst sizes")
    parser.add_argument("--bursts", type=int, default=10, help="bursts per profile and size")
    parser.add_argument("--rtsp-port", type=int)
    parser.add_argument("--mount", default="/clock")
    parser.add_argument("--py-spy", type=Path, help="save a py-spy profile of ours here")
    parser.add_argument("--out", type=Path, default=Path("perf/results/join-burst.json"))
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.viewers.split(",")]
    samples: dict[tuple[str, int], list[float]] = {}
    with contextlib.ExitStack() as stack:
        rtsp = stack.enter_context(start_rtsp_server(args.rtsp_port))
        camera = rtsp.url(args.mount)
        print(f"camera: {camera}", file=sys.stderr)
        targets: dict[str, str] = {}
        mine: dict[str, Gateway] = {}
        for profile in [p for p in args.profiles.split(",") if p]:
            gw = mine[profile] = stack.enter_context(ours(profile, camera))
            targets[profile] = gw.url("/api/v1/streams/cam/whep")
        external: External
        for external in args.external:
            targets[external.name] = external.whep
        profilers = []
        if args.py_spy is not None:
            seconds = max(2, int(len(sizes) * args.bursts * len(targets) * 0.6))
            for profile, gw in mine.items():
                path = args.py_spy / f"join-burst-{profile}.json"
                thread = threading.Thread(target=take_profile, args=(gw, seconds, False, path))
                thread.start()
                profilers.append(thread)
        for _ in range(args.bursts):
            for size in sizes:
                for name, whep in targets.items():
                    took = asyncio.run(burst(whep, size))
                    samples.setdefault((name, size), []).extend(took)
                    time.sleep(0.3)  # the last burst's viewers gone
        for thread in profilers:
            thread.join()
    rows: list[dict[str, Any]] = []
    print("| gateway | burst | answer P50 | answer P99 | mean |")
    print("|---|---|---|---|---|")
    for (name, size), took in samples.items():
        row = {
            "gateway": name,
            "burst": size,
            "p50_ms": percentile(took, 50),
            "p99_ms": percentile(took, 99),
            "mean_ms": statistics.mean(took),
            "samples": len(took),
        }
        rows.append(row)
        print(
            f"| {name} | {size} | {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms "
            f"| {row['mean_ms']:.1f} ms |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m perf.join_burst " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

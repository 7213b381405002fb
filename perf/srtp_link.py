"""The native send path with pylibsrtp's libsrtp against one linked to another libsrtp.

The engine's C part used to link Debian's libsrtp2; it now calls the libsrtp inside
pylibsrtp. This measures both side by side in one process, alternating rounds: CPU per
packet of `send_unit` (header, SRTP protect, sendmmsg) to `--viewers` viewers, sent to a
loopback port nobody listens on (the kernel drops them, nothing queues).

    python -m perf.srtp_link --baseline /path/to/_fanout.so [--viewers 50] [--rounds 6]

`--baseline` is the engine's C file of an earlier commit, compiled against libsrtp2
(`gcc -O2 -shared -fPIC -I<python include> -o _fanout.so _fanout.c -lsrtp2`): its Viewer
takes `profile` and `key` itself.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import socket
import statistics
import time
from types import ModuleType
from typing import Any

from media_server.engine import sendpath
from tests.support.rtsp import free_port

PROFILE = 1  # SRTP_AES128_CM_SHA1_80, what browsers negotiate
KEY = bytes(range(30))
PAYLOADS = (*(bytes([i]) * 1200 for i in range(6)), b"\x05" * 400)


def _load(path: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader("_fanout", path)
    spec = importlib.util.spec_from_file_location("_fanout", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _viewers(make: Any, count: int, sock: socket.socket, port: int) -> list[Any]:
    common = {
        "fd": sock.fileno(),
        "host": "127.0.0.1",
        "port": port,
        "profile": PROFILE,
        "key": KEY,
        "payload_type": 102,
        "seq": 1,
        "ts_offset": 0,
        "mid_id": 1,
        "mid": b"0",
        "abs_send_time_id": 3,
        "rtx_ssrc": 1,
        "rtx_payload_type": -1,
        "rtx_seq": 1,
        "gso": False,
    }
    return [make(ssrc=0x1000 + i, **common) for i in range(count)]


def _round(send_unit: Any, viewers: list[Any], seconds: float) -> float:
    """CPU seconds per packet over `seconds` of sending."""
    group = tuple(viewers)
    packets = 0
    timestamp = 0
    cpu = time.thread_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            send_unit(group, PAYLOADS, timestamp, packets)
            timestamp += 3000
            packets += len(PAYLOADS) * len(group)
    return (time.thread_time() - cpu) / packets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="_fanout.so linked to libsrtp2")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    current = sendpath.load("native")
    assert current.name == "native", "the native send path is not built"
    baseline = _load(args.baseline)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = free_port()  # nobody listens: the kernel drops what arrives
    paths = {
        "pylibsrtp": (current.send_unit, _viewers(current.viewer, args.viewers, sock, port)),
        "linked": (
            baseline.send_unit,
            _viewers(baseline.Viewer, args.viewers, sock, port),
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(args.rounds):
        for name in list(paths) if i % 2 == 0 else list(paths)[::-1]:
            send_unit, viewers = paths[name]
            results[name].append(_round(send_unit, viewers, args.seconds))
    ours, linked = (statistics.median(results[n]) for n in ("pylibsrtp", "linked"))
    print(f"viewers {args.viewers}, {args.rounds} rounds of {args.seconds:g} s each (median)")
    print(f"  pylibsrtp's libsrtp: {ours * 1e6:.2f} us CPU per packet")
    print(f"  linked libsrtp2:     {linked * 1e6:.2f} us CPU per packet")
    print(f"  ratio pylibsrtp / linked: x{ours / linked:.2f}")


if __name__ == "__main__":
    main()

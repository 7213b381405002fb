"""Garbage collector policies: the interpreter's thresholds, or relaxed ones.

With hundreds of viewers the gateway holds millions of long-lived objects (peer
connections, their transports and buffers). CPython's full collection scans all of them,
and with the default thresholds it runs often enough to stop every thread for tens of
milliseconds per second (PHASES.md). Most per-packet garbage is freed by reference
counting; the cyclic collector only needs to run rarely.
"""

from __future__ import annotations

import gc

POLICIES = ("standard", "relaxed")
#: Allocations (net of frees) between young collections, and the older generations' ratios.
RELAXED = (50_000, 20, 100)


def apply_gc_policy(name: str) -> None:
    if name == "relaxed":
        gc.set_threshold(*RELAXED)
    elif name != "standard":
        raise ValueError(f"unknown gc policy {name!r}; known: {', '.join(POLICIES)}")

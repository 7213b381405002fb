"""Event loop implementations: the standard asyncio loop, or uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LOOPS = ("asyncio", "uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for the named event loop (used by the CLI's asyncio.Runner)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown event loop {name!r}; known: {', '.join(LOOPS)}")

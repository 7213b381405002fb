"""A version number that moves whenever what a stream list shows has changed.

Streams and the manager call :meth:`Changes.notify` (state, viewers, media info, streams
added or removed); the live console's event stream waits on it instead of the browser
polling. Waiters are woken together and each re-reads the list once, however many
changes came in meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> int:
        """The version once it differs from `seen`, or after `timeout` seconds anyway."""
        if self.version == seen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        return self.version

"""Background work the gateway starts and does not await at once.

asyncio keeps only weak references to tasks: one nobody holds may be collected before it
ends. A `Tasks` holds each until it is done, and can list those still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Tasks:
    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    def pending(self) -> list[asyncio.Task[Any]]:
        return list(self._running)

    async def cancel(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        running = self.pending()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

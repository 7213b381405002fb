"""The one holder of background work: tasks are kept until done, and cancel ends them."""

from __future__ import annotations

import asyncio

from media_server.tasks import Tasks


async def test_holds_until_done_and_cancels_the_rest() -> None:
    tasks = Tasks()
    quick = tasks.spawn(asyncio.sleep(0))
    forever = tasks.spawn(asyncio.Event().wait())
    await quick
    await asyncio.sleep(0)
    assert tasks.pending() == [forever]
    await tasks.cancel()
    assert forever.cancelled() and tasks.pending() == []

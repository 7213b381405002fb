"""The loop monitor notices a blocked event loop (a real loop, really blocked)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from media_server.loopwatch import LoopMonitor


async def test_block_is_seen_logged_and_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopMonitor(block_threshold=0.5, window=1.5)
    monitor.start()
    try:
        await asyncio.sleep(0.6)
        assert monitor.recent_block() == 0
        with caplog.at_level(logging.WARNING, logger="media_server.loopwatch"):
            time.sleep(1.2)  # block the loop the way a bad call would
            await asyncio.sleep(0.6)
        assert monitor.recent_block() >= 1.0
        assert "event loop blocked" in caplog.text and "time.sleep(1.2)" in caplog.text
        await asyncio.sleep(1.6)
        assert monitor.recent_block() == 0  # outside the window again
    finally:
        monitor.stop()

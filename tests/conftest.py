"""Shared fixtures: one real RTSP server, Redis server and gateway process for the session
(used by tests/e2e; tests/unit needs none of them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.redis_server import RedisServer, run_redis
from tests.support.rtsp import RtspServer, start_rtsp_server


@pytest.fixture(scope="session")
def rtsp() -> Iterator[RtspServer]:
    with start_rtsp_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    with run_gateway(env=GENEROUS) as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/e2e run real processes: mark them, so `-m "not e2e"` (or the
    path tests/unit) runs only the in-process unit tests, in seconds."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the shared gateway shows the gateway's recent log."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    gw = getattr(item, "funcargs", {}).get("gateway")
    if report.failed and isinstance(gw, Gateway):
        report.sections.append(("gateway log", gw.describe(80)))

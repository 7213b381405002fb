"""Profiling the running gateway with py-spy through the control plane."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e


async def test_profile_returns_a_speedscope_file(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    url = f"{gateway.base_url}/api/v1/admin/profile"
    first = asyncio.ensure_future(http.post(url, json={"seconds": 2, "rate": 50}))
    await asyncio.sleep(0.5)
    async with http.post(url, json={"seconds": 1}) as busy:
        assert busy.status == 409  # one profile at a time
    async with await first as resp:
        assert resp.status == 200, await resp.text()
        assert "attachment" in resp.headers["Content-Disposition"]
        profile = await resp.json()
    assert "speedscope" in profile["$schema"]
    frames = [frame["name"] for frame in profile["shared"]["frames"]]
    assert frames and any("asyncio" in f or "select" in f or "run" in f for f in frames)


@pytest.mark.parametrize("options", [{"native": True}, {"gil": True}])
async def test_profile_with_native_frames_or_the_gil_holder(
    http: aiohttp.ClientSession, gateway: Gateway, options: dict[str, bool]
) -> None:
    url = f"{gateway.base_url}/api/v1/admin/profile"
    async with http.post(url, json={"seconds": 1, **options}) as resp:
        assert resp.status == 200, await resp.text()
        profile = await resp.json()
    # An idle gateway may give py-spy nothing to sample: the document, not its samples.
    assert "speedscope" in profile["$schema"]
    assert isinstance(profile["profiles"], list) and "frames" in profile["shared"]


async def test_profile_rejects_bad_requests(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    url = f"{gateway.base_url}/api/v1/admin/profile"
    for body in ({"seconds": 0}, {"seconds": 500}, {"format": "pdf"}, {"nope": 1}):
        async with http.post(url, json=body) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "invalid-body"

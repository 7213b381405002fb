"""The OpenAPI document stays true to the routes, and fuzzing it finds no 5xx or hang."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media_server.api.openapi import DOCUMENT
from media_server.app import build_app
from media_server.config import load_settings
from tests.support.gateway import GENEROUS, Gateway, run_gateway
from tests.support.viewer import Viewer

METHODS = {"get", "post", "put", "patch", "delete"}


def test_document_matches_routes() -> None:
    app = build_app(load_settings(demo=False), asyncio.new_event_loop())
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None
        and route.method.lower() in METHODS
        and (
            route.resource.canonical.startswith(("/api/", "/hls/", "/ws/"))
            or route.resource.canonical in ("/metrics", "/stats")
        )
    }
    documented = {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }
    assert served == documented


async def test_document_is_served(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    async with http.get(f"{gateway.base_url}/api/v1/openapi.json") as resp:
        assert resp.status == 200
        assert (await resp.json())["openapi"].startswith("3.1")


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[Gateway]:
    """Only 127.0.0.1 may be a source: no generated host name is ever resolved."""
    env = {**GENEROUS, "MEDIA_SERVER_SOURCES__ALLOW": '["127.0.0.1/32"]'}
    with run_gateway(env=env) as gw:
        yield gw


# SDP bodies go on the wire as text.
schemathesis.serializer.alias(["application/sdp", "application/trickle-ice-sdpfrag"], "text/plain")
# The profiler samples for up to two minutes per call, and the event stream never ends:
# both have tests of their own, as has the WebSocket (test_signaling_fuzz).
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(
    path=["/api/v1/admin/profile", "/api/v1/events", "/ws/{stream_id}"]
)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_rest_fuzz(case: schemathesis.Case[Any], fuzz_gateway: Gateway) -> None:
    response = case.call(base_url=fuzz_gateway.base_url, timeout=10)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
    if response.status_code >= 400 and case.path != "/metrics":
        body = response.json()
        assert set(body) == {"error"} and body["error"]["message"], body


def _real_offer() -> str:
    """A browser-like offer from a real aiortc peer, as raw material for mutations."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


OFFER_LINES = _real_offer().split("\r\n")


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    """A real offer with lines dropped, repeated, garbled or cut: hostile SDP."""
    lines = list(OFFER_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "garble", "truncate", "huge"]))
        if action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        elif action == "garble":
            lines[i] = lines[i][:2] + draw(st.text(max_size=40))
        elif action == "truncate":
            lines = lines[:i]
        else:
            lines[i] = lines[i] + "x" * draw(st.integers(100, 5000))
        if not lines:
            lines = ["v=0"]
    return json.dumps({"type": "offer", "sdp": "\r\n".join(lines)})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["offer", "candidate", "answer", "bye"])},
        optional={"sdp": st.text(max_size=300), "candidate": json_values},
    ).map(json.dumps),
    st.builds(
        lambda c, mid, idx: json.dumps(
            {
                "type": "candidate",
                "candidate": {"candidate": c, "sdpMid": mid, "sdpMLineIndex": idx},
            }
        ),
        st.text(max_size=120).map(lambda t: "candidate:" + t),
        st.one_of(st.none(), st.text(max_size=3), st.integers()),
        st.one_of(st.none(), st.integers(-2, 3), st.text(max_size=2)),
    ),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(messages | mutated_offers(), min_size=1, max_size=6))
def test_signaling_fuzz(batch: list[str], fuzz_gateway: Gateway) -> None:
    """Any message sequence gets answers or errors; the socket stays open, nothing hangs."""

    async def run() -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{fuzz_gateway.base_url}/ws/demo") as ws,
        ):
            for raw in batch:
                await ws.send_str(raw)
            await ws.send_json({"type": "dance"})  # a sentinel: its error comes last
            while True:
                msg = await ws.receive_json(timeout=10)
                assert msg["type"] in ("answer", "error"), msg
                if (
                    msg["type"] == "error"
                    and msg["code"] == "unknown-type"
                    and "dance" in msg["message"]
                ):
                    break
            assert not ws.closed

    asyncio.run(run())


async def test_gateway_healthy_after_fuzzing(
    http: aiohttp.ClientSession, fuzz_gateway: Gateway
) -> None:
    viewer = Viewer(fuzz_gateway.base_url, "demo")
    await viewer.connect()
    await viewer.wait_frames(20)
    await viewer.close()
    assert "Traceback" not in fuzz_gateway.stderr_text(), fuzz_gateway.describe()

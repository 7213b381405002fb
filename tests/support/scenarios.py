"""Scenarios that run inside a private network namespace (tests/support/netns.py), where
169.254.169.254 is on loopback with a trap on it: each drives a real gateway as an
attacker would and prints, as JSON, what the trap and the gateway said.

    ip netns exec NS python -m tests.support.scenarios candidates
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from tests.support.fake_camera import Behaviour, FakeCamera
from tests.support.gateway import FAST, GENEROUS, run_gateway
from tests.support.rtsp import start_rtsp_server
from tests.support.trap import Trap

METADATA = "169.254.169.254"
STUN = 3478


def candidate(host: str, port: int, foundation: int = 1) -> str:
    return f"a=candidate:{foundation} 1 udp 2122260223 {host} {port} typ host"


async def _offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def candidates() -> dict[str, Any]:
    """A viewer's offer and trickle name the metadata address: nothing may reach it; the
    trickle is refused, a session takes at most so many, and PATCH has a rate."""
    trap = Trap(METADATA, STUN)
    result: dict[str, Any] = {}
    with run_gateway(env={**GENEROUS}) as gw:
        offer = (await _offer()).replace(
            "a=mid:0\r\n", "a=mid:0\r\n" + candidate(METADATA, STUN) + "\r\n", 1
        )
        async with aiohttp.ClientSession() as http:
            whep = gw.url("/api/v1/streams/demo/whep")
            headers = {"Content-Type": "application/sdp"}
            async with http.post(whep, data=offer, headers=headers) as resp:
                result["offer_status"] = resp.status
                session = gw.base_url + resp.headers.get("Location", "")
            trickle = {"Content-Type": "application/trickle-ice-sdpfrag"}

            async def patch(lines: list[str]) -> tuple[int, str]:
                body = "a=mid:0\r\n" + "".join(line + "\r\n" for line in lines)
                async with http.patch(session, data=body, headers=trickle) as resp:
                    error = (await resp.json())["error"]["code"] if resp.status >= 400 else ""
                    return resp.status, error

            result["trickle_metadata"] = await patch([candidate(METADATA, STUN + 1, 2)])
            result["trickle_many"] = [
                await patch([candidate("127.0.0.1", 40000 + i, 10 + i)]) for i in range(22)
            ]
            await asyncio.sleep(3)  # ICE checks go out at once: give them time to
            result["flood"] = [(await patch([]))[0] for _ in range(80)]
        result["log"] = gw.stderr_text()[-3000:]
    trap.close()
    result["datagrams"] = trap.datagrams
    result["connections"] = trap.connections
    return result


async def _wait_for(http: aiohttp.ClientSession, url: str, done: Any, timeout: float) -> Any:
    """The stream's view once `done(view)`, or the last one after `timeout` seconds."""
    view: Any = None
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with http.get(url) as resp:
            view = await resp.json()
        if done(view):
            break
        await asyncio.sleep(0.2)
    return view


async def redirects() -> dict[str, Any]:
    """Cameras redirect to the metadata address, to an allowed camera, and name it as
    their UDP source: the trap must see nothing, the allowed redirect must play."""
    trap = Trap(METADATA, 8554)
    denied = FakeCamera(Behaviour(redirect=f"rtsp://{METADATA}:8554/x"))
    spelled = FakeCamera(Behaviour(redirect="rtsp://2852039166:8554/x"))  # the same, in decimal
    source = FakeCamera(Behaviour(transport_extra=f";source={METADATA}"))
    result: dict[str, Any] = {}
    with start_rtsp_server() as real, run_gateway("--no-demo", env={**GENEROUS, **FAST}) as gw:
        allowed = FakeCamera(Behaviour(redirect=real.url("/small")))
        async with aiohttp.ClientSession() as http:
            cams = {"denied": denied, "spelled": spelled, "allowed": allowed}
            for name, camera in cams.items():
                body = {"id": name, "url": camera.url()}
                async with http.post(gw.url("/api/v1/streams"), json=body) as resp:
                    assert resp.status == 201, await resp.text()
            body = {"id": "source", "url": source.url(), "transport": "udp"}
            async with http.post(gw.url("/api/v1/streams"), json=body) as resp:
                assert resp.status == 201, await resp.text()
            for name in ("denied", "spelled"):
                view = await _wait_for(
                    http, gw.url(f"/api/v1/streams/{name}"), lambda v: v["state"] == "failed", 15
                )
                result[name] = {"state": view["state"], "error": view["error"]}
            view = await _wait_for(
                http, gw.url("/api/v1/streams/allowed"), lambda v: v["state"] == "live", 20
            )
            result["allowed"] = {"state": view["state"], "error": view["error"]}
            await asyncio.sleep(2)  # FFmpeg's UDP goes out right after SETUP and PLAY
            result["source_requests"] = source.behaviour.requests
        result["log"] = gw.stderr_text()[-3000:]
        allowed.close()
    for camera in (denied, spelled, source):
        camera.close()
    trap.close()
    result["datagrams"] = trap.datagrams
    result["connections"] = trap.connections
    return result


SCENARIOS = {"candidates": candidates, "redirects": redirects}

if __name__ == "__main__":
    print(json.dumps(asyncio.run(SCENARIOS[sys.argv[1]]())))

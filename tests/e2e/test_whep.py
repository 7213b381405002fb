"""WHEP as the draft says: Location, ETag and Accept-Patch; trickle PATCH; no ICE restart;
DELETE 200. The peer is a real aiortc one, so the offer's ICE credentials are real."""

from __future__ import annotations

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from media_server.api.whep import ice_links
from media_server.config import IceServer
from tests.support.gateway import Gateway

TRICKLE = "application/trickle-ice-sdpfrag"


def ice(sdp: str) -> tuple[str, str]:
    lines = sdp.splitlines()
    ufrag = next(line for line in lines if line.startswith("a=ice-ufrag:"))[12:]
    pwd = next(line for line in lines if line.startswith("a=ice-pwd:"))[10:]
    return ufrag, pwd


@pytest.mark.e2e
async def test_whep_session_resource(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    try:
        async with http.post(
            f"{gateway.base_url}/api/v1/streams/demo/whep",
            data=offer,
            headers={"Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201, await resp.text()
            assert resp.content_type == "application/sdp"
            location = resp.headers["Location"]
            etag = resp.headers["ETag"]
            assert resp.headers["Accept-Patch"] == TRICKLE
            assert resp.headers["X-Media-Transport"] == "engine"  # the passthrough default
        session = gateway.base_url + location
        ufrag, pwd = ice(offer)
        fragment = f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=mid:0\r\na=end-of-candidates\r\n"

        async def patch(body: str, **headers: str) -> aiohttp.ClientResponse:
            async with http.patch(
                session, data=body, headers={"Content-Type": TRICKLE, **headers}
            ) as resp:
                await resp.read()
                return resp

        assert (await patch(fragment, **{"If-Match": etag})).status == 204
        assert (await patch(fragment)).status == 204  # If-Match is optional
        assert (await patch(fragment, **{"If-Match": '"someone-else"'})).status == 412
        assert (await patch(fragment, **{"If-Match": "*"})).status == 422  # ICE restart
        restart = fragment.replace(ufrag, "newufrag1").replace(pwd, "a-new-password-of-22+")
        refused = await patch(restart, **{"If-Match": etag})
        assert refused.status == 422
        async with http.patch(session, data=fragment, headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415
        async with http.delete(session) as resp:
            assert resp.status == 200
        async with http.delete(session) as resp:
            assert resp.status == 404
        assert (await patch(fragment)).status == 404
    finally:
        await pc.close()


def test_configured_ice_servers_become_link_headers() -> None:
    servers = [
        IceServer(urls=["stun:stun.example.net:3478"]),
        IceServer(urls=["turn:turn.example.net:3478?transport=udp"], username="u", credential="p"),
    ]
    assert ice_links(servers) == [
        '<stun:stun.example.net:3478>; rel="ice-server"',
        '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="u"; '
        'credential="p"; credential-type="password"',
    ]
    assert ice_links([]) == []

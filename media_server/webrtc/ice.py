"""ICE setup: explicit servers only (and a loopback candidate, see `gather_loopback`).

aiortc falls back to a public STUN server when `iceServers` is unset, so the configuration
is always explicit: with no server configured the gateway never contacts the internet.
"""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCIceServer

from media_server.config import WebRTCSettings


def rtc_configuration(settings: WebRTCSettings) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
        for s in settings.ice_servers
    ]
    return RTCConfiguration(iceServers=servers)

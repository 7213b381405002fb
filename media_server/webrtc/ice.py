"""ICE setup: explicit servers only, and a loopback candidate for viewers on the same host.

aiortc falls back to a public STUN server when `iceServers` is unset, so the configuration
is always explicit. aioice leaves 127.0.0.1 out of its host candidates, which strands a
viewer on the same machine when loopback is the only interface (containers, test rigs).
"""

from __future__ import annotations

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from media_server.config import WebRTCSettings

_original_host_addresses = aioice.ice.get_host_addresses


def _host_addresses_with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses: list[str] = list(_original_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    if use_ipv4 and "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    return addresses


def enable_loopback_candidates() -> None:
    """Make aioice gather a 127.0.0.1 host candidate as well (idempotent)."""
    aioice.ice.get_host_addresses = _host_addresses_with_loopback


def rtc_configuration(settings: WebRTCSettings) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
        for s in settings.ice_servers
    ]
    return RTCConfiguration(iceServers=servers)

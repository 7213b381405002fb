"""Who is calling: the bearer token of a request, checked against the right it needs."""

from __future__ import annotations

import functools
import hashlib
import ipaddress

from aiohttp import web

from media_server.api.context import gateway
from media_server.auth.tokens import Principal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


VERIFIED = "verified_token"  # request key: the token that authenticated this request


def require(request: web.Request, scope: str) -> Principal | None:
    """The control-plane caller, who must hold `scope` (raises AuthError: 401 or 403)."""
    token = bearer(request)
    principal = gateway(request).auth.control(token, scope)
    if principal is not None:
        request[VERIFIED] = token
    return principal


def require_viewer(request: web.Request, stream_id: str) -> Principal | None:
    """May this request watch `stream_id`? Browsers' WebSockets cannot set headers, so a
    `?token=` query parameter counts as well."""
    token = bearer(request) or request.query.get("token")
    principal = gateway(request).auth.viewer(token, stream_id)
    if principal is not None:
        request[VERIFIED] = token
    return principal


def client_key(request: web.Request) -> str:
    """What rate limits and per-client quotas count by: a token only once it has been
    verified (any other string would give a caller a fresh quota), else the address."""
    token = request.get(VERIFIED)
    if isinstance(token, str):
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return "ip:" + client_address(request)


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in proxies)


def client_address(request: web.Request) -> str:
    """The caller's address: the peer's, or when the peer is a trusted proxy
    (http.trusted_proxies), the last address in X-Forwarded-For that is not one (what a
    proxy appends can be trusted, what the client sent cannot)."""
    remote = request.remote or "unknown"
    proxies = _networks(tuple(gateway(request).settings.http.trusted_proxies))
    if not proxies or not _trusted(remote, proxies):
        return remote
    hops = [
        hop.strip()
        for value in request.headers.getall("X-Forwarded-For", [])
        for hop in value.split(",")
    ]
    for hop in reversed(hops):
        if _trusted(hop, proxies):
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return remote  # garbage where an address should be: count the proxy
    return remote

"""Who is calling: the bearer token of a request, checked against the right it needs."""

from __future__ import annotations

import hashlib

from aiohttp import web

from media_server.api.context import gateway
from media_server.auth.tokens import Principal


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
    return "ip:" + (request.remote or "unknown")

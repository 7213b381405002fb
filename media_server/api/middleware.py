"""What every request and response goes through: request ids, security headers, CORS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from media_server.api.context import GATEWAY
from media_server.api.errors import error_response
from media_server.logs import new_request_id, request_id, stream_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Pages load only their own scripts and styles; media and signaling go to this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
#: A year; not includeSubDomains, which would bind hosts this gateway does not serve.
HSTS = "max-age=31536000"
CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, If-Match"
CORS_EXPOSE = "Location, ETag, Link, Accept-Patch, Retry-After, X-Media-Transport, X-Request-Id"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id (for every log line it causes) and answer CORS preflights."""
    request_id.set(new_request_id(request.headers.get("X-Request-Id")))
    stream_id.set(request.match_info.get("stream_id"))
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        origin = _allowed_origin(request)
        if origin is None:
            return error_response(403, "cors-forbidden", "cross-origin requests are not allowed")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )
    return await handler(request)


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    allowed = request.app[GATEWAY].settings.http.cors_origins
    if not origin or not allowed:
        return None
    return origin if "*" in allowed or origin in allowed else None


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for every response, WebSocket handshakes and files too."""
    response.headers["X-Request-Id"] = request_id.get()
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.secure:  # served over TLS by this gateway: browsers keep to HTTPS
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
    origin = _allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE
        response.headers["Vary"] = "Origin"

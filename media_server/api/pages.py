"""Browser pages: the console, the player and a WHEP player. Static files; the data comes
from the API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from media_server.api.access import require_viewer
from media_server.api.cluster import redirect_to_origin
from media_server.api.context import gateway
from media_server.api.middleware import CSP

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

routes = web.RouteTableDef()

CSP_WHEP_PLAYER = CSP.replace("connect-src 'self' ws: wss:", "connect-src 'self' http: https:")


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "index.html")


@routes.get("/view/{stream_id}")
async def view(request: web.Request) -> web.FileResponse:
    require_viewer(request, request.match_info["stream_id"])
    stream = gateway(request).streams.get(request.match_info["stream_id"])
    if stream is not None:
        redirect_to_origin(request, stream)
    return web.FileResponse(WEB_ROOT / "view.html")


@routes.get("/whep")
async def whep_player(request: web.Request) -> web.FileResponse:
    """Plays any WHEP endpoint, so its fetches may go to another origin (CORS decides)."""
    response = web.FileResponse(WEB_ROOT / "whep.html")
    response.headers["Content-Security-Policy"] = CSP_WHEP_PLAYER
    return response


routes.static("/static", WEB_ROOT)

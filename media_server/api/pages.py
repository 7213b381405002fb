"""Browser pages: the stream list and the player. Static files; the data comes from the API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from media_server.api.access import require_viewer

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "index.html")


@routes.get("/view/{stream_id}")
async def view(request: web.Request) -> web.FileResponse:
    require_viewer(request, request.match_info["stream_id"])
    return web.FileResponse(WEB_ROOT / "view.html")


routes.static("/static", WEB_ROOT)

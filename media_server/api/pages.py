"""Browser pages: the stream list and the player. Static files; the data comes from the API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "index.html")


@routes.get("/view/{stream_id}")
async def view(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "view.html")


routes.static("/static", WEB_ROOT)

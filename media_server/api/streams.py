"""REST: register, list, show and remove streams; snapshots; issue viewer tokens."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from media_server.api.access import client_key, require, require_viewer
from media_server.api.context import Gateway, gateway
from media_server.api.errors import ApiError
from media_server.api.schemas import parse, read_json
from media_server.auth.tokens import ISSUE, READ, WRITE
from media_server.ingest.guard import SourceDenied
from media_server.model.registration import NewRegistration
from media_server.store.registry import StoreError
from media_server.streams.manager import CapacityError, ManagedByConfig, StreamConflict
from media_server.streams.snapshot import NoPicture
from media_server.streams.stream import Stream
from media_server.streams.view import StreamView

routes = web.RouteTableDef()


class ViewerTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    ttl: float = Field(3600, gt=0, description="seconds; capped by auth.viewer_token_ttl")


class ViewerToken(BaseModel):
    """A signed, expiring token that opens one stream's page, WebSocket and WHEP."""

    stream: str
    token: str
    expires_at: float = Field(description="Unix time")
    view_url: str = Field(description="the player's page for this stream, with the token")


def describe(gw: Gateway, stream: Stream) -> StreamView:
    """A stream as this node's API shows it (in a cluster, with the cluster's part)."""
    return gw.cluster.view(stream) if gw.cluster is not None else stream.view()


def get_stream(request: web.Request) -> Stream:
    stream_id = request.match_info["stream_id"]
    stream = gateway(request).streams.get(stream_id)
    if stream is None:
        raise ApiError(404, "stream-not-found", f"no stream '{stream_id}'")
    return stream


@routes.post("/api/v1/streams")
async def create_stream(request: web.Request) -> web.Response:
    gw = gateway(request)
    require(request, WRITE)
    gw.registrations.check(client_key(request))
    body = parse(NewRegistration, await read_json(request))
    registration = body.registration()
    try:
        gw.guard.check_url(registration.url)
    except SourceDenied as exc:
        raise ApiError(400, "source-not-allowed", str(exc)) from None
    if body.id is None:
        same = gw.streams.find_same(registration)
        if same is not None:
            return web.json_response(describe(gw, same).body(), status=200)
    try:
        stream, created = await gw.streams.create(registration)
    except StreamConflict as exc:
        raise ApiError(409, "stream-conflict", str(exc)) from None
    except CapacityError as exc:
        raise ApiError(503, "capacity", str(exc)) from None
    except StoreError as exc:
        raise ApiError(503, "registry-unavailable", str(exc)) from None
    response = web.json_response(describe(gw, stream).body(), status=201 if created else 200)
    response.headers["Location"] = f"/api/v1/streams/{stream.id}"
    return response


def stream_list(gw: Gateway) -> dict[str, Any]:
    """The body of GET /api/v1/streams (also each event of /api/v1/events)."""
    return {"streams": [describe(gw, s).body() for s in gw.streams.all()]}


@routes.get("/api/v1/streams")
async def list_streams(request: web.Request) -> web.Response:
    require(request, READ)
    return web.json_response(stream_list(gateway(request)))


@routes.get("/api/v1/streams/{stream_id}")
async def show_stream(request: web.Request) -> web.Response:
    require(request, READ)
    return web.json_response(describe(gateway(request), get_stream(request)).body())


@routes.delete("/api/v1/streams/{stream_id}")
async def delete_stream(request: web.Request) -> web.Response:
    require(request, WRITE)
    stream = get_stream(request)
    gw = gateway(request)
    try:
        await gw.streams.delete(stream.id)
    except ManagedByConfig as exc:
        raise ApiError(409, "managed-by-config", str(exc)) from None
    except StoreError as exc:
        raise ApiError(503, "registry-unavailable", str(exc)) from None
    await gw.sessions.close_stream(stream.id)
    return web.Response(status=204)


@routes.post("/api/v1/streams/{stream_id}/viewer-tokens")
async def issue_viewer_token(request: web.Request) -> web.Response:
    """A signed, expiring token that opens one stream's page, WebSocket and WHEP."""
    require(request, ISSUE)
    stream = get_stream(request)
    body = parse(ViewerTokenRequest, await read_json(request) if request.can_read_body else {})
    token, expires = gateway(request).auth.issue_viewer_token(stream.id, body.ttl)
    issued = ViewerToken(
        stream=stream.id,
        token=token,
        expires_at=expires,
        view_url=f"/view/{stream.id}?token={token}",
    )
    return web.json_response(issued.model_dump(), status=201)


@routes.get("/api/v1/streams/{stream_id}/snapshot.jpg")
async def snapshot(request: web.Request) -> web.Response:
    """The latest picture as a JPEG: whoever may watch the stream may see it."""
    require_viewer(request, request.match_info["stream_id"])
    stream = get_stream(request)
    try:
        data = await stream.snapshots.jpeg()
    except NoPicture as exc:
        raise ApiError(503, "no-picture", str(exc), {"Retry-After": "1"}) from None
    return web.Response(
        body=data,
        content_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=1"},
    )

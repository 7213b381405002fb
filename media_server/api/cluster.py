"""The cluster as the API shows it (its nodes and their load), and the internal link."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from media_server.api.access import require
from media_server.api.context import Gateway, gateway
from media_server.api.errors import ApiError
from media_server.api.streams import get_stream
from media_server.auth.tokens import READ
from media_server.cluster import origin
from media_server.cluster.node import ClusterNode
from media_server.streams.stream import Stream

routes = web.RouteTableDef()


def _node_view(node: dict[str, Any], me: str) -> dict[str, Any]:
    return {**node, "self": node["id"] == me}


@routes.get("/api/v1/cluster")
async def cluster_view(request: web.Request) -> web.Response:
    """This node and its peers; a single gateway lists itself alone."""
    require(request, READ)
    gw = gateway(request)
    node = gw.cluster
    if node is None:
        me = {
            "id": "local",
            "url": None,
            "public_url": None,
            "capacity": gw.settings.limits.streams,
            "ingests": sum(1 for s in gw.streams.all() if s.worker is not None),
            "viewers": len(gw.sessions),
            "cpu_percent": round(gw.cpu.percent(), 1),
            "started_at": None,
            "age": 0.0,
        }
        return web.json_response(
            {"backend": "sqlite", "node": "local", "nodes": [me | {"self": True}]}
        )
    nodes = [_node_view(asdict(n), node.id) for n in node.nodes]
    if not any(n["self"] for n in nodes):  # not read back from Redis yet
        nodes.append(_node_view(asdict(node.record()), node.id))
    return web.json_response({"backend": "redis", "node": node.id, "nodes": nodes})


def _cluster(gw: Gateway) -> ClusterNode:
    if gw.cluster is None:
        raise ApiError(404, "not-clustered", "this gateway is not a node of a cluster")
    return gw.cluster


@routes.get("/internal/v1/relay/{stream_id}")
async def relay(request: web.Request) -> web.WebSocketResponse:
    """An edge node takes a stream this node ingests (see cluster/wire.py)."""
    node = _cluster(gateway(request))
    if not node.authentic(request.headers.get("Authorization")):
        raise ApiError(401, "unauthorized", "the internal link needs the cluster secret")
    stream = get_stream(request)
    lease = request.query.get("lease")

    def fenced() -> bool:
        return not stream.ingest_here or lease != str(node.lease_of(stream.id))

    if fenced():
        holder = node.origin_of(stream.id)
        raise ApiError(
            409,
            "not-origin",
            f"node {node.id} does not ingest stream '{stream.id}'"
            + (f"; node {holder} does" if holder else ""),
        )
    ws = web.WebSocketResponse(heartbeat=10, compress=False)
    await ws.prepare(request)
    await origin.serve(ws, stream, fenced)
    return ws


def redirect_to_origin(request: web.Request, stream: Stream) -> None:
    """In redirect mode, send a viewer of a stream another node ingests to that node."""
    node = gateway(request).cluster
    target = node.public_origin(stream) if node is not None else None
    if target is not None:
        raise web.HTTPTemporaryRedirect(target + request.path_qs)

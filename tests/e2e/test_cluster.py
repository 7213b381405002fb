"""A cluster of three real gateway processes on a real Redis, fed by a real RTSP server.

Registration on any node is seen on all; each camera has exactly one RTSP session, held
by the node with its lease; viewers on the other nodes decode it through their relays;
a node killed with SIGKILL hands its cameras over and those viewers' frames resume; a
Redis killed and restarted loses no registration.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media_server.webrtc.session import INFO_WAIT
from tests.support.api import metric, register, wait_state
from tests.support.cluster import SECRET, Cluster, run_cluster
from tests.support.redis_server import RedisServer, run_redis
from tests.support.rtsp import RtspServer, start_rtsp_server
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e

NODES = ("node-a", "node-b", "node-c")


@pytest.fixture
def camera() -> Iterator[RtspServer]:
    """An RTSP server of its own, so its session count is this test's alone."""
    with start_rtsp_server() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(redis: RedisServer) -> Iterator[Cluster]:
    with run_cluster(redis, *NODES) as running:
        yield running


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something true; fail saying `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except (aiohttp.ClientError, AssertionError) as exc:
            last = exc
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s (last: {last!r})")


async def settled(value: Any) -> Any:
    """A value as an awaitable, for `until` checks that need no I/O."""
    return value


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def stream_on(http: aiohttp.ClientSession, base: str, sid: str) -> dict[str, Any] | None:
    status, body = await get(http, f"{base}/api/v1/streams/{sid}")
    return body if status == 200 else None


async def live_everywhere(
    http: aiohttp.ClientSession, cluster: Cluster, sid: str, timeout: float = 20
) -> str:
    """Wait until every node shows the stream live with one origin; that origin's id."""

    async def check() -> str | None:
        views = [await stream_on(http, cluster.url(n), sid) for n in cluster.nodes]
        if not all(v and v["state"] == "live" for v in views):
            return None
        origins = {v["ingest_node"] for v in views if v}
        return origins.pop() if len(origins) == 1 and None not in origins else None

    origin: str = await until(check, timeout, f"stream {sid} live on every node, one origin")
    return origin


@pytest.fixture
async def viewers() -> AsyncIterator[list[Viewer]]:
    made: list[Viewer] = []
    yield made
    for viewer in made:
        await viewer.close()


async def test_nodes_list_each_other(http: aiohttp.ClientSession, cluster: Cluster) -> None:
    for node_id in NODES:

        async def listed(node_id: str = node_id) -> Any:
            status, body = await get(http, f"{cluster.url(node_id)}/api/v1/cluster")
            return status == 200 and len(body["nodes"]) == 3 and body

        body = await until(listed, 10, f"{node_id} listing three nodes")
        assert body["backend"] == "redis" and body["node"] == node_id
        assert [n["id"] for n in body["nodes"]] == list(NODES)
        assert [n["id"] for n in body["nodes"] if n["self"]] == [node_id]
        for node in body["nodes"]:
            assert node["url"] == cluster.url(node["id"])
            assert node["age"] < 5 and node["capacity"] > 0 and node["ingests"] >= 0
        status, ready = await get(http, f"{cluster.url(node_id)}/api/v1/health/ready")
        assert status == 200, ready
        assert ready["components"]["registry"]["backend"] == "redis"


async def test_any_node_sees_and_changes_every_stream(
    http: aiohttp.ClientSession, cluster: Cluster, camera: RtspServer
) -> None:
    a, b, c = (cluster.url(n) for n in NODES)
    events: list[dict[str, Any]] = []

    async def follow_events() -> None:  # node C's console, live
        async with http.get(f"{c}/api/v1/events") as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    events.append(json.loads(line[6:]))

    follower = asyncio.ensure_future(follow_events())
    try:
        status, body = await register(http, a, id="reg", url=camera.url("/small"))
        assert status == 201, body
        origin = await live_everywhere(http, cluster, "reg")
        assert origin in NODES
        # C's console heard of it, and of it going live, without asking.
        states = {s["state"] for e in events for s in e["streams"] if s["id"] == "reg"}
        assert "live" in states, events[-1:]
    finally:
        follower.cancel()
    await until(lambda: settled(camera.clients() == 1), 5, "one RTSP session")
    await asyncio.sleep(2)  # no other node opens the camera meanwhile
    assert camera.clients() == 1 and camera.client_connections() == 1

    # Registration is idempotent cluster-wide, and a conflicting body is refused anywhere.
    status, body = await register(http, b, id="reg", url=camera.url("/small"))
    assert status == 200, body
    status, body = await register(http, c, id="reg", url=camera.url("/baseline"))
    assert status == 409 and body["error"]["code"] == "stream-conflict", body

    async with http.delete(f"{b}/api/v1/streams/reg") as resp:
        assert resp.status == 204
    await until(lambda: _gone_from(http, (a, b, c), "reg"), 5, "stream gone from every node")
    await until(lambda: settled(camera.clients() == 0), 10, "the RTSP session closed")


async def _gone_from(http: aiohttp.ClientSession, bases: tuple[str, ...], sid: str) -> bool:
    return all([await stream_on(http, base, sid) is None for base in bases])


async def test_viewers_on_other_nodes_decode_one_camera_session(
    http: aiohttp.ClientSession, cluster: Cluster, camera: RtspServer, viewers: list[Viewer]
) -> None:
    status, body = await register(http, cluster.url("node-b"), id="fan", url=camera.url("/small"))
    assert status == 201, body
    origin = await live_everywhere(http, cluster, "fan")
    edges = [n for n in NODES if n != origin]
    for edge, via in zip(edges, ("ws", "whep"), strict=True):
        viewer = Viewer(cluster.url(edge), "fan", via)
        viewers.append(viewer)
        await viewer.connect()
    for viewer in viewers:
        await viewer.wait_frames(30)
        assert viewer.sizes == {(320, 240)}
        # The relay starts with the first viewer's offer, not after the answer gave up
        # waiting to learn what the stream is.
        assert viewer.first_frame_at is not None
        assert viewer.first_frame_at < INFO_WAIT
    assert camera.clients() == 1 and camera.client_connections() == 1
    origin_view = await stream_on(http, cluster.url(origin), "fan")
    assert origin_view is not None and origin_view["relays"] == 2, origin_view
    assert origin_view["viewers"] == 0  # relays are not viewers
    assert await metric(http, cluster.url(origin), "media_server_cluster_relays") == 2
    for edge in edges:
        edge_view = await stream_on(http, cluster.url(edge), "fan")
        assert edge_view is not None and edge_view["viewers"] == 1, edge_view
    async with http.delete(f"{cluster.url(origin)}/api/v1/streams/fan") as resp:
        assert resp.status == 204


async def test_an_h265_camera_passes_through_the_relay_with_one_transcode(
    http: aiohttp.ClientSession, cluster: Cluster, camera: RtspServer, viewers: list[Viewer]
) -> None:
    """The relay carries the camera's H.265 to the other nodes' viewers that decode it;
    a node whose viewer takes only H.264 asks the origin for the transcode, made there
    once, and stops asking when that viewer leaves."""
    status, body = await register(http, cluster.url("node-a"), id="hevc", url=camera.url("/h265"))
    assert status == 201, body
    origin = await live_everywhere(http, cluster, "hevc")
    hevc_edge, plain_edge = [n for n in NODES if n != origin]
    hevc = Viewer(cluster.url(hevc_edge), "hevc", video_codecs=("H265",))
    plain = Viewer(cluster.url(plain_edge), "hevc", video_codecs=("H264",))
    viewers += [hevc, plain]
    await hevc.connect()
    await hevc.wait_frames(20)
    assert "H265/90000" in hevc.answer_sdp and hevc.media_transport == "engine"
    origin_view = await stream_on(http, cluster.url(origin), "hevc")
    assert origin_view is not None
    assert origin_view["counters"]["frames_encoded"] == 0, origin_view  # nobody wants H.264
    await plain.connect()
    await plain.wait_frames(20)
    assert plain.media_transport == "transcode-shared"
    assert hevc.sizes == plain.sizes == {(320, 240)}
    assert camera.clients() == 1
    views = {n: await stream_on(http, cluster.url(n), "hevc") for n in NODES}
    assert views[hevc_edge]["video_codecs"] == {"viewer": {"hevc": 1}}  # type: ignore[index]
    assert views[plain_edge]["video_codecs"] == {"viewer": {"h264": 1}}  # type: ignore[index]
    assert views[origin]["counters"]["frames_encoded"] > 0  # type: ignore[index]
    await plain.close()

    async def encoding_stopped() -> bool:
        first = await stream_on(http, cluster.url(origin), "hevc")
        await asyncio.sleep(1.0)
        second = await stream_on(http, cluster.url(origin), "hevc")
        assert first is not None and second is not None
        return bool(first["counters"]["frames_encoded"] == second["counters"]["frames_encoded"])

    await until(encoding_stopped, 10, "the origin's transcode stopped with its last viewer")
    frames = hevc.frames
    await hevc.wait_frames(frames + 15)  # the H.265 viewer goes on
    async with http.delete(f"{cluster.url(origin)}/api/v1/streams/hevc") as resp:
        assert resp.status == 204


async def test_streams_spread_over_the_nodes(
    http: aiohttp.ClientSession, cluster: Cluster, camera: RtspServer
) -> None:
    sids = ["spread1", "spread2", "spread3"]
    for sid in sids:  # all on one node: the cameras still go one to each node
        status, body = await register(http, cluster.url("node-a"), id=sid, url=camera.url("/small"))
        assert status == 201, body
    origins = [await live_everywhere(http, cluster, sid) for sid in sids]
    assert sorted(origins) == list(NODES)
    for node in NODES:
        url = cluster.url(node)
        assert await metric(http, url, "media_server_cluster_ingests") == 1
        assert await metric(http, url, "media_server_cluster_nodes") == 3
        assert await metric(http, url, "media_server_cluster_redis_up") == 1
    assert camera.clients() == 3
    for sid in sids:
        async with http.delete(f"{cluster.url('node-c')}/api/v1/streams/{sid}") as resp:
            assert resp.status == 204


async def test_internal_link_needs_the_secret_and_the_origin(
    http: aiohttp.ClientSession, cluster: Cluster, camera: RtspServer
) -> None:
    status, _ = await register(http, cluster.url("node-a"), id="link", url=camera.url("/small"))
    assert status == 201
    origin = await live_everywhere(http, cluster, "link")
    edge = next(n for n in NODES if n != origin)
    url = f"{cluster.url(origin)}/internal/v1/relay/link"
    async with http.get(url) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    auth = {"Authorization": f"Bearer {SECRET}"}
    async with http.get(f"{cluster.url(edge)}/internal/v1/relay/link", headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 409 and body["error"]["code"] == "not-origin", body
        assert origin in body["error"]["message"]
    async with http.get(url, headers=auth, params={"lease": "999999"}) as resp:
        assert resp.status == 409  # a stale fence token is refused
    async with http.get(url, headers=auth) as resp:
        assert resp.status == 409  # and so is none
    async with http.delete(f"{cluster.url(origin)}/api/v1/streams/link") as resp:
        assert resp.status == 204


async def test_single_gateway_has_no_internal_link(
    http: aiohttp.ClientSession, gateway: Any
) -> None:
    async with http.get(gateway.url("/internal/v1/relay/demo")) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not-clustered"
    status, body = await get(http, gateway.url("/api/v1/cluster"))
    assert status == 200 and body["backend"] == "sqlite"
    assert [n["self"] for n in body["nodes"]] == [True]


async def test_failover_after_kill_9(
    http: aiohttp.ClientSession,
    redis: RedisServer,
    camera: RtspServer,
    viewers: list[Viewer],
) -> None:
    with run_cluster(redis, *NODES) as nodes:
        status, body = await register(http, nodes.url("node-a"), id="fo", url=camera.url("/small"))
        assert status == 201, body
        origin = await live_everywhere(http, nodes, "fo")
        edges = [n for n in NODES if n != origin]
        for edge in edges:
            viewer = Viewer(nodes.url(edge), "fo")
            viewers.append(viewer)
            await viewer.connect()
            await viewer.wait_frames(15)

        nodes.kill(origin)
        killed = time.monotonic()
        before = [v.frames for v in viewers]
        survivor = await live_everywhere(http, nodes, "fo", timeout=15)
        took_over = time.monotonic() - killed
        assert survivor in edges
        # The default lease (5 s) and heartbeat (1 s) promise ingest again within 10 s.
        assert took_over <= 10, f"ingest resumed {took_over:.1f} s after the kill"
        print(f"failover: ingest live again on {survivor} {took_over:.1f} s after the kill")
        for viewer, seen in zip(viewers, before, strict=True):
            await viewer.wait_frames(seen + 30, timeout=15)  # the same session, frames again
            assert viewer.pc.connectionState == "connected"
        print(f"failover: both edge viewers had 30 new frames {time.monotonic() - killed:.1f} s")
        await until(lambda: settled(camera.clients() == 1), 10, "one RTSP session")
        await asyncio.sleep(2)
        assert camera.clients() == 1


async def test_redis_restart_loses_nothing(
    http: aiohttp.ClientSession, tmp_path: Path, camera: RtspServer, viewers: list[Viewer]
) -> None:
    with run_redis(tmp_path) as store, run_cluster(store, *NODES) as nodes:
        for sid, node in (("keep1", "node-a"), ("keep2", "node-b")):
            status, _ = await register(http, nodes.url(node), id=sid, url=camera.url("/small"))
            assert status == 201
        origin = await live_everywhere(http, nodes, "keep1")
        edge = next(n for n in NODES if n != origin)
        viewer = Viewer(nodes.url(edge), "keep1")
        viewers.append(viewer)
        await viewer.connect()
        await viewer.wait_frames(15)

        port = store.port
        store.stop(signal.SIGKILL)  # no shutdown save: only the append-only file remains
        down_at = time.monotonic()
        status, body = await register(http, nodes.url("node-c"), id="lost", url=camera.url("/x"))
        assert status == 503 and body["error"]["code"] == "registry-unavailable", body
        status, ready = await get(http, f"{nodes.url('node-c')}/api/v1/health/ready")
        assert status == 503 and not ready["components"]["registry"]["ok"]
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - down_at)))
        restarted = RedisServer(tmp_path, port)
        restarted.start()
        try:
            bases = tuple(nodes.url(node) for node in NODES)
            await until(lambda: _ready(http, bases), 15, "every node ready again")
            for node in NODES:
                for sid in ("keep1", "keep2"):
                    assert await stream_on(http, nodes.url(node), sid), (node, sid)
            # The channel is back: a new registration reaches every node.
            status, _ = await register(
                http, nodes.url("node-c"), id="after", url=camera.url("/small")
            )
            assert status == 201
            await live_everywhere(http, nodes, "after")
            seen = viewer.frames
            await viewer.wait_frames(seen + 15)
        finally:
            restarted.stop()


async def _ready(http: aiohttp.ClientSession, bases: tuple[str, ...]) -> bool:
    return all([(await get(http, f"{base}/api/v1/health/ready"))[0] == 200 for base in bases])


async def test_redirect_mode_sends_viewers_to_the_origin(
    http: aiohttp.ClientSession, redis: RedisServer, camera: RtspServer
) -> None:
    with run_cluster(redis, "node-x", "node-y", MEDIA_SERVER_CLUSTER__EDGE="redirect") as nodes:
        status, _ = await register(http, nodes.url("node-x"), id="redir", url=camera.url("/small"))
        assert status == 201
        origin = await live_everywhere(http, nodes, "redir")
        edge = next(n for n in nodes.nodes if n != origin)
        path = "/api/v1/streams/redir/whep"
        async with http.post(
            nodes.url(edge) + path,
            data="v=0",
            headers={"Content-Type": "application/sdp"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == nodes.url(origin) + path
        async with http.get(f"{nodes.url(edge)}/view/redir", allow_redirects=False) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == f"{nodes.url(origin)}/view/redir"
        viewer = Viewer(nodes.url(origin), "redir", "whep")
        try:
            await viewer.connect()
            await viewer.wait_frames(15)
        finally:
            await viewer.close()


async def test_config_file_streams_stay_each_nodes_own(
    http: aiohttp.ClientSession, redis: RedisServer, camera: RtspServer
) -> None:
    filed = json.dumps([{"id": "mine", "url": camera.url("/small") + "?from=file"}])
    with run_cluster(redis) as nodes:
        nodes.start("node-x", MEDIA_SERVER_STREAMS=filed)
        nodes.start("node-y")  # the same cluster, no config-file stream
        x, y = nodes.url("node-x"), nodes.url("node-y")
        await wait_state(http, x, "mine", "live")
        assert await stream_on(http, y, "mine") is None  # not shared
        # A cluster registration under that id: node Y serves it; node X keeps its own.
        status, body = await register(http, y, id="mine", url=camera.url("/small"))
        assert status == 201, body
        await asyncio.sleep(2)
        mine = await stream_on(http, x, "mine")
        assert mine is not None and mine["managed_by"] == "config", mine
        assert mine["url"].endswith("?from=file") and mine["state"] == "live"
        async with http.delete(f"{x}/api/v1/streams/mine") as resp:
            assert resp.status == 409

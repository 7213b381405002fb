"""What an attacker from outside got through (the hardening issue), each closed: every test
here failed on the gateway before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.gateway import GENEROUS, Gateway, run_gateway

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-0123456789"
HS_SECRET = "hs256-secret-for-tests-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secured() -> Iterator[Gateway]:
    env = {
        **GENEROUS,
        "MEDIA_SERVER_AUTH__TOKENS": json.dumps([ADMIN]),
        "MEDIA_SERVER_AUTH__JWT_SECRET": HS_SECRET,
        "MEDIA_SERVER_AUTH__VIEWER_TOKENS": "true",
    }
    with run_gateway(env=env) as gw:
        yield gw


def huge_int_body(field: str) -> bytes:
    return b'{"url": "rtsp://127.0.0.1/x", "' + field.encode() + b'": ' + b"9" * 5000 + b"}"


async def test_a_json_integer_too_long_to_convert_is_a_400(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    headers = {"Content-Type": "application/json"}
    for path, body in (
        ("/api/v1/streams", huge_int_body("on_demand")),
        ("/api/v1/streams/demo/viewer-tokens", b'{"ttl": ' + b"9" * 5000 + b"}"),
    ):
        async with http.post(gateway.url(path), data=body, headers=headers) as resp:
            assert resp.status == 400, path
            assert (await resp.json())["error"]["code"] == "invalid-json"
    assert "Traceback" not in gateway.stderr_text()


async def test_a_client_gone_mid_body_is_no_error(gateway: Gateway) -> None:
    """A POST announcing 1000 bytes that sends 10 and leaves: logged quietly, no 500."""
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"POST /api/v1/streams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"url": "r'
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await asyncio.sleep(0.5)
    log = gateway.stderr_text()
    assert "Traceback" not in log and "unhandled error" not in log, gateway.stderr_tail()
    assert gateway.get_json("/api/v1/health")["status"] == "ok"


async def test_readiness_tells_no_paths_or_ids(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    """Readiness needs no credentials, so it must not tell where files are, nor streams."""
    async with http.get(gateway.url("/api/v1/health/ready")) as resp:
        body = await resp.json()
    registry, ingest = body["components"]["registry"], body["components"]["ingest"]
    assert set(registry) == {"ok", "backend"}
    assert isinstance(ingest["dead_workers"], int)
    assert "sqlite3" not in json.dumps(body) and "/" not in json.dumps(registry)


async def test_profiling_needs_the_admin_right(
    http: aiohttp.ClientSession, secured: Gateway
) -> None:
    import jwt

    exp = int(time.time()) + 300
    writer = jwt.encode(
        {"sub": "ops", "exp": exp, "scope": "streams:read streams:write"}, HS_SECRET
    )
    url = secured.url("/api/v1/admin/profile")
    body = {"seconds": 1}
    async with http.post(url, json=body, headers=bearer(writer)) as resp:
        assert resp.status == 403
        assert "'admin'" in (await resp.json())["error"]["message"]
    admin = jwt.encode({"sub": "ops", "exp": exp, "scope": "admin"}, HS_SECRET)
    async with http.post(url, json={**body, "seconds": 0}, headers=bearer(admin)) as resp:
        assert resp.status == 400  # past the right: the body is checked (seconds >= 1)
    async with http.post(url, json={**body, "seconds": 0}, headers=bearer(ADMIN)) as resp:
        assert resp.status == 400  # static tokens keep every right


async def test_camera_credentials_in_the_path_never_show(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    url = "rtsp://127.0.0.1:9/user=admin_password=S3cret_channel=1_stream=0.sdp"
    body = {"id": "xmeye", "url": url, "on_demand": True}
    async with http.post(gateway.url("/api/v1/streams"), json=body) as resp:
        assert resp.status in (200, 201)
        shown = await resp.json()
    assert shown["url"] == "rtsp://127.0.0.1:9/user=***_password=***_channel=1_stream=0.sdp"
    async with http.get(gateway.url("/api/v1/streams")) as resp:
        assert "S3cret" not in await resp.text()
    fragment = {"url": "rtsp://127.0.0.1:9/live#x"}
    async with http.post(gateway.url("/api/v1/streams"), json=fragment) as resp:
        assert resp.status == 400 and "fragment" in (await resp.json())["error"]["message"]
    async with http.delete(gateway.url("/api/v1/streams/xmeye")) as resp:
        assert resp.status == 204


async def test_a_whep_session_answers_only_the_principal_that_made_it(
    http: aiohttp.ClientSession, secured: Gateway
) -> None:
    """Its URL alone no longer lets anyone trickle into it or end it; nor is it logged."""
    from tests.e2e.test_signaling import make_offer

    async def viewer_token(ttl: int) -> str:
        url = secured.url("/api/v1/streams/demo/viewer-tokens")
        async with http.post(url, json={"ttl": ttl}, headers=bearer(ADMIN)) as resp:
            token: str = (await resp.json())["token"]
            return token

    mine, theirs = await viewer_token(300), await viewer_token(299)  # two viewers
    assert mine != theirs
    sdp = {"Content-Type": "application/sdp"}
    async with http.post(
        secured.url("/api/v1/streams/demo/whep"),
        data=await make_offer(),
        headers={**sdp, **bearer(mine)},
    ) as resp:
        assert resp.status == 201
        session = secured.url(resp.headers["Location"])
    trickle = {"Content-Type": "application/trickle-ice-sdpfrag"}
    end = "a=mid:0\r\na=end-of-candidates\r\n"
    async with http.patch(session, data=end, headers={**trickle, **bearer(theirs)}) as resp:
        assert resp.status == 404
    async with http.patch(session, data=end, headers=trickle) as resp:
        assert resp.status == 401
    async with http.patch(session, data=end, headers={**trickle, **bearer(mine)}) as resp:
        assert resp.status == 204
    async with http.delete(session, headers=bearer(theirs)) as resp:
        assert resp.status == 404
    async with http.delete(session, headers=bearer(mine)) as resp:
        assert resp.status == 200
    session_id = session.rsplit("/", 1)[1]
    assert session_id not in secured.stderr_text()


async def test_a_room_behind_one_address_joins_at_once(http: aiohttp.ClientSession) -> None:
    """Forty viewers behind one address offering together: none refused for its rate
    (the offers are empty, so each gets the 400 it deserves, never a 429)."""
    with run_gateway() as gw:  # the default limits
        url = gw.url("/api/v1/streams/demo/whep")
        statuses = []
        for _ in range(40):
            async with http.post(url, data="", headers={"Content-Type": "application/sdp"}) as resp:
                statuses.append(resp.status)
    assert statuses == [400] * 40, statuses


async def test_behind_a_trusted_proxy_each_client_has_its_own_quota(
    http: aiohttp.ClientSession,
) -> None:
    env = {
        "MEDIA_SERVER_HTTP__TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "MEDIA_SERVER_LIMITS__REGISTRATIONS_BURST": "2",
        "MEDIA_SERVER_LIMITS__REGISTRATIONS_PER_MINUTE": "1",
    }
    with run_gateway("--no-demo", env=env) as gw:

        async def register_as(client: str) -> int:
            headers = {"Content-Type": "application/json", "X-Forwarded-For": client}
            url = gw.url("/api/v1/streams")
            async with http.post(url, data="not json", headers=headers) as resp:
                return resp.status

        # A client's own X-Forwarded-For counts for nothing: the proxy appends the peer.
        spoofed = "10.9.9.9, 198.51.100.1"
        assert [await register_as(spoofed) for _ in range(3)] == [400, 400, 429]
        assert await register_as("198.51.100.2") == 400  # another client, its own quota
        assert await register_as("10.9.9.9, 198.51.100.2") == 400
        assert await register_as("198.51.100.2") == 429


async def _closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the gateway sent before closing the connection (it must close it in time)."""
    try:
        return await asyncio.wait_for(reader.read(), within)
    except ConnectionError:  # reset, or a write of ours that failed because it closed
        return b""


async def test_slow_requests_are_cut_off_and_connections_capped() -> None:
    env = {
        "MEDIA_SERVER_HTTP__REQUEST_TIMEOUT": "1.5",
        "MEDIA_SERVER_LIMITS__CONNECTIONS_PER_CLIENT": "12",
    }
    with run_gateway("--no-demo", env=env) as gw:

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", gw.port)

        # Headers a line a second: every such connection is closed, none answered.
        slow = [await connect() for _ in range(5)]
        for _, writer in slow:
            writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            await asyncio.sleep(1)
            for _, writer in slow:
                with contextlib.suppress(ConnectionError):  # closed on us, as it should be
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
        for reader, _ in slow:
            assert await _closed(reader, 3) == b""
        # A body announced and never sent, and a connection that sends nothing at all.
        reader, writer = await connect()
        writer.write(
            b"POST /api/v1/streams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        writer.write(b'{"url": "r')
        idle_reader, _ = await connect()
        assert await _closed(reader, 4) == b""
        assert await _closed(idle_reader, 4) == b""
        # One address holds at most so many connections; the next is told so.
        held = [await connect() for _ in range(12)]
        extra, _ = await connect()
        refused = await _closed(extra, 3)
        assert b"429" in refused and b"too-many-connections" in refused
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.2)
        assert gw.get_json("/api/v1/health")["status"] == "ok"  # whole requests still work


async def test_requests_aiohttp_cannot_parse_get_our_error_and_no_traceback() -> None:
    with run_gateway("--no-demo") as gw:

        async def send(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(data)
            return await _closed(reader, 3)

        for request in (
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",  # header
            b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n",  # headers
            b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            answer = await send(request)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
            assert json.loads(body)["error"]["code"] == "bad-request"
            assert b"aaaa" not in body and b"bbbb" not in body  # nothing echoed back
        assert (await send(b"\x16\x03\x01 not http at all\r\n\r\n")).startswith(b"HTTP/1.")
        await asyncio.sleep(0.3)
        assert "Traceback" not in gw.stderr_text(), gw.stderr_tail()


async def test_with_control_plane_auth_viewing_needs_a_token_by_default(
    http: aiohttp.ClientSession,
) -> None:
    from tests.e2e.test_signaling import make_offer

    with run_gateway(env={"MEDIA_SERVER_AUTH__TOKENS": json.dumps([ADMIN])}) as gw:
        for path in ("/view/demo", "/api/v1/streams/demo/snapshot.jpg"):
            async with http.get(gw.url(path)) as resp:
                assert resp.status == 401, path
        offer = {"Content-Type": "application/sdp"}
        whep = gw.url("/api/v1/streams/demo/whep")
        async with http.post(whep, data=await make_offer(), headers=offer) as resp:
            assert resp.status == 401
        async with http.get(gw.url("/view/demo"), headers=bearer(ADMIN)) as resp:
            assert resp.status == 200  # a control-plane token that may read may watch
    env = {
        "MEDIA_SERVER_AUTH__TOKENS": json.dumps([ADMIN]),
        "MEDIA_SERVER_AUTH__VIEWER_TOKENS": "false",
        "MEDIA_SERVER_HTTP__ALLOW_PLAIN": "true",
    }
    with run_gateway("--host", "0.0.0.0", env=env) as gw:  # opened on purpose, beyond loopback
        async with http.get(gw.url("/view/demo")) as resp:
            assert resp.status == 200
        assert "viewing is open" in gw.stderr_text()

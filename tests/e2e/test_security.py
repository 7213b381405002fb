"""Authentication, viewer tokens, protected mode, safe sources, rate limits, headers, CORS."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.api import live, register, wait_state
from tests.support.gateway import Gateway, run_gateway
from tests.support.rtsp import RtspServer, free_port
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-0123456789"
HS_SECRET = "hs256-secret-for-tests-0123456789"
AUDIENCE = "media-gateway"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa1", alg="RS256", use="sig")
    ec_jwk.update(kid="ec1", alg="ES256", use="sig")
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
    return {"rsa": rsa_key, "ec": ec_key, "jwks": path}


@pytest.fixture(scope="module")
def secured(keys: dict[str, Any]) -> Iterator[Gateway]:
    env = {
        "MEDIA_SERVER_AUTH__TOKENS": json.dumps([ADMIN]),
        "MEDIA_SERVER_AUTH__JWT_SECRET": HS_SECRET,
        "MEDIA_SERVER_AUTH__JWKS_FILE": str(keys["jwks"]),
        "MEDIA_SERVER_AUTH__JWT_AUDIENCE": AUDIENCE,
        "MEDIA_SERVER_AUTH__VIEWER_TOKENS": "true",
        "MEDIA_SERVER_LIMITS__OFFERS_PER_MINUTE": "6000",
        "MEDIA_SERVER_LIMITS__OFFERS_BURST": "100",
    }
    with run_gateway(env=env) as gw:
        yield gw


def make_jwt(key: Any, alg: str, scope: str, **claims: Any) -> str:
    body = {"sub": "ops", "aud": AUDIENCE, "exp": int(time.time()) + 300, "scope": scope}
    body.update(claims)
    kid = {"RS256": "rsa1", "ES256": "ec1"}.get(alg)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kw: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {**(bearer(token) if token else {}), **kw.pop("headers", {})}
    async with http.request(method, url, headers=headers, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else {}
        return resp.status, body, dict(resp.headers)


async def test_control_plane_credentials(
    http: aiohttp.ClientSession, secured: Gateway, keys: dict[str, Any]
) -> None:
    url = f"{secured.base_url}/api/v1/streams"
    status, body, headers = await status_of(http, "GET", url)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert (await status_of(http, "GET", url, "wrong-token-123"))[0] == 401
    assert (await status_of(http, "GET", url, ADMIN))[0] == 200
    assert (await status_of(http, "GET", f"{secured.base_url}/metrics"))[0] == 401
    assert (await status_of(http, "GET", f"{secured.base_url}/metrics", ADMIN))[0] == 200
    assert (await status_of(http, "GET", f"{secured.base_url}/api/v1/health"))[0] == 200

    for key, alg in ((HS_SECRET, "HS256"), (keys["rsa"], "RS256"), (keys["ec"], "ES256")):
        reader = make_jwt(key, alg, "streams:read")
        assert (await status_of(http, "GET", url, reader))[0] == 200, alg
        status, body, _ = await status_of(http, "POST", url, reader, json={"url": "rtsp://h/x"})
        assert status == 403 and "streams:write" in body["error"]["message"], alg

    expired = make_jwt(keys["ec"], "ES256", "streams:read", exp=int(time.time()) - 120)
    status, body, _ = await status_of(http, "GET", url, expired)
    assert status == 401 and "expired" in body["error"]["message"]
    other_audience = make_jwt(keys["rsa"], "RS256", "streams:read", aud="someone-else")
    assert (await status_of(http, "GET", url, other_audience))[0] == 401
    unsigned = jwt.encode({"sub": "x", "aud": AUDIENCE, "exp": 2**31}, key="", algorithm="none")
    assert (await status_of(http, "GET", url, unsigned))[0] == 401
    wrong_key = make_jwt(rsa.generate_private_key(65537, 2048), "RS256", "streams:read")
    assert (await status_of(http, "GET", url, wrong_key))[0] == 401


async def test_viewer_tokens(http: aiohttp.ClientSession, secured: Gateway) -> None:
    base = secured.base_url
    status, issued, _ = await status_of(
        http, "POST", f"{base}/api/v1/streams/demo/viewer-tokens", ADMIN, json={"ttl": 60}
    )
    assert status == 201 and issued["view_url"].startswith("/view/demo?token=")
    token = issued["token"]
    reader = make_jwt(HS_SECRET, "HS256", "streams:read")
    status, _, _ = await status_of(
        http, "POST", f"{base}/api/v1/streams/demo/viewer-tokens", reader
    )
    assert status == 403  # issuing needs tokens:issue

    assert (await status_of(http, "GET", f"{base}/view/demo"))[0] == 401
    assert (await status_of(http, "GET", f"{base}/view/demo?token=garbage"))[0] == 401
    async with http.get(f"{base}/view/demo?token={token}") as resp:
        assert resp.status == 200 and "Content-Security-Policy" in resp.headers
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{base}/ws/demo")
    assert refused.value.status == 401

    async with http.ws_connect(f"{base}/ws/demo?token={token}") as ws:  # the token opens the socket
        await ws.send_json({"type": "dance"})
        assert (await ws.receive_json(timeout=5))["code"] == "unknown-type"

    whep = f"{base}/api/v1/streams/demo/whep"
    offer = "v=0\r\n"
    status, _, _ = await status_of(http, "POST", whep, headers={"Content-Type": "application/sdp"})
    assert status == 401
    status, _, _ = await status_of(
        http, "POST", whep, token, data=offer, headers={"Content-Type": "application/sdp"}
    )
    assert status == 400  # past authentication, the offer itself is judged

    # A token for one stream does not open another.
    await register_with(http, base, id="other", url="rtsp://127.0.0.1:9/x", on_demand=True)
    status, _, _ = await status_of(http, "GET", f"{base}/view/other?token={token}")
    assert status == 403


async def demo_viewer_token(http: aiohttp.ClientSession, gw: Gateway) -> str:
    url = f"{gw.base_url}/api/v1/streams/demo/viewer-tokens"
    async with http.post(url, headers=bearer(ADMIN)) as resp:
        assert resp.status == 201
        token: str = (await resp.json())["token"]
        return token


async def register_with(http: aiohttp.ClientSession, base: str, **body: Any) -> None:
    async with http.post(f"{base}/api/v1/streams", json=body, headers=bearer(ADMIN)) as resp:
        assert resp.status in (200, 201), await resp.text()


async def test_viewer_token_plays_over_websocket(
    http: aiohttp.ClientSession, secured: Gateway
) -> None:
    token = await demo_viewer_token(http, secured)
    # The Viewer helper opens /ws/{stream_id}: the query string rides along on the id.
    viewer = Viewer(secured.base_url, f"demo?token={token}")
    try:
        await viewer.connect()
        await viewer.wait_frames(20)
    finally:
        await viewer.close()


def run_cli(*args: str, env: dict[str, str] | None = None, wait: float = 60) -> Any:
    import os

    return subprocess.run(
        [sys.executable, "-m", "media_server", "--port", str(free_port()), "--no-demo", *args],
        env={**os.environ, "MEDIA_SERVER_REGISTRY__PATH": ":memory:", **(env or {})},
        capture_output=True,
        text=True,
        timeout=wait,
    )


def test_protected_mode_refuses_open_non_loopback() -> None:
    proc = run_cli("--host", "0.0.0.0")
    assert proc.returncode == 2
    assert "protected mode" in proc.stderr and "--insecure" in proc.stderr


async def test_insecure_flag_starts_with_a_warning(http: aiohttp.ClientSession) -> None:
    with run_gateway("--no-demo", "--host", "0.0.0.0", "--insecure") as gw:
        async with http.get(f"{gw.base_url}/api/v1/health") as resp:
            assert resp.status == 200
        assert "INSECURE" in gw.stderr_text()


async def test_sources_guard_and_protocol_whitelist(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    for url in ("rtsp://169.254.169.254/latest/meta-data", "rtsp://[fe80::1]/x"):
        status, body = await register(http, gateway.base_url, url=url)
        assert status == 400 and body["error"]["code"] == "source-not-allowed", body

    # A "camera" that redirects the RTSP client to http://: FFmpeg must not follow.
    hits: list[bytes] = []

    async def http_trap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(1024))
        writer.close()

    trap = await asyncio.start_server(http_trap, "127.0.0.1", 0)
    trap_port = trap.sockets[0].getsockname()[1]

    async def redirector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            cseq = next(
                (
                    line.split(b":", 1)[1].strip()
                    for line in data.split(b"\r\n")
                    if line.lower().startswith(b"cseq")
                ),
                b"1",
            )
            writer.write(
                b"RTSP/1.0 302 Found\r\nCSeq: "
                + cseq
                + b"\r\nLocation: http://127.0.0.1:"
                + str(trap_port).encode()
                + b"/evil\r\n\r\n"
            )
            await writer.drain()

    rtsp = await asyncio.start_server(redirector, "127.0.0.1", 0)
    port = rtsp.sockets[0].getsockname()[1]
    try:
        status, _ = await register(
            http, gateway.base_url, id="redirect", url=f"rtsp://127.0.0.1:{port}/cam"
        )
        assert status == 201
        view = await wait_state(http, gateway.base_url, "redirect", "reconnecting", "failed")
        await asyncio.sleep(1)
        assert hits == [], "FFmpeg followed a redirect to http://"
        assert view["error"]
    finally:
        async with http.delete(f"{gateway.base_url}/api/v1/streams/redirect"):
            pass
        rtsp.close()
        trap.close()


async def test_rate_limits_per_client(http: aiohttp.ClientSession, camera_url: str) -> None:
    env = {
        "MEDIA_SERVER_AUTH__TOKENS": json.dumps(["client-one-token", "client-two-token"]),
        "MEDIA_SERVER_AUTH__VIEWER_TOKENS": "false",  # viewing open: rates, not rights
        "MEDIA_SERVER_LIMITS__REGISTRATIONS_PER_MINUTE": "6",
        "MEDIA_SERVER_LIMITS__REGISTRATIONS_BURST": "3",
        "MEDIA_SERVER_LIMITS__SESSIONS_PER_CLIENT": "1",
        "MEDIA_SERVER_LIMITS__WS_MESSAGES_PER_SECOND": "5",
        "MEDIA_SERVER_LIMITS__WS_MESSAGES_BURST": "10",
    }
    with run_gateway(env=env) as gw:
        url = f"{gw.base_url}/api/v1/streams"
        answers = []
        for i in range(5):
            body = {"id": f"r{i}", "url": camera_url, "on_demand": True}
            answers.append(await status_of(http, "POST", url, "client-one-token", json=body))
        assert [a[0] for a in answers] == [201, 201, 201, 429, 429]
        assert answers[3][1]["error"]["code"] == "rate-limited"
        assert int(answers[3][2]["Retry-After"]) >= 1
        body = {"id": "other", "url": camera_url, "on_demand": True}
        assert (await status_of(http, "POST", url, "client-two-token", json=body))[0] == 201

        async with http.ws_connect(f"{gw.base_url}/ws/demo") as ws:
            for _ in range(30):
                await ws.send_json({"type": "dance"})
            codes = [(await ws.receive_json(timeout=5))["code"] for _ in range(30)]
            assert codes.count("rate-limited") >= 15 and codes.count("unknown-type") >= 10
            assert not ws.closed

        first = Viewer(gw.base_url, "demo")
        await first.connect()
        second = Viewer(gw.base_url, "demo", "whep")
        with pytest.raises(AssertionError, match="429"):
            await second.connect()
        await second.close()
        await first.wait_frames(10)
        await first.close()


@pytest.fixture
def camera_url(rtsp: RtspServer) -> str:
    return rtsp.url("/small")


async def test_headers_request_ids_and_cors(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    async with http.get(f"{gateway.base_url}/") as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with http.get(
        f"{gateway.base_url}/api/v1/streams/nope", headers={"X-Request-Id": "trace-me-42"}
    ) as resp:
        assert resp.status == 404 and resp.headers["X-Request-Id"] == "trace-me-42"
    await asyncio.sleep(0.2)
    assert any(
        "[trace-me-42]" in line and "/api/v1/streams/nope" in line
        for line in gateway.stderr_text().splitlines()
    )
    preflight = {"Origin": "https://player.example", "Access-Control-Request-Method": "POST"}
    async with http.options(
        f"{gateway.base_url}/api/v1/streams/demo/whep", headers=preflight
    ) as resp:
        assert resp.status == 403  # CORS is off by default

    env = {"MEDIA_SERVER_HTTP__CORS_ORIGINS": '["https://player.example"]'}
    with run_gateway(env=env) as gw:
        whep = f"{gw.base_url}/api/v1/streams/demo/whep"
        async with http.options(whep, headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://player.example"
            assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        viewer = Viewer(gw.base_url, "demo", "whep")
        await viewer.connect()
        await viewer.close()
        async with http.post(
            whep,
            data="v=0\r\n",
            headers={"Origin": "https://player.example", "Content-Type": "application/sdp"},
        ) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "https://player.example"
            assert "Location" in resp.headers["Access-Control-Expose-Headers"]
        async with http.options(
            whep, headers={**preflight, "Origin": "https://evil.example"}
        ) as resp:
            assert resp.status == 403


def test_config_file_secrets_from_environment(tmp_path: Path) -> None:
    from media_server.config import ConfigError, load_settings

    path = tmp_path / "settings.yaml"
    path.write_text('auth:\n  tokens: ["${GATEWAY_TOKEN}"]\n')
    import os

    os.environ["GATEWAY_TOKEN"] = "from-the-environment"
    try:
        assert load_settings(path).auth.tokens == ["from-the-environment"]
    finally:
        del os.environ["GATEWAY_TOKEN"]
    with pytest.raises(ConfigError, match=r"GATEWAY_TOKEN.*not set"):
        load_settings(path)


async def test_viewer_tokens_without_control_auth_refuse_other_tokens(
    http: aiohttp.ClientSession,
) -> None:
    with run_gateway(env={"MEDIA_SERVER_AUTH__VIEWER_TOKENS": "true"}) as gw:
        for token in ("garbage", "x.y.z"):
            status, body, _ = await status_of(http, "GET", f"{gw.base_url}/view/demo?token={token}")
            assert status == 401, body
        status, _, _ = await status_of(http, "GET", f"{gw.base_url}/view/demo")
        assert status == 401


async def test_unverified_tokens_do_not_buy_fresh_quotas(http: aiohttp.ClientSession) -> None:
    env = {"MEDIA_SERVER_LIMITS__OFFERS_PER_MINUTE": "6", "MEDIA_SERVER_LIMITS__OFFERS_BURST": "2"}
    with run_gateway(env=env) as gw:
        statuses = []
        for i in range(4):
            statuses.append(
                (
                    await status_of(
                        http,
                        "POST",
                        f"{gw.base_url}/api/v1/streams/demo/whep?token=rot{i}",
                        f"rot{i}",
                        data="v=0\r\n",
                        headers={"Content-Type": "application/sdp"},
                    )
                )[0]
            )
        assert statuses == [400, 400, 429, 429]  # one address, one bucket


async def test_viewer_token_stays_out_of_logs(
    http: aiohttp.ClientSession, secured: Gateway
) -> None:
    token = await demo_viewer_token(http, secured)
    async with http.get(f"{secured.base_url}/view/demo?token={token}") as resp:
        assert resp.status == 200
    async with http.ws_connect(f"{secured.base_url}/ws/demo?token={token}"):
        pass
    await asyncio.sleep(0.3)
    log = secured.stderr_text()
    assert "/view/demo?token=***" in log
    assert token not in log and ADMIN not in log


async def test_signaling_sockets_are_bounded_per_client(http: aiohttp.ClientSession) -> None:
    env = {
        "MEDIA_SERVER_LIMITS__WEBSOCKETS_PER_CLIENT": "3",
        "MEDIA_SERVER_WEBRTC__CONNECT_TIMEOUT": "2",
    }
    with run_gateway(env=env) as gw:
        sockets = [await http.ws_connect(f"{gw.base_url}/ws/demo") for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{gw.base_url}/ws/demo")
        assert refused.value.status == 429
        # Sockets that never offer are closed after the connect timeout.
        msg = await sockets[0].receive_json(timeout=5)
        assert msg["code"] == "no-offer"
        for ws in sockets:
            await ws.close()
        async with http.ws_connect(f"{gw.base_url}/ws/demo") as ws:
            assert not ws.closed


async def test_websocket_viewer_told_when_its_stream_goes(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    await live(http, gateway.base_url, "going", rtsp.url("/small"))
    viewer = Viewer(gateway.base_url, "going")
    await viewer.connect()
    try:
        await viewer.wait_frames(5)
        async with http.delete(f"{gateway.base_url}/api/v1/streams/going") as resp:
            assert resp.status == 204
        for _ in range(50):
            if viewer.messages:
                break
            await asyncio.sleep(0.1)
        assert viewer.messages[0]["code"] == "session-closed"
        assert "stream removed" in viewer.messages[0]["message"]
    finally:
        await viewer.close()


async def test_offer_without_dtls_or_ice_is_refused(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    from tests.e2e.test_signaling import expect_error, make_offer

    offer = await make_offer()
    no_fingerprint = "\r\n".join(x for x in offer.split("\r\n") if "fingerprint" not in x)
    no_ice = "\r\n".join(x for x in offer.split("\r\n") if "ice-ufrag" not in x)
    async with http.ws_connect(f"{gateway.base_url}/ws/demo") as ws:
        for sdp in (no_fingerprint, no_ice):
            await ws.send_json({"type": "offer", "sdp": sdp})
            await expect_error(ws, "invalid-sdp")
    await asyncio.sleep(0.3)
    assert "Task exception was never retrieved" not in gateway.stderr_text()

"""The REST contract against a running gateway: success paths and every error case."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.api import register, wait_state
from tests.support.gateway import Gateway
from tests.support.rtsp import RtspServer, free_port

pytestmark = pytest.mark.e2e


def is_error(body: object, code: str | None = None) -> bool:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"]
    return code is None or err["code"] == code


async def test_create_is_idempotent_and_conflicts(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    url = rtsp.url("/small")
    status, first = await register(http, gateway.base_url, id="idem", url=url)
    assert status == 201 and first["id"] == "idem" and first["url"] == url
    assert first["transport"] == "tcp" and first["mode"] == "auto" and first["on_demand"] is False
    status, again = await register(http, gateway.base_url, id="idem", url=url, transport="tcp")
    assert status == 200 and again["id"] == "idem"
    status, body = await register(http, gateway.base_url, id="idem", url=url, mode="transcode")
    assert status == 409 and is_error(body, "stream-conflict")
    async with http.get(f"{gateway.base_url}/api/v1/streams") as resp:
        listed = await resp.json()
    assert [s["id"] for s in listed["streams"]].count("idem") == 1
    view = await wait_state(http, gateway.base_url, "idem", "live")
    assert (view["codec"], view["width"], view["height"]) == ("h264", 320, 240)
    assert view["effective_mode"] == "passthrough" and view["fps"] > 5
    async with http.delete(f"{gateway.base_url}/api/v1/streams/idem") as resp:
        assert resp.status == 204
    async with http.get(f"{gateway.base_url}/api/v1/streams/idem") as resp:
        assert resp.status == 404 and is_error(await resp.json(), "stream-not-found")


async def test_generated_id_and_same_body_is_same_stream(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    url = rtsp.url("/small") + "?gen=1"
    status, created = await register(http, gateway.base_url, url=url, on_demand=True)
    assert status == 201 and created["id"]
    assert created["state"] == "idle"
    status, again = await register(http, gateway.base_url, url=url, on_demand=True)
    assert status == 200 and again["id"] == created["id"]
    async with http.delete(f"{gateway.base_url}/api/v1/streams/{created['id']}") as resp:
        assert resp.status == 204


async def test_credentials_never_shown(
    http: aiohttp.ClientSession, gateway: Gateway, rtsp: RtspServer
) -> None:
    url = rtsp.url("/small").replace("rtsp://", "rtsp://admin:hunter2secret@")
    status, body = await register(http, gateway.base_url, id="creds", url=url)
    assert status == 201
    await wait_state(http, gateway.base_url, "creds", "live", "reconnecting", "failed")
    async with http.get(f"{gateway.base_url}/api/v1/streams") as resp:
        text = await resp.text()
    async with http.delete(f"{gateway.base_url}/api/v1/streams/creds") as resp:
        assert resp.status == 204
    assert "hunter2secret" not in text and "admin" not in text
    assert "hunter2secret" not in str(body) and "***@" in body["url"]
    assert "hunter2secret" not in gateway.stderr_text()


async def test_credentials_not_in_errors(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    port = free_port()  # nothing listens there: the open fails, with the URL in FFmpeg's error
    url = f"rtsp://admin:n0tInLogs@127.0.0.1:{port}/cam"
    status, _ = await register(http, gateway.base_url, id="down", url=url)
    assert status == 201
    view = await wait_state(http, gateway.base_url, "down", "reconnecting")
    async with http.delete(f"{gateway.base_url}/api/v1/streams/down") as resp:
        assert resp.status == 204
    assert view["error"] and "n0tInLogs" not in view["error"]
    assert "n0tInLogs" not in gateway.stderr_text()


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({}, "invalid-body", "url"),
        ({"url": "http://example/x"}, "invalid-body", "rtsp://"),
        ({"url": "file:///etc/passwd"}, "invalid-body", "rtsp://"),
        ({"url": "rtsp://"}, "invalid-body", "host"),
        ({"url": "rtsp://h/x", "transport": "sctp"}, "invalid-body", "transport"),
        ({"url": "rtsp://h/x", "mode": "fast"}, "invalid-body", "mode"),
        ({"url": "rtsp://h/x", "on_demand": "yes"}, "invalid-body", "on_demand"),
        ({"url": "rtsp://h/x", "id": "../etc"}, "invalid-body", "id"),
        ({"url": "rtsp://h/x", "id": ""}, "invalid-body", "id"),
        ({"url": "rtsp://h/x", "colour": "red"}, "invalid-body", "unknown field"),
        ({"url": 5}, "invalid-body", "url"),
    ],
)
async def test_bad_bodies(
    http: aiohttp.ClientSession, gateway: Gateway, body: dict[str, object], code: str, says: str
) -> None:
    status, reply = await register(http, gateway.base_url, **body)
    assert status == 400 and is_error(reply, code)
    assert says in reply["error"]["message"]


@pytest.mark.parametrize(
    ("data", "ctype", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid-json"),
        (b"[1, 2]", "application/json", 400, "invalid-body"),
        (b'"rtsp://h/x"', "application/json", 400, "invalid-body"),
        (b"url=rtsp://h/x", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
        (b"\xff\xfe", "application/json", 400, "invalid-json"),
        (b"[" * 20_000 + b"]" * 20_000, "application/json", 400, "invalid-json"),
        (b'{"url": "rtsp://h/' + b"a" * 200_000 + b'"}', "application/json", 413, None),
    ],
)
async def test_bad_requests(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    data: bytes,
    ctype: str,
    status: int,
    code: str | None,
) -> None:
    async with http.post(
        f"{gateway.base_url}/api/v1/streams", data=data, headers={"Content-Type": ctype}
    ) as resp:
        assert resp.status == status
        assert is_error(await resp.json(), code)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/streams/nope", 404),
        ("DELETE", "/api/v1/streams/nope", 404),
        ("GET", "/api/v1/nothing-here", 404),
        ("PUT", "/api/v1/streams", 405),
        ("POST", "/api/v1/streams/nope/whep", 404),
        ("DELETE", "/api/v1/streams/demo/whep/no-such-session", 404),
    ],
)
async def test_not_found_and_method(
    http: aiohttp.ClientSession, gateway: Gateway, method: str, path: str, status: int
) -> None:
    async with http.request(method, gateway.base_url + path) as resp:
        assert resp.status == status
        assert is_error(await resp.json())


async def test_health_readiness_metrics(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    async with http.get(f"{gateway.base_url}/api/v1/health") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    async with http.get(f"{gateway.base_url}/api/v1/health/ready") as resp:
        ready = await resp.json()
        assert resp.status == 200, ready
    assert set(ready["components"]) >= {"http", "ingest", "event_loop", "webrtc"}
    assert all(c["ok"] for c in ready["components"].values())
    async with http.get(f"{gateway.base_url}/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    assert 'media_server_streams{state="live"}' in text
    assert 'media_server_ingress_packets_total{stream="demo"}' in text
    # The demo stream allocates enough that the interpreter has collected by now.
    gc_samples = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("media_server_gc_pause_seconds_total{")
    ]
    assert gc_samples and sum(gc_samples) > 0, gc_samples


async def test_whep_needs_sdp(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    url = f"{gateway.base_url}/api/v1/streams/demo/whep"
    async with http.post(url, json={"sdp": "x"}) as resp:
        assert resp.status == 415 and is_error(await resp.json(), "unsupported-media-type")
    bad = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
    async with http.post(url, data=bad, headers={"Content-Type": "application/sdp"}) as resp:
        assert resp.status == 400 and is_error(await resp.json(), "no-video")
    async with http.post(url, data="hello", headers={"Content-Type": "application/sdp"}) as resp:
        assert resp.status == 400 and is_error(await resp.json(), "invalid-sdp")

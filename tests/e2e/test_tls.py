"""HTTPS with a certificate made here: pages, REST, WebSocket and WHEP signaling over TLS
(viewers decode frames), the certificate reloaded on SIGHUP, and plain HTTP refused
beyond loopback unless allowed."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.support.certs import make_certificate
from tests.support.gateway import GENEROUS, run_gateway
from tests.support.rtsp import free_port
from tests.support.viewer import Viewer

pytestmark = pytest.mark.e2e


def served_name(port: int) -> str:
    """The common name of the certificate a new connection is served."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_https_serves_pages_and_signaling_and_reloads_its_certificate(
    tmp_path: Path,
) -> None:
    cert, key = make_certificate(tmp_path, "first")
    env = {
        **GENEROUS,
        "MEDIA_SERVER_TLS__CERT_FILE": str(cert),
        "MEDIA_SERVER_TLS__KEY_FILE": str(key),
    }
    with run_gateway(env=env) as gw:
        assert gw.base_url.startswith("https://") and gw.tls is not None
        trusting = aiohttp.TCPConnector(ssl=gw.tls)
        async with aiohttp.ClientSession(connector=trusting) as http:
            for path in ("/", "/view/demo", "/api/v1/streams", "/api/v1/health/ready"):
                async with http.get(gw.url(path)) as resp:
                    assert resp.status == 200, path
                    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
            async with aiohttp.ClientSession() as untrusting:  # the system's roots only
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await untrusting.get(gw.url("/api/v1/health"))
        for via in ("ws", "whep"):  # wss:// and WHEP over HTTPS
            viewer = Viewer(gw.base_url, "demo", via, tls=gw.tls)
            try:
                await viewer.connect()
                await viewer.wait_frames(15)
            finally:
                await viewer.close()

        assert served_name(gw.port) == "first"
        make_certificate(tmp_path, "renewed")  # the same files, a new certificate
        os.kill(gw.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_name(gw.port) != "renewed":
            assert time.monotonic() < deadline, gw.stderr_tail()
            time.sleep(0.1)
        # A broken key is refused on reload: the running certificate stays.
        key.write_text("not a key")
        os.kill(gw.pid, signal.SIGHUP)
        while "reload refused" not in gw.stderr_text():
            assert time.monotonic() < deadline + 10, gw.stderr_tail()
            time.sleep(0.1)
        assert served_name(gw.port) == "renewed"


def _start(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "media_server", "--port", str(free_port()), "--no-demo", *args],
        env={**os.environ, "MEDIA_SERVER_REGISTRY__PATH": ":memory:", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_plain_http_beyond_loopback_needs_permission(tmp_path: Path) -> None:
    token = {"MEDIA_SERVER_AUTH__TOKENS": '["a-long-enough-token"]'}
    refused = _start("--host", "0.0.0.0", **token)
    assert refused.returncode == 2
    assert "refusing to serve plain HTTP" in refused.stderr
    assert "MEDIA_SERVER_HTTP__ALLOW_PLAIN" in refused.stderr
    bad = _start("--host", "127.0.0.1", MEDIA_SERVER_TLS__CERT_FILE=str(tmp_path / "none.pem"))
    assert bad.returncode == 2 and "both cert_file and key_file" in bad.stderr
    missing = {
        "MEDIA_SERVER_TLS__CERT_FILE": str(tmp_path / "none.pem"),
        "MEDIA_SERVER_TLS__KEY_FILE": str(tmp_path / "none.key"),
    }
    unreadable = _start("--host", "127.0.0.1", **missing)
    assert unreadable.returncode == 2 and "tls: cannot use" in unreadable.stderr


async def test_allowed_plain_http_beyond_loopback_starts() -> None:
    env = {
        **GENEROUS,
        "MEDIA_SERVER_AUTH__TOKENS": '["a-long-enough-token"]',
        "MEDIA_SERVER_HTTP__ALLOW_PLAIN": "true",
    }
    with run_gateway("--no-demo", "--host", "0.0.0.0", env=env) as gw:
        assert gw.get_json("/api/v1/health") == {"status": "ok"}

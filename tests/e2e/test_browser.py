"""Headless Chromium against a real gateway process: the player plays, the list lists.

Also against a gateway with auth on (a control-plane token and viewer tokens): the player
plays with a viewer token, the list asks for a token, and the pages' strict
Content-Security-Policy causes no violations.

Needs Debian's Chromium at /usr/bin/chromium and the playwright Python package (no
downloaded browsers).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.support.cluster import run_cluster
from tests.support.front import run_front
from tests.support.gateway import GENEROUS, Gateway, run_gateway, run_gateway_on
from tests.support.redis_server import RedisServer
from tests.support.rtsp import RtspServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
PLAY_TIMEOUT_MS = 20_000
SCREENSHOT = Path("/tmp/view_demo.png")
WEB_ROOT = Path(__file__).resolve().parents[2] / "media_server" / "web"
AUTH_TOKEN = "browser-test-token"

pytestmark = pytest.mark.browser

# What the player page's peer connection says about itself, for failure messages.
STATS_JS = """
async () => {
  const p = window.__player;
  if (!p) return {player: null};
  const out = {state: p.state, error: p.error, attempts: p.attempts};
  const pc = p.pc;
  if (!pc) return out;
  out.connectionState = pc.connectionState;
  out.iceConnectionState = pc.iceConnectionState;
  out.signalingState = pc.signalingState;
  const report = await pc.getStats();
  const byId = {};
  report.forEach((r) => { byId[r.id] = r; });
  out.inbound = [];
  out.pairs = [];
  report.forEach((r) => {
    if (r.type === "inbound-rtp") {
      const codec = byId[r.codecId];
      out.inbound.push({
        kind: r.kind, codec: codec ? codec.mimeType + " " + (codec.sdpFmtpLine || "") : null,
        packetsReceived: r.packetsReceived, bytesReceived: r.bytesReceived,
        framesReceived: r.framesReceived, framesDecoded: r.framesDecoded,
        framesDropped: r.framesDropped, keyFramesDecoded: r.keyFramesDecoded,
        frameWidth: r.frameWidth, frameHeight: r.frameHeight, pliCount: r.pliCount,
        nackCount: r.nackCount, decoderImplementation: r.decoderImplementation,
      });
    } else if (r.type === "candidate-pair") {
      const l = byId[r.localCandidateId] || {}, rc = byId[r.remoteCandidateId] || {};
      out.pairs.push({
        state: r.state, nominated: r.nominated, bytesReceived: r.bytesReceived,
        local: `${l.candidateType} ${l.protocol} ${l.address}:${l.port}`,
        remote: `${rc.candidateType} ${rc.protocol} ${rc.address}:${rc.port}`,
      });
    }
  });
  return out;
}
"""

VIDEO_JS = """
() => {
  const v = document.querySelector("video");
  return v && {width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
               paused: v.paused, readyState: v.readyState,
               autoplay: v.autoplay, muted: v.muted, playsInline: v.playsInline};
}
"""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    # No skip: a missing browser is a broken setup, and the suite must say so.
    assert os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM}: run scripts/setup.sh --test"
    with sync_api.sync_playwright() as pw:
        yield pw


@contextlib.contextmanager
def chromium(playwright: Any, profile: Path, *args: str) -> Iterator[Any]:
    """Chromium with a profile of its own and the suite's switches, plus `args`."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_ARGS, *args],
        viewport={"width": 1000, "height": 860},
    )
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="module")
def browser_context(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(playwright, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def auth_gateway() -> Iterator[Gateway]:
    """A gateway of this module's own: control-plane token and viewer tokens required."""
    env = {
        **GENEROUS,
        "MEDIA_SERVER_AUTH__TOKENS": json.dumps([AUTH_TOKEN]),
        "MEDIA_SERVER_AUTH__VIEWER_TOKENS": "true",
    }
    with run_gateway(env=env) as gw:
        yield gw


# Runs before the page's own scripts: collects Content-Security-Policy violations.
CSP_WATCH_JS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


class PageLog:
    """Console messages and page errors, for failure messages; also CSP violations."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.lines: list[str] = []
        page.on("console", lambda m: self.lines.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.lines.append(f"pageerror: {e}"))
        page.add_init_script(CSP_WATCH_JS)

    def csp_violations(self) -> list[str]:
        """Violations the page reported, plus console lines about the policy."""
        reported = self.page.evaluate("() => window.__csp || []")
        console = [line for line in self.lines if "Content Security Policy" in line]
        return [*reported, *console]

    def __str__(self) -> str:
        return "\n".join(self.lines[-30:]) or "(no console output)"


def _diagnostics(page: Any, log: PageLog) -> str:
    try:
        stats = json.dumps(page.evaluate(STATS_JS), indent=1)
        video = json.dumps(page.evaluate(VIDEO_JS))
        status = page.inner_text("#status")
    except Exception as exc:
        return f"(no diagnostics: {exc})\n{log}"
    return f"status: {status}\nvideo: {video}\nplayer: {stats}\n--- page log ---\n{log}"


def _assert_plays(page: Any, log: PageLog, context: str = "") -> str:
    """Wait for the video to start, then check it is 640x480 and its time advances.

    Returns the diagnostics text, for later assertions."""
    started = time.monotonic()
    try:
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " return v && v.videoWidth > 0 && v.currentTime > 0; }",
            timeout=PLAY_TIMEOUT_MS,
        )
    except sync_api.TimeoutError:
        pytest.fail(
            f"the video did not start within {PLAY_TIMEOUT_MS / 1000:.0f} s\n"
            f"{_diagnostics(page, log)}\n{context}"
        )
    time_to_play = time.monotonic() - started

    first = page.evaluate(VIDEO_JS)
    page.wait_for_timeout(1500)
    second = page.evaluate(VIDEO_JS)
    details = f"time to play {time_to_play:.2f} s\n{_diagnostics(page, log)}\n{context}"
    assert (second["width"], second["height"]) == (640, 480), details
    advanced = second["time"] - first["time"]
    assert advanced > 0.75, f"currentTime advanced only {advanced:.3f} s in 1.5 s\n{details}"
    assert not second["paused"], details
    return details


def _request(
    gw: Gateway, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to the gateway: (status, headers, body), 4xx/5xx included."""
    headers = {"Accept": "application/json"}
    data = None
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(gw.url(path), data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def _assert_unauthorized(gw: Gateway, path: str, token: str | None = None) -> None:
    status, _, body = _request(gw, "GET", path, token)
    assert status == 401, f"GET {path}: {status} {body!r}"
    error = json.loads(body)["error"]
    assert error["code"] == "unauthorized" and error["message"], error


def _issue_viewer_token(gw: Gateway, stream_id: str = "demo") -> dict[str, Any]:
    status, _, body = _request(
        gw, "POST", f"/api/v1/streams/{stream_id}/viewer-tokens", AUTH_TOKEN, {"ttl": 600}
    )
    assert status == 201, f"{status} {body!r}\n{gw.describe()}"
    issued: dict[str, Any] = json.loads(body)
    assert issued["stream"] == stream_id
    assert issued["view_url"] == f"/view/{stream_id}?token={issued['token']}"
    return issued


def _assert_csp(headers: dict[str, str], what: str) -> None:
    policy = {k.lower(): v for k, v in headers.items()}.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "style-src 'self'" in policy, (what, policy)
    assert "unsafe-inline" not in policy, (what, policy)


def test_view_plays_demo(gateway: Gateway, browser_context: Any) -> None:
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/demo")
        video = page.locator("video")
        assert video.get_attribute("autoplay") is not None
        assert video.get_attribute("muted") is not None
        assert video.get_attribute("playsinline") is not None

        details = _assert_plays(page, log)

        player = page.evaluate(
            "() => ({state: window.__player.state,"
            " connection: window.__player.pc && window.__player.pc.connectionState})"
        )
        assert player == {"state": "playing", "connection": "connected"}, details
        stats = page.evaluate(STATS_JS)
        inbound = [s for s in stats["inbound"] if s["kind"] == "video"]
        assert inbound and inbound[0]["framesDecoded"] > 0, details
        assert inbound[0]["codec"].lower().startswith("video/h264"), details

        page.screenshot(path=str(SCREENSHOT))
    finally:
        page.close()


def test_index_lists_demo_live(gateway: Gateway, browser_context: Any) -> None:
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/")
        row = page.locator('tr[data-stream-id="demo"]')
        try:
            row.and_(page.locator('[data-state="live"]')).wait_for(timeout=10_000)
        except sync_api.TimeoutError:
            pytest.fail(f"demo is not listed as live\n{page.inner_text('body')}\n{log}")
        assert row.locator("td.state").inner_text().strip() == "live"
        assert row.locator(".resolution").inner_text().strip() == "640\u00d7480"
        assert row.locator(".codec").inner_text().startswith("h264")
        viewers = row.locator(".viewers").inner_text().strip()
        assert re.fullmatch(r"\d+( · \d+ (MSE|HLS))*", viewers), viewers
        assert row.locator("a").first.get_attribute("href") == "/view/demo"

        # The list refreshes by itself: the timestamp changes within a few seconds.
        stamp = page.inner_text("#updated")
        page.wait_for_function(
            "(old) => document.getElementById('updated').textContent !== old",
            arg=stamp,
            timeout=5_000,
        )
    finally:
        page.close()


def test_view_unknown_stream_reports_and_retries(gateway: Gateway, browser_context: Any) -> None:
    page = browser_context.new_page()
    try:
        page.goto(f"{gateway.base_url}/view/no-such-stream")
        page.wait_for_function(
            "() => window.__player && window.__player.attempts >= 2", timeout=10_000
        )
        status = page.inner_text("#status")
        assert "stream-not-found" in status or "stream-not-found" in str(
            page.evaluate("() => window.__player.error")
        ), status
        assert "no stream 'no-such-stream'" in page.inner_text("#stream-info")
    finally:
        page.close()


# -- with auth on --------------------------------------------------------------------------


def test_pages_carry_csp_and_need_no_inline_code(auth_gateway: Gateway) -> None:
    issued = _issue_viewer_token(auth_gateway)
    for path in ("/", issued["view_url"], f"/view/demo?token={AUTH_TOKEN}"):
        status, headers, _ = _request(auth_gateway, "GET", path)
        assert status == 200, path
        _assert_csp(headers, path)
    # What the policy forbids is absent from the pages themselves.
    for name in ("index.html", "view.html"):
        html = (WEB_ROOT / name).read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), name
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html, re.IGNORECASE), name


def test_view_with_viewer_token_plays(auth_gateway: Gateway, browser_context: Any) -> None:
    # The REST side: only a control-plane token issues viewer tokens.
    status, _, _ = _request(auth_gateway, "POST", "/api/v1/streams/demo/viewer-tokens")
    assert status == 401
    issued = _issue_viewer_token(auth_gateway)
    _assert_unauthorized(auth_gateway, "/view/demo")
    _assert_unauthorized(auth_gateway, "/view/demo?token=garbage-not-a-token")
    _assert_unauthorized(auth_gateway, "/view/demo", token="garbage-not-a-token")

    page = browser_context.new_page()
    log = PageLog(page)
    try:
        response = page.goto(auth_gateway.url(issued["view_url"]))
        assert response is not None and response.status == 200
        _assert_csp(response.headers, "view page")
        details = _assert_plays(page, log, auth_gateway.describe())
        assert page.evaluate("() => window.__player.state") == "playing", details

        # A viewer token does not open the control API: the page says so, once.
        info = page.locator("#stream-info")
        info.filter(has_text="not available with this token").wait_for(timeout=5_000)
        assert "401" in info.inner_text(), info.inner_text()

        assert log.csp_violations() == [], details
        # The watcher does see a violation (an inline script is one).
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.__inline = 1'; document.body.appendChild(s); }"
        )
        page.wait_for_function("() => window.__csp.length > 0", timeout=5_000)
        assert page.evaluate("() => window.__inline") is None
    finally:
        page.close()


def test_view_refused_socket_stops_with_reason(auth_gateway: Gateway, browser_context: Any) -> None:
    """A token the gateway refuses (here: one that never was valid) stops the player with
    the gateway's reason instead of retrying in silence."""
    page = browser_context.new_page()
    log = PageLog(page)
    # The gateway would not serve the page with this token; serve it from disk instead,
    # so the socket and the API see the bad token.
    page.route(
        "**/view/demo?token=*",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            body=(WEB_ROOT / "view.html").read_text(encoding="utf-8"),
        ),
    )
    try:
        page.goto(auth_gateway.url("/view/demo?token=expired%2Fgarbage"))
        try:
            page.wait_for_function(
                "() => window.__player && window.__player.state === 'stopped'", timeout=10_000
            )
        except sync_api.TimeoutError:
            pytest.fail(f"the player did not stop\n{_diagnostics(page, log)}")
        assert page.evaluate("() => window.__player.attempts") == 1
        status = page.inner_text("#status")
        assert "the token is not valid" in status, status
        page.locator("#stream-info").filter(has_text="401").wait_for(timeout=5_000)
    finally:
        page.close()


def test_index_asks_for_token_then_lists_demo(auth_gateway: Gateway, browser_context: Any) -> None:
    page = browser_context.new_page()
    log = PageLog(page)
    form = page.locator("#auth")
    row = page.locator('tr[data-stream-id="demo"]')
    try:
        response = page.goto(auth_gateway.url("/"))
        assert response is not None
        _assert_csp(response.headers, "index page")
        form.wait_for(state="visible", timeout=5_000)
        assert page.locator("#token").get_attribute("type") == "password"
        assert "unauthorized" in page.inner_text("#auth-message")
        assert "401" in page.inner_text("#note")
        assert page.locator("#forget").is_hidden()
        assert row.count() == 0

        # A wrong token: the API's reason, and the form stays.
        page.fill("#token", "not-the-token")
        page.click("#auth button[type=submit]")
        page.locator("#auth-message").filter(has_text="the token is not valid").wait_for(
            timeout=5_000
        )
        assert form.is_visible()

        page.fill("#token", AUTH_TOKEN)
        page.press("#token", "Enter")
        try:
            row.and_(page.locator('[data-state="live"]')).wait_for(timeout=10_000)
        except sync_api.TimeoutError:
            pytest.fail(f"demo is not listed as live\n{page.inner_text('body')}\n{log}")
        assert form.is_hidden()
        assert page.inner_text("#note") == ""
        assert page.evaluate("() => sessionStorage.getItem('media_server.token')") == AUTH_TOKEN
        # The control-plane token never goes into a URL (history, shared links, logs).
        assert row.locator("a").first.get_attribute("href") == "/view/demo"

        # The token outlives a reload of the tab.
        page.reload()
        row.and_(page.locator('[data-state="live"]')).wait_for(timeout=10_000)
        assert form.is_hidden()

        # The list's link mints a viewer token of its own for the player, which reads the
        # stream's details with the tab's control-plane token.
        row.locator("a").first.click()
        page.wait_for_url("**/view/demo?token=*")
        opened = page.evaluate("() => new URLSearchParams(location.search).get('token')")
        assert opened and opened != AUTH_TOKEN and AUTH_TOKEN not in page.url
        _assert_plays(page, log, auth_gateway.describe())
        page.locator("#stream-info").filter(has_text="stream live").wait_for(timeout=5_000)
        assert log.csp_violations() == [], str(log)

        # Forget the token: the form is back, nothing is listed.
        page.go_back()
        page.locator("#forget").click()
        form.wait_for(state="visible", timeout=5_000)
        assert page.evaluate("() => sessionStorage.getItem('media_server.token')") is None
        assert row.count() == 0
        assert log.csp_violations() == [], str(log)
    finally:
        page.close()


CONSOLE_SCREENSHOT = Path("/tmp/console.png")
PLAYER_SCREENSHOT = Path("/tmp/player_stats.png")


def test_console_adds_and_removes_a_stream_live(
    gateway: Gateway, rtsp: RtspServer, browser_context: Any
) -> None:
    page = browser_context.new_page()
    log = PageLog(page)
    page.on("dialog", lambda dialog: dialog.accept())  # "Remove stream …?"
    try:
        page.goto(f"{gateway.base_url}/")
        page.locator('tr[data-stream-id="demo"][data-state="live"]').wait_for(timeout=10_000)
        # The thumbnail is the gateway's snapshot, decoded by the browser: 640x480.
        page.wait_for_function(
            "() => { const i = document.querySelector('tr[data-stream-id=demo] td.thumb img');"
            " return i && i.naturalWidth === 640 && i.naturalHeight === 480; }",
            timeout=10_000,
        )
        # A refused registration shows the API's own error under the form.
        page.fill("#add input[name=id]", "bad-one")
        page.fill("#add input[name=url]", "http://camera.example/stream")
        page.click("#add button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('add-message').textContent.includes('Not added')",
            timeout=5_000,
        )
        message = page.inner_text("#add-message")
        assert "invalid" in message and "rtsp" in message.lower(), message
        # A real camera: its row appears and turns live with no reload (server-sent events).
        page.fill("#add input[name=id]", "console-cam")
        page.fill("#add input[name=url]", rtsp.url("/small"))
        page.click("#add button[type=submit]")
        row = page.locator('tr[data-stream-id="console-cam"]')
        try:
            row.and_(page.locator('[data-state="live"]')).wait_for(timeout=15_000)
        except sync_api.TimeoutError:
            pytest.fail(f"the new stream never showed live\n{page.inner_text('body')}\n{log}")
        assert row.locator("td.resolution").inner_text().strip() == "320\u00d7240"
        page.wait_for_function(
            "() => document.querySelector('tr[data-stream-id=\"console-cam\"] td.bitrate')"
            ".textContent.includes('bit/s')",
            timeout=10_000,
        )
        page.screenshot(path=str(CONSOLE_SCREENSHOT), full_page=True)
        row.locator("button.remove").click()
        row.wait_for(state="detached", timeout=10_000)
        status, _, _ = _request(gateway, "GET", "/api/v1/streams/console-cam")
        assert status == 404
    finally:
        page.close()


def test_player_shows_its_stats_overlay(gateway: Gateway, browser_context: Any) -> None:
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/demo")
        _assert_plays(page, log)
        overlay = page.locator("#stats")
        assert overlay.is_hidden()
        page.click("#stats-toggle")
        assert overlay.is_visible()
        page.wait_for_function(
            "() => { const s = (n) => document.querySelector(`#stats dd[data-stat=${n}]`);"
            " return s('resolution') && s('resolution').textContent === '640\u00d7480'"
            " && s('bitrate').textContent.endsWith('kbit/s')"
            " && s('latency').textContent.endsWith('ms'); }",
            timeout=10_000,
        )
        stat = {
            name: page.inner_text(f"#stats dd[data-stat={name}]")
            for name in ("fps", "packets", "jitter", "transport", "codec")
        }
        assert stat["transport"] == "engine" and stat["codec"] == "H264", stat
        assert stat["packets"].isdigit() and stat["jitter"].endswith("ms"), stat
        page.screenshot(path=str(PLAYER_SCREENSHOT))
        page.click("#stats-toggle")
        assert overlay.is_hidden()
    finally:
        page.close()


def _sessions(gw: Gateway) -> int:
    _, _, body = _request(gw, "GET", "/api/v1/health/ready")
    count: int = json.loads(body)["components"]["webrtc"]["sessions"]
    return count


def test_whep_player_plays_here_and_across_origins(gateway: Gateway, browser_context: Any) -> None:
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/whep?stream=demo")
        _assert_plays(page, log)
        assert page.get_attribute("#state", "data-state") == "playing"
        # Another gateway that lets this page's origin in (CORS): the page plays it too,
        # and Stop ends the session there with the WHEP DELETE.
        env = {**GENEROUS, "MEDIA_SERVER_HTTP__CORS_ORIGINS": json.dumps([gateway.base_url])}
        with run_gateway(env=env) as other:
            endpoint = f"{other.base_url}/api/v1/streams/demo/whep"
            page.goto(f"{gateway.base_url}/whep?url={endpoint}")
            _assert_plays(page, log, f"cross-origin: {endpoint}")
            assert _sessions(other) == 1
            page.click("#stop")
            deadline = time.monotonic() + 5
            while _sessions(other) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _sessions(other) == 0, "Stop did not end the session (WHEP DELETE)"
            assert not log.csp_violations(), log
        # A gateway that does not allow the origin: the browser refuses, the page says so.
        with run_gateway(env=GENEROUS) as closed:
            page.goto(f"{gateway.base_url}/whep?url={closed.base_url}/api/v1/streams/demo/whep")
            page.wait_for_function(
                "() => document.getElementById('state').dataset.state === 'failed'",
                timeout=10_000,
            )
            assert "did not answer" in page.inner_text("#message")
    finally:
        page.close()


def _player_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        "() => ({state: window.__player.state, attempts: window.__player.attempts})"
    )
    return state


def test_player_comes_back_after_gateway_and_stream_restarts(
    rtsp: RtspServer, browser_context: Any
) -> None:
    page = browser_context.new_page()
    log = PageLog(page)

    def add_camera(gw: Gateway) -> None:
        body = {"id": "cam", "url": rtsp.url("/baseline")}
        assert _request(gw, "POST", "/api/v1/streams", body=body)[0] == 201

    def wait_playing(playing: bool) -> None:
        test = "===" if playing else "!=="
        page.wait_for_function(
            f"() => window.__player.state {test} 'playing'", timeout=PLAY_TIMEOUT_MS
        )

    try:
        with run_gateway(env=GENEROUS) as first:
            port = first.port
            add_camera(first)
            page.goto(f"{first.base_url}/view/cam")
            _assert_plays(page, log, "before the restarts")
            before = _player_state(page)["attempts"]
            os.kill(first.pid, signal.SIGKILL)  # the socket drops without a goodbye
            first.proc.wait(timeout=10)
            wait_playing(False)
        # The same address again, as a supervisor restarts it (a fresh registry).
        with run_gateway_on(port, env=GENEROUS) as second:
            add_camera(second)
            wait_playing(True)
            _assert_plays(page, log, "after the gateway restart")
            after_gateway = _player_state(page)["attempts"]
            assert after_gateway > before
            # The stream restarts: removed (its viewers hear so) and registered again.
            assert _request(second, "DELETE", "/api/v1/streams/cam")[0] == 204
            wait_playing(False)
            add_camera(second)
            wait_playing(True)
            _assert_plays(page, log, "after the stream restart")
            assert _player_state(page)["attempts"] > after_gateway
    finally:
        page.close()


AUDIO_JS = """
async () => {
  const report = await window.__player.pc.getStats();
  const byId = {};
  report.forEach((r) => { byId[r.id] = r; });
  let out = null;
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      const codec = byId[r.codecId];
      out = {codec: codec ? codec.mimeType : null, samples: r.totalSamplesReceived || 0,
             concealed: r.concealedSamples || 0, level: r.audioLevel || 0};
    }
  });
  return out;
}
"""


@pytest.mark.parametrize("mount", ["/av-opus", "/av-aac"])
def test_player_plays_the_cameras_sound(
    gateway: Gateway, rtsp: RtspServer, browser_context: Any, mount: str
) -> None:
    sid = f"browser{mount.replace('/', '-')}"
    status, _, body = _request(
        gateway, "POST", "/api/v1/streams", body={"id": sid, "url": rtsp.url(mount)}
    )
    assert status == 201, body
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/{sid}")
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " return v && v.videoWidth === 320 && v.currentTime > 0; }",
            timeout=PLAY_TIMEOUT_MS,
        )
        deadline = time.monotonic() + PLAY_TIMEOUT_MS / 1000
        audio = page.evaluate(AUDIO_JS)
        while not (audio and audio["samples"] > 48000) and time.monotonic() < deadline:
            page.wait_for_timeout(200)  # getStats is async: poll it from here
            audio = page.evaluate(AUDIO_JS)
        assert audio and audio["samples"] > 48000, f"{audio}\n{_diagnostics(page, log)}"
        assert audio["codec"] == "audio/opus", audio  # AAC arrives as Opus made once
        assert audio["concealed"] < audio["samples"] / 2, audio  # real sound, not filler
        sound = page.locator("#sound")
        assert sound.is_visible()
        sound.click()
        assert page.evaluate("() => document.querySelector('video').muted") is False
    except sync_api.TimeoutError:
        pytest.fail(f"no sound from {mount}\n{_diagnostics(page, log)}")
    finally:
        page.close()
        _request(gateway, "DELETE", f"/api/v1/streams/{sid}")


REMOTE_OUTBOUND_JS = """
async () => {
  const report = await window.__player.pc.getStats();
  const out = [];
  report.forEach((r) => {
    if (r.type === "remote-outbound-rtp" && r.kind === "video")
      out.push({packetsSent: r.packetsSent, reportsSent: r.reportsSent});
  });
  return out;
}
"""


def test_chromium_decodes_what_the_fanout_engine_sends(
    gateway: Gateway, browser_context: Any
) -> None:
    """The engine is the passthrough default: Chromium's own SRTP and SRTCP take its
    packets and its sender reports."""
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/demo")
        details = _assert_plays(page, log)
        stats = page.evaluate(STATS_JS)
        video = [s for s in stats["inbound"] if s["kind"] == "video"]
        assert video and video[0]["framesDecoded"] >= 45, details
        assert video[0]["codec"].lower().startswith("video/h264"), details
        assert video[0]["keyFramesDecoded"] >= 1, details
        # Sender reports arrived and were decrypted: Chromium reports what they said.
        page.wait_for_timeout(1500)
        remote = page.evaluate(REMOTE_OUTBOUND_JS)
        assert remote and remote[0]["packetsSent"] > 0 and remote[0]["reportsSent"] >= 1
        with urllib.request.urlopen(f"{gateway.base_url}/metrics") as resp:
            text = resp.read().decode()
        assert 'media_server_egress_packets_total{stream="demo",transport="engine"}' in text
        assert 'engine="native"' in text  # media_server_transport_info: the C send path
    finally:
        page.close()


def test_player_of_a_dead_node_comes_back_through_another(
    redis: RedisServer, rtsp: RtspServer, browser_context: Any
) -> None:
    """A cluster behind a front (a load balancer): the player's node dies with SIGKILL,
    its automatic reconnect lands on another node, and it plays again."""
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        with run_cluster(redis, "node-a", "node-b", "node-c") as nodes:
            body = {"id": "fo-cam", "url": rtsp.url("/baseline")}
            assert _request(nodes.nodes["node-a"], "POST", "/api/v1/streams", body=body)[0] == 201
            deadline = time.monotonic() + 20
            origin = None
            while origin is None and time.monotonic() < deadline:
                try:
                    view = nodes.nodes["node-b"].get_json("/api/v1/streams/fo-cam")
                except urllib.error.HTTPError as exc:  # not yet there: Redis brings it
                    assert exc.code == 404, exc
                    view = {"state": "unknown"}
                origin = view["ingest_node"] if view["state"] == "live" else None
                time.sleep(0.1)
            assert origin is not None, "the camera never went live"
            order = [origin] + [n for n in nodes.nodes if n != origin]
            with run_front([nodes.nodes[n].port for n in order]) as front:
                page.goto(f"{front}/view/fo-cam")
                _assert_plays(page, log, f"through the front, from {origin}")
                before = _player_state(page)["attempts"]
                nodes.kill(origin)  # the player's own node, and the camera's
                page.wait_for_function(
                    f"() => window.__player.attempts > {before}", timeout=PLAY_TIMEOUT_MS
                )
                page.wait_for_function(
                    "() => window.__player.state === 'playing'", timeout=PLAY_TIMEOUT_MS
                )
                _assert_plays(page, log, "after its node died")
    finally:
        page.close()


def test_console_offers_no_removal_of_a_config_file_stream(
    rtsp: RtspServer, browser_context: Any, tmp_path: Path
) -> None:
    config = tmp_path / "media_server.yaml"
    config.write_text(f"streams:\n  - id: filed\n    url: {rtsp.url('/small')}\n")
    page = browser_context.new_page()
    try:
        with run_gateway("--config", str(config), env=GENEROUS) as gw:
            page.goto(f"{gw.base_url}/")
            filed = page.locator('tr[data-stream-id="filed"] button.remove')
            filed.wait_for(timeout=10_000)
            assert filed.is_disabled() and "config file" in (filed.get_attribute("title") or "")
            demo = page.locator('tr[data-stream-id="demo"] button.remove')
            assert demo.is_enabled()
    finally:
        page.close()


PATH_JS = """
() => ({state: window.__player.state, path: window.__player.path,
        fallback: window.__player.fallback, codecs: window.__player.codecs,
        label: document.getElementById("path").textContent})
"""


@pytest.mark.parametrize("mode", ["mse", "hls"])
def test_player_plays_the_forced_path(gateway: Gateway, browser_context: Any, mode: str) -> None:
    """?mode=mse plays the fMP4 over the WebSocket; ?mode=hls the LL-HLS playlist (through
    MSE: Chromium has no HLS of its own here)."""
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/demo?mode={mode}")
        details = _assert_plays(page, log, f"mode={mode}")
        player = page.evaluate(PATH_JS)
        assert player["state"] == "playing" and player["path"] == mode, details
        assert player["fallback"] is None, details
        assert player["codecs"].startswith("avc1.42") or player["codecs"] == "native HLS"
        assert ("MSE" if mode == "mse" else "LL-HLS") in player["label"], player
        assert page.evaluate("() => window.__player.pc") is None  # no WebRTC at all
        assert log.csp_violations() == [], details
    finally:
        page.close()


@pytest.fixture(scope="module")
def no_udp_context(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium whose WebRTC may not use UDP (as behind a network that blocks it)."""
    profile = tmp_path_factory.mktemp("chromium-no-udp")
    with chromium(
        playwright, profile, "--webrtc-ip-handling-policy=disable_non_proxied_udp"
    ) as ctx:
        yield ctx


def test_a_viewer_without_udp_falls_back_to_mse_by_itself(
    gateway: Gateway, no_udp_context: Any
) -> None:
    page = no_udp_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/demo")
        page.wait_for_function(
            "() => window.__player && window.__player.path === 'mse'", timeout=15_000
        )
        details = _assert_plays(page, log, "after falling back")
        player = page.evaluate(PATH_JS)
        assert player["state"] == "playing" and player["fallback"], details
        assert "MSE" in player["label"] and "WebRTC did not connect" in player["label"], player
    finally:
        page.close()


def test_forced_webrtc_without_udp_does_not_fall_back(
    gateway: Gateway, no_udp_context: Any
) -> None:
    """The guard of the test above: with WebRTC forced, the same browser plays nothing."""
    page = no_udp_context.new_page()
    try:
        page.goto(f"{gateway.base_url}/view/demo?mode=webrtc")
        page.wait_for_timeout(8000)
        player = page.evaluate(PATH_JS)
        assert player["path"] == "webrtc" and player["state"] != "playing", player
    finally:
        page.close()


@pytest.mark.parametrize("mode", ["mse", "hls"])
def test_mse_and_hls_play_with_a_viewer_token_only(
    auth_gateway: Gateway, browser_context: Any, mode: str
) -> None:
    _assert_unauthorized(auth_gateway, "/hls/demo/index.m3u8")
    issued = _issue_viewer_token(auth_gateway)
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(auth_gateway.url(f"{issued['view_url']}&mode={mode}"))
        details = _assert_plays(page, log, f"mode={mode} with a viewer token")
        assert page.evaluate(PATH_JS)["path"] == mode, details
    finally:
        page.close()


def test_console_counts_mse_and_hls_viewers_beside_webrtc(
    gateway: Gateway, browser_context: Any
) -> None:
    watchers = [browser_context.new_page() for _ in range(2)]
    console = browser_context.new_page()
    log = PageLog(console)
    try:
        for page, mode in zip(watchers, ("mse", "hls"), strict=True):
            page.goto(f"{gateway.base_url}/view/demo?mode={mode}")
            _assert_plays(page, PageLog(page), f"mode={mode}")
        console.goto(f"{gateway.base_url}/")
        cell = console.locator('tr[data-stream-id="demo"] td.viewers')
        try:
            console.wait_for_function(
                "() => { const c = document.querySelector("
                "'tr[data-stream-id=\"demo\"] td.viewers');"
                " return c && /[1-9]\\d* MSE/.test(c.textContent)"
                " && /[1-9]\\d* HLS/.test(c.textContent); }",
                timeout=10_000,
            )
        except sync_api.TimeoutError:
            pytest.fail(f"viewers: {cell.inner_text()!r}\n{log}")
    finally:
        for page in (*watchers, console):
            page.close()


def test_mse_plays_the_cameras_aac_as_it_came(
    gateway: Gateway, rtsp: RtspServer, browser_context: Any
) -> None:
    sid = "browser-mse-aac"
    status, _, body = _request(
        gateway, "POST", "/api/v1/streams", body={"id": sid, "url": rtsp.url("/av-aac")}
    )
    assert status == 201, body
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/{sid}?mode=mse")
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " return v && v.videoWidth === 320 && v.currentTime > 1"
            " && v.webkitAudioDecodedByteCount > 10000; }",
            timeout=PLAY_TIMEOUT_MS,
        )
        assert "mp4a.40.2" in page.evaluate("() => window.__player.codecs")
        assert page.locator("#sound").is_visible()
    except sync_api.TimeoutError:
        pytest.fail(f"no AAC over MSE\n{_diagnostics(page, log)}")
    finally:
        page.close()
        _request(gateway, "DELETE", f"/api/v1/streams/{sid}")


#: Wraps RTCPeerConnection so the page keeps every offer it made (what Chromium offers).
KEEP_OFFERS_JS = """
window.__offers = [];
const made = RTCPeerConnection.prototype.createOffer;
RTCPeerConnection.prototype.createOffer = async function (...args) {
  const offer = await made.apply(this, args);
  window.__offers.push(offer.sdp);
  return offer;
};
"""


def _offered_video_codecs(sdp: str) -> set[str]:
    video = sdp.split("m=video", 1)[1].split("\nm=", 1)[0]
    return {line.split()[1].split("/")[0] for line in video.splitlines() if "a=rtpmap:" in line}


@pytest.mark.parametrize("mode", ["webrtc", "mse", "hls"])
def test_chromium_plays_an_h265_camera_as_it_can(
    gateway: Gateway, rtsp: RtspServer, browser_context: Any, mode: str
) -> None:
    """What Chromium offers for an H.265 stream decides what it gets: H.265 untouched
    where it offers (and its MediaSource plays) H.265, else the stream's H.264 transcode.
    Chromium here has no hardware H.265 decoder, so it offers none and gets H.264."""
    sid = f"browser-hevc-{mode}"
    status, _, body = _request(
        gateway, "POST", "/api/v1/streams", body={"id": sid, "url": rtsp.url("/h265")}
    )
    assert status == 201, body
    page = browser_context.new_page()
    page.add_init_script(KEEP_OFFERS_JS)
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/{sid}?mode={mode}")
        page.wait_for_function(
            "() => { const v = document.querySelector('video');"
            " return v && v.videoWidth === 320 && v.currentTime > 1; }",
            timeout=PLAY_TIMEOUT_MS,
        )
        details = _diagnostics(page, log)
        hvc1 = page.evaluate(
            "() => MediaSource.isTypeSupported('video/mp4; codecs=\"hvc1.1.6.L93.B0\"')"
        )
        view = json.loads(_request(gateway, "GET", f"/api/v1/streams/{sid}")[2])
        watching = {"webrtc": "viewer", "mse": "mse", "hls": "hls"}[mode]
        if mode == "webrtc":
            offered = _offered_video_codecs(page.evaluate("() => window.__offers[0]"))
            print(f"Chromium offers {sorted(offered)}")
            expected = "hevc" if "H265" in offered else "h264"
            stats = page.evaluate(STATS_JS)
            video = [s for s in stats["inbound"] if s["kind"] == "video"]
            wanted = "video/h265" if expected == "hevc" else "video/h264"
            assert video and video[0]["codec"].lower().startswith(wanted), details
        else:
            print(f"Chromium's MediaSource plays hvc1: {hvc1}")
            expected = "hevc" if hvc1 else "h264"
            codecs = page.evaluate("() => window.__player.codecs")
            assert codecs.startswith("hvc1" if hvc1 else "avc1"), details
        assert view["video_codecs"][watching] == {expected: 1}, view
        if expected == "h264":  # the console says who takes the transcode
            console = browser_context.new_page()
            try:
                console.goto(f"{gateway.base_url}/")
                row = console.locator(f'tr[data-stream-id="{sid}"]')
                row.filter(has_text="H.264 transcode for 1").wait_for(timeout=10_000)
            finally:
                console.close()
    except sync_api.TimeoutError:
        pytest.fail(f"the H.265 camera did not play ({mode})\n{_diagnostics(page, log)}")
    finally:
        page.close()
        _request(gateway, "DELETE", f"/api/v1/streams/{sid}")

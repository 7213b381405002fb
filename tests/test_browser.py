"""Headless Chromium against a real gateway process: the player plays, the list lists.

Needs Debian's Chromium at /usr/bin/chromium and the playwright Python package (no
downloaded browsers).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from tests.support.gateway import Gateway

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
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # No skip: a missing browser is a broken setup, and the suite must say so.
    assert os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM}: run scripts/setup.sh --test"
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1000, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()


class PageLog:
    """Console messages and page errors, for failure messages."""

    def __init__(self, page: Any) -> None:
        self.lines: list[str] = []
        page.on("console", lambda m: self.lines.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.lines.append(f"pageerror: {e}"))

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


def test_view_plays_demo(gateway: Gateway, browser_context: Any) -> None:
    page = browser_context.new_page()
    log = PageLog(page)
    try:
        page.goto(f"{gateway.base_url}/view/demo")
        video = page.locator("video")
        assert video.get_attribute("autoplay") is not None
        assert video.get_attribute("muted") is not None
        assert video.get_attribute("playsinline") is not None

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
                f"{_diagnostics(page, log)}"
            )
        time_to_play = time.monotonic() - started

        first = page.evaluate(VIDEO_JS)
        page.wait_for_timeout(1500)
        second = page.evaluate(VIDEO_JS)
        details = f"time to play {time_to_play:.2f} s\n{_diagnostics(page, log)}"
        assert (second["width"], second["height"]) == (640, 480), details
        advanced = second["time"] - first["time"]
        assert advanced > 0.75, f"currentTime advanced only {advanced:.3f} s in 1.5 s\n{details}"
        assert not second["paused"], details

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
        assert row.locator(".state").inner_text().strip() == "live"
        assert row.locator(".resolution").inner_text().strip() == "640\u00d7480"
        assert row.locator(".codec").inner_text().startswith("h264")
        assert row.locator(".viewers").inner_text().strip().isdigit()
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

"""Latency as Chromium shows it: WebRTC, MSE and LL-HLS players side by side on one camera.

The player page (``/view/clock?mode=webrtc|mse|hls``) watches the RTSP test server's
``/clock`` camera through one gateway, each path in turn in every round (one tab at a
time: Chromium slows the frame callbacks of tabs behind). In each, every frame the
video element presents (``requestVideoFrameCallback``) is drawn to a canvas and its
capture stamp read back (``tests/support/stamp.py``); the frame's expected display time
less its stamp is the latency a person would see, browser buffering and decoding
included. The stamp clock is CLOCK_MONOTONIC; each tab's ``performance.now()`` is mapped
onto it by reading both at once.

    python -m perf.browser_latency --seconds 20 --rounds 2

Prints a JSON line per round: P50 and P95 per path, what MSE and HLS add over WebRTC
(medians), and the first frame: from the player's start (socket or playlist asked for)
and from navigation start (the page's own loading included).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from playwright import sync_api

from perf.fmp4_egress import camera_and_gateway
from perf.harness import percentile

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
MODES = ("webrtc", "mse", "hls")

# Reads each presented frame's stamp (40 16-pixel blocks in the top band: 32 bits of
# microseconds and an 8-bit check), and keeps (display time, stamp) pairs.
WATCH = """
(offsetMs) => {
  const video = document.querySelector("video");
  const canvas = document.createElement("canvas");
  canvas.width = 640; canvas.height = 16;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  window.__lat = { samples: [], first: null, offsetMs };
  const check = (v) =>
    (((v >>> 24) + ((v >>> 16) & 255) + ((v >>> 8) & 255) + (v & 255)) ^ 0xa5) & 255;
  const onFrame = (now, meta) => {
    const lat = window.__lat;
    if (lat.first === null) lat.first = meta.presentationTime;
    if (video.videoWidth === 640) {
      ctx.drawImage(video, 0, 0, 640, 16, 0, 0, 640, 16);
      const px = ctx.getImageData(0, 8, 640, 1).data;
      let value = 0, tail = 0;
      for (let i = 0; i < 40; i++) {
        const at = (i * 16 + 8) * 4;
        const luma = 0.299 * px[at] + 0.587 * px[at + 1] + 0.114 * px[at + 2];
        const bit = luma >= 128 ? 1 : 0;
        if (i < 32) value = ((value << 1) | bit) >>> 0; else tail = (tail << 1) | bit;
      }
      if (tail === check(value) && lat.samples.length < 100000) {
        const shownUs = Math.round((meta.expectedDisplayTime + lat.offsetMs) * 1000);
        const ageUs = ((shownUs - value) % 4294967296 + 4294967296) % 4294967296;
        lat.samples.push(ageUs / 1000);
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""


def offset_ms(page: Any) -> float:
    """CLOCK_MONOTONIC less the page's performance.now(), in ms (read within a round
    trip of each other; the best of five)."""
    best: tuple[float, float] | None = None
    for _ in range(5):
        before = time.monotonic_ns()
        now = float(page.evaluate("performance.now()"))
        after = time.monotonic_ns()
        spread = (after - before) / 1e6
        if best is None or spread < best[0]:
            best = (spread, (before + after) / 2e6 - now)
    assert best is not None
    return best[1]


def watch(context: Any, base: str, mode: str, seconds: float, warmup: float) -> dict[str, Any]:
    """One tab, in front (Chromium slows the frame callbacks of tabs behind it)."""
    page = context.new_page()
    try:
        page.goto(f"{base}/view/clock?mode={mode}")
        page.evaluate(WATCH, offset_ms(page))
        time.sleep(warmup)
        page.evaluate("() => { window.__lat.samples = []; }")
        time.sleep(seconds)
        got: dict[str, Any] = page.evaluate("() => window.__lat")
        got["path"] = page.evaluate("() => window.__player.path")
        started = page.evaluate("() => window.__player.startedAt")
        got["asked"] = got["first"] - started if got["first"] and started else None
        return got
    finally:
        page.close()


def round_of(context: Any, base: str, seconds: float, warmup: float) -> dict[str, Any]:
    """Each path in turn, on the same camera and gateway."""
    row: dict[str, Any] = {}
    for mode in MODES:
        got = watch(context, base, mode, seconds, warmup)
        samples = got["samples"]
        row[f"{mode}_p50_ms"] = _round(percentile(samples, 50))
        row[f"{mode}_p95_ms"] = _round(percentile(samples, 95))
        row[f"{mode}_frames"] = len(samples)
        row[f"{mode}_first_frame_ms"] = _round(got["asked"])
        row[f"{mode}_page_first_frame_ms"] = _round(got["first"])
        row[f"{mode}_path"] = got["path"]
    for mode in ("mse", "hls"):
        if row[f"{mode}_p50_ms"] is not None and row["webrtc_p50_ms"] is not None:
            row[f"{mode}_over_webrtc_ms"] = round(row[f"{mode}_p50_ms"] - row["webrtc_p50_ms"], 1)
    return row


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with camera_and_gateway() as (_, gw, _), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 800, "height": 700})
            for _ in range(args.rounds):
                print(json.dumps(round_of(context, gw.base_url, args.seconds, args.warmup)))
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

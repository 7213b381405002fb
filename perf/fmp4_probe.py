"""Decoding probes for the fMP4 egresses: capture-to-arrival latency over MSE and LL-HLS.

Like ``latency_probe.py`` (WebRTC), each reads the ``/clock`` mount's capture stamps from
the frames it decodes, on a thread of its own, and notes when each frame arrived:

- ``mse:STREAM``: the MSE viewer a browser is, on the signaling socket. A fragment is one
  picture; it arrives with its WebSocket message. Also the time from asking to the first
  keyframe's arrival (``first_frame_ms``), the stream's muxer made for it (cold) when no
  other MSE or HLS viewer watches.
- ``hls:STREAM``: an LL-HLS client as hls.js and Safari are: the newest independent part,
  then each next one asked for by a blocking playlist reload and fetched at once. A part's
  pictures all arrive with the part. A player shows them PART-HOLD-BACK later (it plays
  that far behind the live edge); ``hold_back_ms`` says how far that is.

    python -m perf.fmp4_probe BASE_URL mse:STREAM --warmup W --window T

Prints one JSON line, as the other probes do.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from typing import Any

import aiohttp
import av

from perf.latency_probe import FrameClock
from perf.probe_cli import probe_main
from tests.support import stamp

PART = re.compile(r'#EXT-X-PART:DURATION=[\d.]+,URI="([^"]+)"(,INDEPENDENT=YES)?')
HOLD_BACK = re.compile(r"PART-HOLD-BACK=([\d.]+)")


def boxes(data: bytes) -> list[bytes]:
    """Top-level boxes, whole."""
    out, at = [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if size < 8:
            break
        out.append(data[at : at + size])
        at += size
    return out


def pictures(data: bytes) -> list[bytes]:
    """The video samples (track 1) of fragments, as Annex-B access units: the muxer puts
    one picture in each video fragment, its parameter sets in front of each keyframe."""
    out = []
    top = boxes(data)
    for moof, mdat in zip(top[::2], top[1::2], strict=False):
        at = moof.find(b"tfhd")
        if at < 0 or moof[at + 8 : at + 12] != b"\x00\x00\x00\x01" or mdat[4:8] != b"mdat":
            continue  # an audio fragment
        sample, units, i = mdat[8:], [], 0
        while i + 4 <= len(sample):
            (length,) = struct.unpack(">I", sample[i : i + 4])
            units.append(b"\x00\x00\x00\x01" + sample[i + 4 : i + 4 + length])
            i += 4 + length
        out.append(b"".join(units))
    return out


async def mse(
    base: str, stream: str, clock: FrameClock, start: float, end: float
) -> dict[str, Any]:
    first = None
    ws_url = base.replace("http", "ws", 1) + f"/ws/{stream}"
    asked = time.monotonic()  # a page's first step: open the socket
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_json({"type": "mse"})
        while (now := time.monotonic()) < end:
            try:
                msg = await ws.receive(timeout=end - now)
            except TimeoutError:
                break
            arrived = stamp.now_us()
            if msg.type != aiohttp.WSMsgType.BINARY:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
                continue
            data: bytes = msg.data
            if data[4:8] == b"ftyp":
                continue
            for picture in pictures(data):
                if first is None:
                    first = shown(picture, asked)
                clock.recording = time.monotonic() >= start
                clock.unit("H264", picture, arrived)
    return {"first_frame_ms": first}


def shown(picture: bytes, since: float) -> float | None:
    """Milliseconds from `since` until the first picture is decoded (a player shows it
    then); None if it does not decode alone (not a keyframe)."""
    decoder = av.CodecContext.create("h264", "r")
    try:
        frames = decoder.decode(av.Packet(picture)) + decoder.decode(None)
    except av.FFmpegError:
        return None
    return (time.monotonic() - since) * 1000 if frames else None


async def _text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        response.raise_for_status()
        return await response.text()


def media_playlist(text: str) -> tuple[list[tuple[str, bool]], str | None, int, int]:
    """A media playlist's parts (uri, independent), its init URI and the next part's
    (msn, part) to wait for."""
    msn = part = 0
    init = None
    parts = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":")[1])
        elif line.startswith("#EXT-X-MAP:"):
            init = line.split('URI="')[1].split('"')[0]
        elif match := PART.match(line):
            parts.append((match[1], bool(match[2])))
            part += 1
        elif line and not line.startswith("#"):
            msn, part = msn + 1, 0
    return parts, init, msn, part


async def hls(
    base: str, stream: str, clock: FrameClock, start: float, end: float
) -> dict[str, Any]:
    root = f"{base}/hls/{stream}"
    first = None
    async with aiohttp.ClientSession() as http:
        asked = time.monotonic()
        await _text(http, f"{root}/index.m3u8")
        text = await _text(http, f"{root}/media.m3u8")
        hold_back = float(m[1]) * 1000 if (m := HOLD_BACK.search(text)) else None
        parts, _, msn, part = media_playlist(text)
        starts = [i for i, (_, independent) in enumerate(parts) if independent]
        queue = [uri for uri, _ in parts[starts[-1] :]] if starts else []
        done: set[str] = set()
        while time.monotonic() < end:
            for uri in queue:
                async with http.get(f"{root}/{uri}") as response:
                    data = await response.read()
                arrived = stamp.now_us()
                done.add(uri)
                for picture in pictures(data):
                    if first is None:
                        first = shown(picture, asked)
                    clock.recording = time.monotonic() >= start
                    clock.unit("H264", picture, arrived)
            wait = f"{root}/media.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            parts, _, msn, part = media_playlist(await _text(http, wait))
            queue = [uri for uri, _ in parts if uri not in done]
            if len(done) > 1000:
                done = set(queue)
    return {"first_frame_ms": first, "hold_back_ms": hold_back}


async def run(base: str, stream: str, warmup: float, window: float) -> dict[str, Any]:
    kind, _, stream_id = stream.partition(":")
    clock = FrameClock()
    began = time.monotonic()
    start, end = began + warmup, began + warmup + window
    error = None
    extra: dict[str, Any] = {}
    try:
        reader = mse if kind == "mse" else hls
        extra = await reader(base, stream_id, clock, start, end)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        await asyncio.to_thread(clock.close)
    return {
        "kind": kind,
        "stream": stream_id,
        "error": error,
        "window_s": window,
        "latencies_ms": clock.latencies_ms,
        "arrivals_us": clock.arrivals_us,
        **clock.counts,
        **extra,
    }


if __name__ == "__main__":
    probe_main(run, __doc__)

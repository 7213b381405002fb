"""LL-HLS over HTTP: `/hls/{id}/index.m3u8` and what it leads to, all from memory.

    index.m3u8     the multivariant playlist: media.m3u8 (and for an H.265 stream, its
                   H.264 transcode's: media.m3u8?video=h264)
    media.m3u8     the media playlist: parts, preload hint; blocking reload with
                   `_HLS_msn` and `_HLS_part`
    E-initV.mp4    an init segment;  E-M.mp4  segment M;  E-M.P.mp4  its part P

URIs in playlists are relative and carry the request's `?token=` (a viewer token), so a
player that was given one URL can follow them all. An H.265 stream comes as it is
(`hvc1`); `?video=h264` asks for its H.264 transcode instead (for a player that plays
no H.265; the URIs carry it too). Segments, parts and init segments are
immutable (their names never mean other bytes); playlists live a second, blocking ones
a minute (their query names the moment they wait for).

Each player is counted (a consumer of kind `hls`, holding an on-demand camera open) from
its first request until `hls.idle` seconds after its last; the stream is muxed while any
is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from media_server.api.access import bearer, client_key, require_viewer
from media_server.api.cluster import redirect_to_origin
from media_server.api.context import Gateway, gateway
from media_server.api.errors import ApiError
from media_server.egress.hls import NAME, Variant, Window
from media_server.egress.muxer import Muxer, transcoded
from media_server.ingest.encoder import SharedEncoder
from media_server.streams.consumer import Consumer
from media_server.streams.stream import Stream

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PLAYLIST = "application/vnd.apple.mpegurl"
MP4 = "video/mp4"
#: How long a first request waits for the stream's first segment (a camera opening).
START_TIMEOUT = 15.0
IMMUTABLE = "max-age=31536000, immutable"


@dataclass(slots=True)
class Player:
    consumer: Consumer
    first_seen: float
    last_seen: float
    served: bool = False  # media went to it already (its first counts as first frame)


class Outlet:
    """A stream's HLS: its window on the muxer, and who polls it."""

    def __init__(self, gw: Gateway, stream: Stream, hevc: bool) -> None:
        self.gw = gw
        self.stream = stream
        self.muxer: Muxer = gw.muxers.acquire(stream, hevc)
        self.window = Window(self.muxer, gw.settings.hls)
        self.window.start()
        self.players: dict[str, Player] = {}
        self.closed = False
        self._sweeper = asyncio.get_running_loop().call_later(self._every, self._sweep)

    @property
    def _every(self) -> float:
        return max(0.5, self.gw.settings.hls.idle / 4)

    def player(self, client: str) -> Player | None:
        """The player a request comes from (None: the stream has all it may have)."""
        now = time.monotonic()
        player = self.players.get(client)
        if player is None:
            if len(self.players) >= self.gw.settings.limits.viewers_per_stream:
                return None
            player = Player(self.stream.attach("hls"), now, now)
            if self.muxer.transcoded:
                player.consumer.take_transcode()
            self.players[client] = player
            self.gw.metrics.sessions.labels("hls", "hls").inc()
        player.last_seen = now
        return player

    def _sweep(self) -> None:
        idle = self.gw.settings.hls.idle
        now = time.monotonic()
        for client, player in list(self.players.items()):
            if now - player.last_seen > idle:
                player.consumer.close()
                del self.players[client]
        if not self.players or self.window.ended:
            self.close()
        else:
            self._sweeper = asyncio.get_running_loop().call_later(self._every, self._sweep)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._sweeper.cancel()
        self.window.close()
        self.gw.muxers.release(self.muxer)
        for player in self.players.values():
            player.consumer.close()
        self.players.clear()
        key = (self.stream.id, self.muxer.transcoded)
        if self.gw.hls.get(key) is self:
            del self.gw.hls[key]


def close_all(gw: Gateway) -> None:
    for outlet in list(gw.hls.values()):
        outlet.close()


def _error(status: int, code: str, message: str, retry: bool = False) -> ApiError:
    """An error no cache keeps (one about a stream not ready says when to ask again)."""
    headers = {"Cache-Control": "no-store"} | ({"Retry-After": "1"} if retry else {})
    return ApiError(status, code, message, headers)


async def _outlet(request: web.Request) -> tuple[Outlet, Player, str]:
    """The stream's HLS for this request, its player, and the query its URIs carry."""
    gw = gateway(request)
    stream_id = request.match_info["stream_id"]
    require_viewer(request, stream_id)
    stream = gw.streams.get(stream_id)
    if stream is None:
        raise _error(404, "stream-not-found", f"no stream '{stream_id}'")
    redirect_to_origin(request, stream)
    if not gw.sessions.accepting:
        raise _error(503, "shutting-down", "the gateway is shutting down")
    video = request.query.get("video")
    if video not in (None, "h264"):
        raise _error(400, "invalid-query", "video must be h264 (an H.265 stream's transcode)")
    if stream.info is None:
        await stream.wait_info(START_TIMEOUT)  # which muxer depends on the codec
    hevc = video is None
    key = (stream_id, transcoded(stream, hevc))
    outlet = gw.hls.get(key)
    if outlet is None or outlet.stream is not stream or outlet.window.ended:
        if outlet is not None:
            outlet.close()
        outlet = gw.hls[key] = Outlet(gw, stream, hevc)
    player = outlet.player(client_key(request))
    if player is None:
        limit = gw.settings.limits.viewers_per_stream
        raise _error(503, "stream-full", f"stream has its maximum of {limit} HLS players")
    # The first whole segment: players that know no parts (FFmpeg) need one to start.
    if not await outlet.window.wait(0, None, START_TIMEOUT):
        raise _error(503, "not-ready", f"stream '{stream_id}' has no picture yet", retry=True)
    token = request.query.get("token")
    carried = ([f"video={video}"] if video else []) + (
        [f"token={quote(token, safe='')}"] if token else []
    )
    return outlet, player, "?" + "&".join(carried) if carried else ""


def _cache(request: web.Request, seconds: int | None) -> str:
    """Shared caches may keep what a URL alone grants; not what a header authorized."""
    scope = "private" if bearer(request) else "public"
    return f"{scope}, {IMMUTABLE}" if seconds is None else f"{scope}, max-age={seconds}"


def _send(
    request: web.Request, outlet: Outlet, body: bytes, kind: str, max_age: int | None
) -> web.Response:
    outlet.gw.muxers.count(outlet.stream.id, "hls", len(body))
    response = web.Response(body=body, content_type=kind)
    response.headers["Cache-Control"] = _cache(request, max_age)
    return response


@routes.get("/hls/{stream_id}/index.m3u8")
async def multivariant(request: web.Request) -> web.StreamResponse:
    outlet, _, query = await _outlet(request)
    fps = outlet.stream.view().fps
    others: tuple[Variant, ...] = ()
    if outlet.stream.video_codec == "hevc" and not outlet.muxer.transcoded:
        others = (_transcode_variant(outlet, query, fps),)
    text = outlet.window.multivariant_playlist(query, fps, others)
    return _send(request, outlet, text.encode(), PLAYLIST, 1)


def _transcode_variant(outlet: Outlet, query: str, fps: float | None) -> Variant:
    """An H.265 stream's H.264 transcode as a variant beside its own, for players whose
    MediaSource plays no hvc1: what the shared encode will be, said before it runs (it
    runs only once a player asks for it)."""
    init = outlet.muxer.init
    assert init is not None
    bitrate = outlet.gw.settings.transcode.bitrate
    width, height = init.video.width, init.video.height
    codecs = SharedEncoder.codecs(width, height, fps or 30.0, bitrate)
    if init.audio is not None:
        codecs += f", {init.audio.codecs}"
    uri = "media.m3u8?video=h264" + (f"&{query[1:]}" if query else "")
    return Variant(uri, bitrate * 11 // 10, codecs, width - width % 2, height - height % 2)


def _number(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise ValueError(f"{name} must be a non-negative integer")
    return int(value)


@routes.get("/hls/{stream_id}/media.m3u8")
async def media(request: web.Request) -> web.StreamResponse:
    try:
        msn, part = _number(request, "_HLS_msn"), _number(request, "_HLS_part")
    except ValueError as exc:
        raise _error(400, "invalid-query", str(exc)) from None
    if part is not None and msn is None:
        raise _error(400, "invalid-query", "_HLS_part needs _HLS_msn")
    outlet, _, query = await _outlet(request)
    window = outlet.window
    max_age = 1
    if msn is not None:
        if window.too_far(msn):
            raise _error(400, "too-far-ahead", f"segment {msn} is too far in the future")
        if not await window.wait(msn, part, 3 * window.target_duration):
            raise _error(503, "not-ready", f"segment {msn} did not come in time")
        max_age = 60  # this URL names the moment it waited for
    return _send(request, outlet, window.media_playlist(query), PLAYLIST, max_age)


@routes.get("/hls/{stream_id}/{name}.mp4")
async def media_file(request: web.Request) -> web.StreamResponse:
    match = NAME.match(request.match_info["name"])
    if match is None:
        raise _error(404, "not-found", "no such segment, part or init segment")
    outlet, player, _ = await _outlet(request)
    window = outlet.window
    if match["epoch"] != window.epoch:
        raise _error(404, "gone", "that segment belongs to an earlier run of the stream")
    if match["init"] is not None:
        init = window.init(int(match["init"]))
        if init is None:
            raise _error(404, "not-found", "no such init segment")
        return _send(request, outlet, init.data, MP4, None)
    msn = int(match["msn"])
    part = int(match["part"]) if match["part"] is not None else None
    if window.too_far(msn):
        raise _error(404, "not-found", f"segment {msn} is too far in the future")
    # A part or segment about to be made (a preload hint's) is waited for.
    if not await window.wait(msn, part, 3 * window.target_duration):
        raise _error(404, "not-found", f"segment {msn} is not here")
    segment = window.segment(msn)
    if segment is None or (part is None and not segment.complete):
        raise _error(404, "not-found", f"segment {msn} is gone")
    if part is not None and part >= len(segment.parts):
        raise _error(404, "not-found", f"segment {msn} has no part {part}")
    body = segment.data if part is None else segment.parts[part].data
    if not player.served:
        player.served = True
        seconds = time.monotonic() - player.first_seen
        outlet.gw.metrics.first_media_seconds.labels("hls").observe(seconds)
    return _send(request, outlet, body, MP4, None)

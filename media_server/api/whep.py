"""WHEP (WebRTC-HTTP Egress Protocol): one POST with the offer, DELETE to leave.

As the WHEP draft (and WHIP, RFC 9725, which it follows) says: the answer comes with a
`Location` for the session, an `ETag` for its ICE session and the configured ICE servers
as `Link` headers; PATCH with an
`application/trickle-ice-sdpfrag` adds trickled candidates (204), answers 412 when
`If-Match` names another ICE session and 422 to an ICE restart, which this gateway does
not do (the player offers again instead); DELETE ends the session with 200.
"""

from __future__ import annotations

import hmac
import math
import time
import weakref

from aiohttp import web

from media_server.api.access import client_key, require_viewer
from media_server.api.cluster import redirect_to_origin
from media_server.api.context import gateway
from media_server.api.errors import ApiError
from media_server.api.streams import get_stream
from media_server.config import IceServer
from media_server.tokenbucket import TokenBucket
from media_server.webrtc.session import MAX_SDP_BYTES, SignalingError, ViewerSession

routes = web.RouteTableDef()

TRICKLE = "application/trickle-ice-sdpfrag"
RESTART = "ICE restarts are not supported: offer again for a new session"


def _session(request: web.Request) -> ViewerSession:
    """The WHEP session a PATCH or DELETE names, which only the principal that made it
    may change: the same verified token, or (where viewing needs none) the same client.
    Anyone else is told there is no such session, as for an id that does not exist."""
    stream_id = request.match_info["stream_id"]
    require_viewer(request, stream_id)
    session = gateway(request).sessions.get(request.match_info["session_id"])
    if (
        session is None
        or session.via != "whep"
        or session.stream.id != stream_id
        or not hmac.compare_digest(session.client, client_key(request))
    ):
        raise ApiError(404, "session-not-found", "no such WHEP session")
    return session


@routes.post("/api/v1/streams/{stream_id}/whep")
async def whep_offer(request: web.Request) -> web.Response:
    gw = gateway(request)
    require_viewer(request, request.match_info["stream_id"])  # before saying what exists
    stream = get_stream(request)
    redirect_to_origin(request, stream)
    client = client_key(request)
    gw.offers.check(client)
    if request.content_type != "application/sdp":
        raise ApiError(415, "unsupported-media-type", "send the offer as application/sdp")
    raw = await request.read()  # bounded by the app's client_max_size
    if len(raw) > MAX_SDP_BYTES:
        raise ApiError(413, "payload-too-large", f"the offer is larger than {MAX_SDP_BYTES} bytes")
    try:
        sdp = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid-sdp", "the offer is not UTF-8 text") from None
    started = time.perf_counter()
    try:
        session, answer = await gw.sessions.open(stream, sdp, "whep", client)
    except SignalingError as exc:
        headers = {"Retry-After": "5"} if exc.status in (429, 503) else None
        raise ApiError(exc.status, exc.code, exc.message, headers) from None
    gw.metrics.signaling_seconds.labels("whep").observe(time.perf_counter() - started)
    location = f"/api/v1/streams/{stream.id}/whep/{session.id}"
    response = web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={
            "Location": location,
            "ETag": _etag(session),
            "Accept-Patch": TRICKLE,
            "X-Media-Transport": session.transport,
        },
    )
    for link in ice_links(gw.settings.webrtc.ice_servers):
        response.headers.add("Link", link)
    return response


def ice_links(servers: list[IceServer]) -> list[str]:
    """The configured STUN/TURN servers as the draft's `Link: <url>; rel="ice-server"`."""
    links = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                user = server.username.replace('"', "")
                secret = server.credential.replace('"', "")
                link += f'; username="{user}"; credential="{secret}"; credential-type="password"'
            links.append(link)
    return links


def _etag(session: ViewerSession) -> str:
    return f'"{session.id}"'


def _ice_credentials(sdp: str) -> tuple[str | None, str | None]:
    ufrag = pwd = None
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:") and ufrag is None:
            ufrag = line.split(":", 1)[1].strip()
        elif line.startswith("a=ice-pwd:") and pwd is None:
            pwd = line.split(":", 1)[1].strip()
    return ufrag, pwd


#: Each session's PATCH requests, at the rate a signaling socket may send messages.
_patches: weakref.WeakKeyDictionary[ViewerSession, TokenBucket] = weakref.WeakKeyDictionary()


@routes.patch("/api/v1/streams/{stream_id}/whep/{session_id}")
async def whep_trickle(request: web.Request) -> web.Response:
    session = _session(request)
    limits = gateway(request).settings.limits
    bucket = _patches.setdefault(
        session, TokenBucket(limits.ws_messages_per_second, limits.ws_messages_burst)
    )
    wait = bucket.take()
    if wait:
        raise ApiError(
            429,
            "rate-limited",
            f"too many PATCH requests; wait {max(wait, 0.1):.1f} s",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if request.content_type != TRICKLE:
        raise ApiError(415, "unsupported-media-type", f"send {TRICKLE}")
    match = request.headers.get("If-Match")
    if match == "*":
        raise ApiError(422, "ice-restart-unsupported", RESTART)
    if match is not None and match != _etag(session):
        raise ApiError(412, "etag-mismatch", "If-Match names another ICE session")
    fragment = (await request.read()).decode("utf-8", "replace")
    ufrag, pwd = _ice_credentials(fragment)
    known = _ice_credentials(session.remote_sdp)
    if (ufrag and ufrag != known[0]) or (pwd and pwd != known[1]):
        raise ApiError(422, "ice-restart-unsupported", RESTART)
    mid = "0"
    try:
        for line in fragment.splitlines():
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=candidate:"):
                await session.add_candidate({"candidate": line[2:].strip(), "sdpMid": mid})
            elif line.startswith("a=end-of-candidates"):
                await session.add_candidate(None)
    except SignalingError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    return web.Response(status=204)


@routes.delete("/api/v1/streams/{stream_id}/whep/{session_id}")
async def whep_delete(request: web.Request) -> web.Response:
    session = _session(request)
    await gateway(request).sessions.close(session, "WHEP DELETE")
    return web.Response(status=200)

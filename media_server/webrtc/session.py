"""Viewer sessions: negotiate an aiortc peer from an offer, track it, release it once.

Codec preferences are set on the transceiver before the offer is applied, because aiortc
picks the codec during `setRemoteDescription` and a browser lists VP8 first: an H.264
passthrough track would otherwise go out labelled VP8 and nothing would decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription, candidate_from_sdp

from media_server.aiortc_internals import (
    H265_MIME,
    answer_lightly,
    gather_loopback,
    sent_counts,
    settle_codec,
    teach_h265,
)
from media_server.codecs import h265
from media_server.config import Settings
from media_server.engine.engine import Engine
from media_server.engine.sender import EngineSender
from media_server.ingest import SourceGuard
from media_server.streams.delivery import canary_turn, delivery
from media_server.streams.fanout import Wants
from media_server.streams.stream import Stream
from media_server.tasks import Tasks
from media_server.webrtc.candidates import MAX_CANDIDATES, refusal, screen_offer
from media_server.webrtc.ice import rtc_configuration
from media_server.webrtc.track import HubTrack

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024
MAX_CANDIDATE_CHARS = 1024
#: Media sections an offer may have: a viewer needs video and audio, a browser may add a
#: data channel. Each section costs aiortc a transceiver and transports.
MAX_MEDIA_SECTIONS = 4


#: What each media transport's viewers take from the hub ("any" follows the stream).
WANTS: dict[str, Wants] = {"transcode-per-viewer": "frames", "transcode-shared": "units"}


class SignalingError(Exception):
    """A negotiation failure the viewer is told about (HTTP status for REST/WHEP)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _preferred_codecs(transport: str, hevc: bool = False) -> list[RTCRtpCodecCapability]:
    """H.265 for a viewer that takes an H.265 stream as it is; H.264 when the stream sends
    H.264 (passthrough, shared transcode, or not yet known); VP8 first when aiortc
    encodes per viewer (the cheapest codec to encode)."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    if hevc:
        return [c for c in caps if c.mimeType.lower() == H265_MIME.lower()]
    h264 = [c for c in caps if c.mimeType.lower() == "video/h264"]
    if transport == "transcode-per-viewer":
        vp8 = [c for c in caps if c.mimeType.lower() == "video/vp8"]
        return vp8 + h264
    return h264


#: How long an offer waits for a starting stream to tell what it is (seconds).
INFO_WAIT = 5.0


def _receiving(offer: SessionDescription, kind: str) -> list[Any]:
    """The offer's sections of `kind` that take media from us (open port, not sendonly)."""
    return [
        m
        for m in offer.media
        if m.kind == kind and m.port and m.direction in (None, "recvonly", "sendrecv")
    ]


def _audio_codec(offer: SessionDescription, stream: Stream) -> RTCRtpCodecCapability | None:
    """The audio codec this viewer gets, or None: the stream has no audio for viewers, the
    offer does not receive audio, or it does not take the codec (then: video only)."""
    audio = stream.info.audio if stream.info else None
    wanted = audio.webrtc_codec if audio else None
    if wanted is None:
        return None
    name, rate = wanted
    mime = f"audio/{name}".lower()
    for media in _receiving(offer, "audio"):
        if any(c.mimeType.lower() == mime and c.clockRate == rate for c in media.rtp.codecs):
            caps = RTCRtpSender.getCapabilities("audio").codecs
            return next((c for c in caps if c.mimeType.lower() == mime), None)
    return None


def _hevc_choice(offer: SessionDescription, stream: Stream) -> tuple[int, dict[str, str]] | None:
    """For an H.265 stream passed through: the offer's H.265 payload type that decodes it,
    and the `fmtp` the answer states (the stream's profile, tier and level); None when the
    stream is not such, or the viewer does not decode it (it takes the H.264 transcode)."""
    if stream.video_codec != "hevc" or stream.info is None:
        return None
    sps = h265.find_sps(stream.info.extradata)
    if sps is None:
        return None
    mime = H265_MIME.lower()
    for media in _receiving(offer, "video")[:1]:
        for codec in media.rtp.codecs:
            if codec.mimeType.lower() == mime and sps.decodable_by(codec.parameters):
                return int(codec.payloadType), sps.sdp_parameters
    return None


def check_offer(sdp: str) -> SessionDescription:
    """Refuse what cannot become a viewer before a peer is built for it."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError("invalid-sdp", "the offer has no SDP")
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise SignalingError("invalid-sdp", f"the offer is larger than {MAX_SDP_BYTES} bytes", 413)
    if not sdp.lstrip().startswith("v=0"):
        raise SignalingError("invalid-sdp", "the offer is not an SDP session description")
    sections = sdp.count("\nm=")  # counted before parsing: refused before any work
    if sections > MAX_MEDIA_SECTIONS:
        raise SignalingError(
            "invalid-sdp",
            f"the offer has {sections} media sections; at most {MAX_MEDIA_SECTIONS} are taken",
        )
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception:
        raise SignalingError("invalid-sdp", "the offer is not valid SDP") from None
    videos = [m for m in parsed.media if m.kind == "video"]
    if not videos:
        raise SignalingError("no-video", "the offer has no video section to receive the stream")
    receiving = _receiving(parsed, "video")
    if not receiving:
        raise SignalingError("no-video", "the offer's video section does not receive")
    video = receiving[0]
    # aiortc would answer without these and then fail inside a task: refuse them here.
    if not (video.ice and video.ice.usernameFragment and video.ice.password):
        raise SignalingError("invalid-sdp", "the offer's video section has no ICE credentials")
    if not (video.dtls and video.dtls.fingerprints):
        raise SignalingError("invalid-sdp", "the offer has no DTLS fingerprint")
    return parsed


class ViewerSession:
    def __init__(
        self,
        stream: Stream,
        pc: RTCPeerConnection,
        via: str,
        client: str,
        transport: str,
        guard: SourceGuard,
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self._guard = guard
        #: The viewer's candidates taken so far (from its offer, then trickled).
        self.candidates = 0
        self.consumer = stream.attach("viewer")  # holds the stream while the session lives
        self.transport = transport
        self.client = client
        self.stream = stream
        self.pc = pc
        #: aiortc's sender's video track; None while not built, or when the engine sends.
        self.track: HubTrack | None = None
        self.via = via
        self.connected_at: float | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.expiry: asyncio.TimerHandle | None = None
        self.opened_at = time.monotonic()
        self.audio_track: HubTrack | None = None
        #: The fan-out engine in place of aiortc's video sender (transport "engine").
        self.engine: EngineSender | None = None
        #: An H.265 stream's viewer that takes it as it is: the offer's payload type and
        #: the answer's `fmtp` (None: H.264, the stream's or its transcode).
        self.hevc: tuple[int, dict[str, str]] | None = None
        self.video: RTCRtpTransceiver | None = None
        #: Stops watching the stream's codec (set once negotiated).
        self.unwatch: Callable[[], None] = lambda: None

    @property
    def label(self) -> str:
        """The id as logs show it: enough to follow a session, not to address it (a WHEP
        session's id is in its URL)."""
        return self.id[:6] + "…"

    def sent(self) -> tuple[int, int]:
        """RTP packets and payload bytes this viewer's senders have sent (aiortc keeps the
        counts for its RTCP sender reports; they are read, never reset)."""
        packets, octets = self.engine.sent() if self.engine is not None else (0, 0)
        for sender in self.pc.getSenders():
            sent = sent_counts(sender)
            packets += sent[0]
            octets += sent[1]
        return packets, octets

    @property
    def remote_sdp(self) -> str:
        """The viewer's offer as applied (its ICE credentials, for WHEP's PATCH)."""
        remote = self.pc.remoteDescription
        return remote.sdp if remote is not None else ""

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Apply a trickled RTCIceCandidateInit; None or an empty candidate ends the list."""
        if candidate is None or candidate.get("candidate") == "":
            await self.pc.addIceCandidate(None)
            return
        text = candidate.get("candidate")
        mid = candidate.get("sdpMid")
        index = candidate.get("sdpMLineIndex")
        if not isinstance(text, str) or len(text) > MAX_CANDIDATE_CHARS:
            raise SignalingError("invalid-candidate", "candidate must be a short string")
        if mid is not None and not isinstance(mid, str):
            raise SignalingError("invalid-candidate", "sdpMid must be a string or null")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise SignalingError("invalid-candidate", "sdpMLineIndex must be an integer or null")
        if mid is None and index is None:
            raise SignalingError("invalid-candidate", "candidate needs sdpMid or sdpMLineIndex")
        try:
            # aiortc's parser asserts on some malformed lines: anything it raises is bad input.
            parsed = candidate_from_sdp(text.split(":", 1)[1] if ":" in text else text)
        except Exception:
            raise SignalingError("invalid-candidate", "not a valid ICE candidate line") from None
        why = refusal(parsed.ip, self._guard)
        if why is not None:
            raise SignalingError("candidate-refused", why)
        if self.candidates >= MAX_CANDIDATES:
            raise SignalingError(
                "too-many-candidates", f"a session takes at most {MAX_CANDIDATES} candidates"
            )
        self.candidates += 1
        parsed.sdpMid = mid
        parsed.sdpMLineIndex = index
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise SignalingError("invalid-candidate", f"candidate refused: {exc}") from None


def _count_egress(totals: dict[tuple[str, str], tuple[int, int]], session: ViewerSession) -> None:
    """Add what `session` has sent to `totals`, keyed by (stream, media transport)."""
    key = (session.stream.id, session.transport)
    packets, octets = session.sent()
    before = totals.get(key, (0, 0))
    totals[key] = (before[0] + packets, before[1] + octets)


class SessionManager:
    """All viewer sessions, admitted within the configured limits."""

    def __init__(
        self, settings: Settings, guard: SourceGuard, engine: Engine | None = None
    ) -> None:
        gather_loopback()
        answer_lightly()
        teach_h265()
        self._gateway = settings
        self._guard = guard
        self._settings = settings.webrtc
        self._limits = settings.limits
        #: Viewers admitted so far per stream, which the canary's share is counted in.
        self._admitted: Counter[str] = Counter()
        #: Serves the viewers whose transport is "engine"; None: nobody is given it.
        self.engine = engine
        self._sessions: dict[str, ViewerSession] = {}
        self._closing = Tasks()  # closes asked for by callbacks that cannot wait
        self.accepting = True
        self.on_connected: list[Callable[[ViewerSession], None]] = []
        #: Called with a session and its time from offer to first media handed to aiortc.
        self.on_first_media: list[Callable[[ViewerSession, float], None]] = []
        self._ended_egress: dict[tuple[str, str], tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def egress(self, registered: set[str]) -> dict[tuple[str, str], tuple[int, int]]:
        """Packets and bytes sent, by (stream, media transport): ended sessions included,
        so the figures only grow (Prometheus counters). Streams no longer `registered`
        are forgotten (their series end with them), which keeps this bounded."""
        for key in [k for k in self._ended_egress if k[0] not in registered]:
            del self._ended_egress[key]
        totals = dict(self._ended_egress)
        for session in self._sessions.values():
            _count_egress(totals, session)
        return totals

    def by_transport(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for session in self._sessions.values():
            counts[session.transport] = counts.get(session.transport, 0) + 1
        return counts

    def get(self, session_id: str) -> ViewerSession | None:
        return self._sessions.get(session_id)

    def for_stream(self, stream_id: str) -> list[ViewerSession]:
        return [s for s in self._sessions.values() if s.stream.id == stream_id]

    async def open(
        self, stream: Stream, offer_sdp: str, via: str, client: str = "-"
    ) -> tuple[ViewerSession, str]:
        """Answer an offer for `stream`; the answer carries all our candidates."""
        self._admit(stream, client)
        offer = check_offer(offer_sdp)
        offer_sdp, candidates = screen_offer(offer_sdp, self._guard)
        if stream.effective_mode is None:
            # How this viewer is served (the engine or aiortc; the camera's H.265 or the
            # H.264 transcode) depends on what the stream is.
            await stream.wait_info(INFO_WAIT)
        canary = canary_turn(self._gateway, self._admitted[stream.id])
        self._admitted[stream.id] += 1
        mode = stream.effective_mode or stream.registration.mode
        transport = delivery(self._gateway, mode, canary)
        hevc = _hevc_choice(offer, stream)
        transcoded = stream.video_codec == "hevc" and hevc is None
        if transcoded:
            transport = "transcode-shared"  # the H.265 stream's one H.264 transcode
        if transport == "engine" and self.engine is None:
            transport = "passthrough"
        pc = RTCPeerConnection(rtc_configuration(self._settings))
        session = ViewerSession(stream, pc, via, client, transport, self._guard)
        session.candidates = candidates
        session.hevc = hevc
        if transcoded:
            session.consumer.take_transcode()
        self._sessions[session.id] = session
        try:
            self._add_video(session)
            await self._add_audio(session, offer)
            await self._answer(session, offer_sdp)
        except BaseException:
            await self.close(session, "negotiation failed")
            raise
        self._follow(session)
        self._watch_codec(session)
        log.info(
            "viewer %s of stream %s negotiated via %s",
            session.label,
            stream.id,
            via,
            extra={"stream_id": stream.id},
        )
        return session, pc.localDescription.sdp

    def _admit(self, stream: Stream, client: str) -> None:
        """Refuse a viewer past any limit, before anything is built for it."""
        if not self.accepting:
            raise SignalingError("shutting-down", "the gateway is shutting down", 503)
        if len(self._sessions) >= self._limits.viewers:
            raise SignalingError(
                "node-full", f"the gateway serves at most {self._limits.viewers} viewers", 503
            )
        if len(self.for_stream(stream.id)) >= self._limits.viewers_per_stream:
            limit = self._limits.viewers_per_stream
            raise SignalingError("stream-full", f"stream has its maximum of {limit} viewers", 503)
        held = sum(1 for s in self._sessions.values() if s.client == client)
        if held >= self._limits.sessions_per_client:
            raise SignalingError(
                "too-many-sessions",
                f"a client may hold {self._limits.sessions_per_client} viewer sessions",
                429,
            )

    def _watch_codec(self, session: ViewerSession) -> None:
        """A viewer negotiated the stream's codec (or its transcode): when that changes,
        it is closed, and its player negotiates again."""
        stream = session.stream

        def changed() -> None:
            self._close_soon(session, "the stream's video codec changed")

        stream.codec_watchers.add(changed)
        session.unwatch = lambda: stream.codec_watchers.discard(changed)

    def _first_media(self, session: ViewerSession) -> Callable[[], None]:
        def told() -> None:
            for callback in self.on_first_media:
                callback(session, time.monotonic() - session.opened_at)

        return told

    def _add_video(self, session: ViewerSession) -> None:
        """The video sender: aiortc's, fed by the hub track, or the engine in its place."""
        pc = session.pc
        if session.transport != "engine":
            track = HubTrack(session.consumer, WANTS.get(session.transport, "any"))
            track.on_first = self._first_media(session)
            session.track = track
            transceiver = pc.addTransceiver(track, direction="sendonly")
            track.sender = transceiver.sender
        else:
            assert self.engine is not None
            transceiver = pc.addTransceiver("video", direction="sendonly")
            session.engine = EngineSender(
                self.engine,
                transceiver.sender,
                session.stream.id,
                self._first_media(session),
                lambda reason: self._close_soon(session, reason),
            )
        session.video = transceiver
        transceiver.setCodecPreferences(
            _preferred_codecs(session.transport, session.hevc is not None)
        )

    async def _add_audio(self, session: ViewerSession, offer: SessionDescription) -> None:
        """The audio sender, when the stream has sound in a codec the offer takes."""
        stream = session.stream
        if stream.registration.audio and stream.info is None and _receiving(offer, "audio"):
            # A starting stream (an on-demand one at its first viewer above all): wait
            # to learn whether it has sound, or this viewer would never get any.
            await stream.wait_info(INFO_WAIT)
            self._still_open(session)
        audio_codec = _audio_codec(offer, stream)
        if audio_codec is not None:
            session.audio_track = HubTrack(session.consumer, "units", kind="audio")
            listening = session.pc.addTransceiver(session.audio_track, direction="sendonly")
            session.audio_track.sender = listening.sender
            listening.setCodecPreferences([audio_codec])

    async def _answer(self, session: ViewerSession, offer_sdp: str) -> None:
        pc = session.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            self._still_open(session)
            if session.hevc is not None and session.video is not None:
                settle_codec(session.video, *session.hevc)
            await pc.setLocalDescription(await pc.createAnswer())
            self._still_open(session)
        except SignalingError:
            raise
        except Exception as exc:
            self._still_open(session)  # a peer closed under us is not the offer's fault
            raise self._offer_error(exc) from None

    def _follow(self, session: ViewerSession) -> None:
        """Count the viewer once connected, close it when its peer fails or never comes."""
        pc = session.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and session.connected_at is None:
                session.connected_at = time.monotonic()
                for callback in self.on_connected:
                    callback(session)
            elif state in ("failed", "closed"):
                await self.close(session, f"peer connection {state}")

        session.expiry = asyncio.get_running_loop().call_later(
            self._settings.connect_timeout, self._expire_unconnected, session
        )

    @staticmethod
    def _still_open(session: ViewerSession) -> None:
        if session.closed.is_set():
            raise SignalingError(
                "stream-not-found", "the stream was removed during negotiation", 404
            )

    @staticmethod
    def _offer_error(exc: Exception) -> SignalingError:
        text = str(exc)
        if "codec" in text.lower() or "send parameters" in text.lower():
            return SignalingError(
                "codec-unsupported", "the offer has no video codec this stream can send (H.264)"
            )
        if not text or "StopIteration" in text:
            text = "its media sections are malformed"
        return SignalingError("invalid-sdp", f"the offer could not be applied: {text[:200]}")

    def _expire_unconnected(self, session: ViewerSession) -> None:
        if session.connected_at is None and not session.closed.is_set():
            log.info("viewer %s never connected; releasing it", session.label)
            self._close_soon(session, "never connected")

    def _close_soon(self, session: ViewerSession, reason: str) -> None:
        """Close from a callback that cannot wait for it."""
        if session.closed.is_set():
            return
        self._closing.spawn(self.close(session, reason))

    async def close(self, session: ViewerSession, reason: str = "closed") -> None:
        """Release everything a viewer held; safe to call more than once."""
        if session.closed.is_set():
            return
        session.close_reason = reason
        session.closed.set()
        if session.expiry is not None:
            session.expiry.cancel()  # the timer would keep the whole peer alive until it fires
            session.expiry = None
        self._sessions.pop(session.id, None)
        session.unwatch()
        _count_egress(self._ended_egress, session)
        session.consumer.close()
        if session.track is not None:
            session.track.stop()
        if session.audio_track is not None:
            session.audio_track.stop()
        await _close_peer(session.pc)
        stream_id = session.stream.id
        log.info(
            "viewer %s of stream %s closed: %s",
            session.label,
            stream_id,
            reason,
            extra={"stream_id": stream_id},
        )

    async def close_stream(self, stream_id: str) -> None:
        self._admitted.pop(stream_id, None)
        await asyncio.gather(*(self.close(s, "stream removed") for s in self.for_stream(stream_id)))

    async def close_all(self) -> None:
        self.accepting = False
        sessions = list(self._sessions.values())
        await asyncio.gather(*(self.close(s, "gateway stopping") for s in sessions))


async def _close_peer(pc: RTCPeerConnection) -> None:
    """Close a peer, even one aiortc cannot close itself.

    A remote description that failed half way can leave a transceiver without a
    transport, and aiortc's close() then raises before stopping the other transports
    (whose sockets would stay open). Stop what exists, one by one.
    """
    try:
        await pc.close()
        return
    except Exception:
        log.debug("aiortc could not close a half-negotiated peer; stopping its parts")
    for transceiver in pc.getTransceivers():
        with contextlib.suppress(Exception):
            await transceiver.stop()
        dtls = transceiver.receiver.transport
        if dtls is not None:
            with contextlib.suppress(Exception):
                await dtls.stop()
            with contextlib.suppress(Exception):
                await dtls.transport.stop()
    pc.remove_all_listeners()

"""A camera read by the gateway's own RTSP client (`ingest.client: native`).

FFmpeg's H.264 parser holds each access unit until the next one begins: a frame of delay.
Here an access unit leaves on the packet that carries its marker bit (rtp/assembler.py).
Video is H.264 or H.265 (decoded for viewers until the H.265 issue); audio Opus, G.711
or AAC (`mpeg4-generic`), placed on the video's clock
by the camera's RTCP sender reports (by arrival until both tracks have had one). RTP
comes interleaved on the RTSP connection or over UDP, reordered within a small window
(rtp_transport.py); the RTSP conversation is rtsp_session.py's (auth, checked redirects).
Anything else raises UnsupportedSource, so `auto` hands the camera to FFmpeg's client.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from fractions import Fraction

from media_server.codecs import h264, h265
from media_server.codecs.h264 import START_CODE
from media_server.ingest.audio import audio_mode
from media_server.ingest.guard import SourceGuard
from media_server.ingest.reactor import Reactor
from media_server.ingest.rtp_transport import Interleaved, PortPairs, RtpTransport, Udp
from media_server.ingest.rtsp_session import RtspSession
from media_server.ingest.sdp import Media, parse
from media_server.ingest.source import PermanentSourceError, SourceError, UnsupportedSource
from media_server.model.media import AudioInfo, SourceInfo, SourcePacket
from media_server.model.registration import RtspTransport
from media_server.rtp.assembler import Assembler
from media_server.rtp.audio import AUDIO_CODECS, AudioDepacketizer, audio_depacketizer
from media_server.rtp.clock import TrackClock
from media_server.rtp.packet import MalformedPacket, RtpPacket
from media_server.rtp.payload import VideoCodec, sdp_parameter_sets
from media_server.rtp.reorder import ReorderWindow
from media_server.rtp.rtcp import ReceptionStats, receiver_report, sender_reports

#: The video codecs this client takes; anything else is left to the PyAV client.
SUPPORTED = ("h264", "h265")
#: Seconds between our receiver reports to the camera (RFC 3550's 5 s minimum).
REPORT_INTERVAL = 5.0


@dataclass
class _Track:
    """One set-up track: where its RTP and RTCP arrive, its clock and what we received."""

    media: Media
    rtp: int
    rtcp: int
    clock: TrackClock
    reorder: ReorderWindow | None  # over UDP
    stats: ReceptionStats | None = None  # of the source heard now (its SSRC)
    last_seq: int | None = None

    def received(self, packet: RtpPacket, now: float) -> list[RtpPacket]:
        """Count `packet` as it arrives; what may leave, in order."""
        if self.stats is None or self.stats.ssrc != packet.ssrc:
            self.stats = ReceptionStats(packet.ssrc, self.media.clock_rate)
            self.last_seq = None
        self.stats.packet(packet, now)
        return self.reorder.push(packet, now) if self.reorder is not None else [packet]

    def follows(self, packet: RtpPacket) -> bool:
        """Whether `packet` (in order) comes right after the last: nothing lost between."""
        whole = self.last_seq is None or packet.sequence == (self.last_seq + 1) & 0xFFFF
        self.last_seq = packet.sequence
        return whole


class NativeRtspSource:
    def __init__(
        self,
        url: str,
        open_timeout: float,
        read_timeout: float,
        guard: SourceGuard,
        *,
        transport: RtspTransport = "tcp",
        audio: bool = True,
        ports: PortPairs | None = None,
        reactor: Reactor | None = None,
    ) -> None:
        self._url = url
        self._transport = transport
        self._ports = ports
        self._want_audio = audio
        self._timeouts = (open_timeout, read_timeout)
        self._guard = guard
        self._session: RtspSession | None = None
        self._carrier: RtpTransport | None = None
        #: Each set-up track by the channel its RTP arrives on, and by its RTCP's.
        self._rtp: dict[int, _Track] = {}
        self._rtcp: dict[int, _Track] = {}
        self._video: _Track | None = None
        self._audio: _Track | None = None
        self._assembler: Assembler | None = None
        self._audio_frames: AudioDepacketizer | None = None
        self._out: list[SourcePacket] = []
        self._video_base = Fraction(1, 90_000)
        self._video_seen: tuple[int, float] | None = None  # (unwrapped ts, arrival)
        self._audio_offset: float | None = None  # arrival alignment, in video ticks
        self._ssrc = int.from_bytes(os.urandom(4), "big")
        self._alive_at = 0.0
        self._reported_at = 0.0
        self._media_at = 0.0
        self._polled = False  # read by a reactor: nothing may block
        self._reactor = reactor  # the shared thread that reads it, if it is read that way

    @property
    def channel(self) -> int:
        """The interleaved channel video RTP arrives on (the camera's choice)."""
        return self._video.rtp if self._video else 0

    # -- opening -------------------------------------------------------------------------
    def open(self) -> SourceInfo:
        session = self._session = RtspSession(self._url, self._guard, self._timeouts[0])
        session.connect()
        if self._transport == "udp":
            if self._ports is None:
                raise PermanentSourceError("RTP over UDP needs ports (ingest.udp_ports)")
            self._carrier = Udp(session, self._ports)
        else:
            self._carrier = Interleaved(session)
        session.request("OPTIONS")
        described = session.request("DESCRIBE", headers={"Accept": "application/sdp"})
        self._expect(described.status, "DESCRIBE")
        base = (
            described.headers.get("content-base")
            or described.headers.get("content-location")
            or session.plain_url
        )
        description = parse(described.body.decode("utf-8", "replace"), base)
        session.aggregate = description.control  # where PLAY and what follows go
        media = description.media
        video, audio = self._choose(media)
        self._video = self._setup(session, video, 0)
        if audio is not None:
            self._audio = self._setup(session, audio, 1)
            self._audio_frames = audio_depacketizer(audio.codec, audio.fmtp)
        played = session.request("PLAY", headers={"Range": "npt=0.000-"})
        self._expect(played.status, "PLAY")
        session.set_timeout(self._timeouts[1])
        self._alive_at = self._reported_at = self._media_at = time.monotonic()
        self._video_base = Fraction(1, video.clock_rate)
        codec: VideoCodec = "h265" if video.codec == "h265" else "h264"
        params = sdp_parameter_sets(codec, video.fmtp)
        self._assembler = Assembler(codec, params)
        extradata = b"".join(START_CODE + unit for unit in params)
        heard = self._audio_info(audio) if audio is not None else self._unwanted(media)
        return replace(self._video_info(codec, extradata), audio=heard)

    @staticmethod
    def _video_info(codec: VideoCodec, extradata: bytes) -> SourceInfo:
        """What the SDP's parameter sets say; the worker learns the rest from keyframes."""
        if codec == "h265":
            hevc = h265.find_sps(extradata)
            return SourceInfo(
                codec="hevc",  # FFmpeg's name, as the PyAV client reports it
                width=hevc.width if hevc else None,
                height=hevc.height if hevc else None,
                fps=None,
                profile=hevc.profile_name if hevc else None,
                extradata=extradata,
                browser_safe=h265.browser_safe(hevc),
                client="native",
            )
        sps = h264.find_sps(extradata)
        return SourceInfo(
            codec="h264",
            width=sps.width if sps else None,
            height=sps.height if sps else None,
            fps=sps.fps if sps else None,
            profile=sps.profile_name if sps else None,
            extradata=extradata,
            browser_safe=h264.browser_safe(sps),
            client="native",
        )

    def _choose(self, media: list[Media]) -> tuple[Media, Media | None]:
        """The video track to read and the audio track, if any is wanted; raise for a
        camera this client cannot take."""
        videos = [m for m in media if m.kind == "video"]
        if not videos:
            kinds = ", ".join(sorted({m.kind for m in media})) or "nothing"
            raise PermanentSourceError(f"source has no video track (it offers {kinds})")
        video = next((m for m in videos if m.codec in SUPPORTED), None)
        if video is None:
            raise UnsupportedSource(
                "the native RTSP client takes H.264 and H.265 video, the camera sends "
                f"{videos[0].codec}"
            )
        audios = [m for m in media if m.kind == "audio"] if self._want_audio else []
        audio = next((m for m in audios if audio_depacketizer(m.codec, m.fmtp)), None)
        if audios and audio is None:
            raise UnsupportedSource(
                f"the native RTSP client takes Opus, G.711 or AAC (mpeg4-generic) audio, the "
                f'camera sends {audios[0].codec} ("audio": false takes its video alone)'
            )
        return video, audio

    def _setup(self, session: RtspSession, media: Media, index: int) -> _Track:
        carrier = self._carrier
        assert carrier is not None
        transport = carrier.transport_header(index)
        reply = session.request("SETUP", media.control, {"Transport": transport})
        self._expect(reply.status, "SETUP")
        rtp, rtcp = carrier.configured(index, reply.headers.get("transport", ""))
        reorder = None if carrier.ordered else ReorderWindow()
        track = _Track(media, rtp, rtcp, TrackClock(media.clock_rate), reorder)
        self._rtp[rtp], self._rtcp[rtcp] = track, track
        return track

    def _unwanted(self, media: list[Media]) -> AudioInfo | None:
        """The camera's sound when the registration wants none (`"audio": false`): shown
        as off, as FFmpeg's client shows it, and never set up."""
        audios = [m for m in media if m.kind == "audio"] if not self._want_audio else []
        if not audios:
            return None
        first = audios[0]
        codec = AUDIO_CODECS.get(first.codec, first.codec)
        return AudioInfo(codec, first.clock_rate, first.channels, "off")

    def _audio_info(self, audio: Media) -> AudioInfo:
        codec = AUDIO_CODECS[audio.codec]
        config = getattr(self._audio_frames, "config", b"")
        return AudioInfo(
            codec, audio.clock_rate, audio.channels, audio_mode(codec, True), extradata=config
        )

    def _expect(self, status: int, method: str) -> None:
        if status == 200:
            return
        if status == 401:
            raise SourceError(f"the camera refused the credentials ({method}: 401)")
        raise SourceError(f"the camera answered {method} with {status}")

    # -- reading: blocking, on a thread of its own -------------------------------------
    def read(self) -> SourcePacket | None:
        session, carrier = self._session, self._carrier
        assert session is not None and carrier is not None, "open() first"
        while not self._out:
            self._keep_alive(session, time.monotonic())
            got = carrier.receive(0.005 if self._reordering() else min(1.0, self._timeouts[1]))
            now = time.monotonic()
            if got is None:
                self._quiet(now)
                continue
            self._media_at = now
            self._arrived(*got, now)
        return self._out.pop(0)

    # -- reading: without blocking, one thread for every session (ingest/reactor.py) ----
    def polled(self) -> NativeRtspSource | None:
        return self if self._reactor is not None else None

    @property
    def reactor(self) -> Reactor:
        assert self._reactor is not None
        return self._reactor

    def sockets(self) -> list[socket.socket]:
        assert self._carrier is not None, "open() first"
        self._polled = True
        return self._carrier.sockets()

    def poll(self, ready: socket.socket | None, now: float) -> list[SourcePacket]:
        session, carrier = self._session, self._carrier
        assert session is not None and carrier is not None, "open() first"
        if ready is not None:
            for channel, data in carrier.take(ready):
                self._media_at = now
                self._arrived(channel, data, now)
        else:
            self._quiet(now)
        self._keep_alive(session, now)
        out, self._out = self._out, []
        return out

    def deadline(self) -> float:
        assert self._session is not None, "open() first"
        due = min(
            self._media_at + self._timeouts[1],
            self._alive_at + self._session.session_timeout / 2,
            self._reported_at + REPORT_INTERVAL,
        )
        return min(due, time.monotonic() + 0.005) if self._reordering() else due

    def _reordering(self) -> bool:
        """Whether a reorder window holds packets back, waiting for a gap to fill."""
        return any(t.reorder.waiting for t in self._rtp.values() if t.reorder)

    def _quiet(self, now: float) -> None:
        """Nothing came: let out what the reorder windows held too long; a camera
        silent for the read timeout has stalled."""
        for track in self._rtp.values():
            if track.reorder is not None:
                self._ordered(track, track.reorder.expire(now), now)
        if now - self._media_at >= self._timeouts[1]:
            raise SourceError("the camera sent nothing in time")

    def _arrived(self, channel: int, data: bytes, now: float) -> None:
        track = self._rtp.get(channel)
        if track is not None:
            try:
                packet = RtpPacket.parse(data)
            except MalformedPacket:
                return
            if packet.payload_type == track.media.payload_type:
                self._ordered(track, track.received(packet, now), now)
            return
        track = self._rtcp.get(channel)
        stats = track.stats if track is not None else None
        if track is None or stats is None:
            return  # a track not set up, or RTCP before its RTP
        for report in sender_reports(data):
            if report.ssrc == stats.ssrc:
                track.clock.report(report)
                stats.sender_report(report, now)

    def _ordered(self, track: _Track, packets: list[RtpPacket], now: float) -> None:
        for packet in packets:
            whole = track.follows(packet)
            if track is self._video:
                self._video_packet(packet, now)
            else:
                self._audio_packet(packet, whole)

    def _video_packet(self, packet: RtpPacket, now: float) -> None:
        assert self._assembler is not None and self._video is not None
        clock = self._video.clock
        for unit in self._assembler.push(packet):
            pts = clock.unwrap(unit.timestamp)
            self._video_seen = (pts, now)
            self._out.append(
                SourcePacket(
                    "video", unit.data, pts, self._video_base, unit.keyframe, clock.wall(pts)
                )
            )

    def _audio_packet(self, packet: RtpPacket, whole: bool) -> None:
        frames = self._audio_frames
        assert frames is not None and self._audio is not None
        if not whole:
            frames.reset()
        for data, timestamp in frames.push(packet):
            pts = self._on_video_clock(self._audio.clock.unwrap(timestamp))
            if pts is None:
                continue  # before any video: nothing to place it against
            self._out.append(SourcePacket("audio", data, pts, self._video_base, True))

    def _on_video_clock(self, audio_ts: int) -> int | None:
        """An audio timestamp as the video timestamp of the same moment: by the camera's
        sender reports once both tracks have had one, by arrival until then."""
        video, audio = self._video, self._audio
        assert video is not None and audio is not None
        wall = audio.clock.wall(audio_ts)
        if wall is not None and video.clock.reported:
            return video.clock.at(wall)
        ratio = video.clock.rate / audio.clock.rate
        if self._audio_offset is None:
            if self._video_seen is None:
                return None
            seen, arrival = self._video_seen
            now_on_video = seen + (time.monotonic() - arrival) * video.clock.rate
            self._audio_offset = now_on_video - audio_ts * ratio
        return round(audio_ts * ratio + self._audio_offset)

    def _keep_alive(self, session: RtspSession, now: float) -> None:
        """GET_PARAMETER well within the session's timeout (a camera drops a silent one),
        and receiver reports to the camera every few seconds."""
        if now - self._reported_at >= REPORT_INTERVAL and self._carrier is not None:
            self._reported_at = now
            for track in self._rtp.values():
                if track.stats is not None:
                    self._carrier.send(track.rtcp, receiver_report(self._ssrc, [track.stats]))
        if now - self._alive_at >= session.session_timeout / 2:
            self._alive_at = now
            if self._polled:  # its reply is read past with the media
                session.send_request("GET_PARAMETER")
            else:
                session.request("GET_PARAMETER")

    def close(self) -> None:
        carrier, self._carrier = self._carrier, None
        if carrier is not None:
            carrier.close()
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.set_timeout(1.0)
            if session.session:
                session.request("TEARDOWN")
        except SourceError:
            pass  # the camera is gone already
        finally:
            session.close()

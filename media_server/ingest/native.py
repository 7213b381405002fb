"""A camera read by the gateway's own RTSP client (`ingest.client: native`).

FFmpeg's H.264 parser holds each access unit until the next one begins: a frame of delay.
Here an access unit leaves on the packet that carries its marker bit (rtp/assembler.py).
Video is H.264; audio Opus, G.711 or AAC (`mpeg4-generic`), placed on the video's clock
by the camera's RTCP sender reports (by arrival until both tracks have had one). RTP
comes interleaved on the RTSP connection (rtsp_session.py: auth, checked redirects);
anything else raises UnsupportedSource, so `auto` hands the camera to FFmpeg's client.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from fractions import Fraction

import av

from media_server.codecs import h264
from media_server.ingest.audio import audio_mode
from media_server.ingest.guard import SourceGuard
from media_server.ingest.rtsp_session import RtspSession
from media_server.ingest.sdp import Media, parse
from media_server.ingest.source import PermanentSourceError, SourceError, UnsupportedSource
from media_server.model.media import AudioInfo, SourceInfo, SourcePacket
from media_server.model.registration import RtspTransport
from media_server.rtp.assembler import START_CODE, Assembler
from media_server.rtp.audio import AUDIO_CODECS, AudioDepacketizer, audio_depacketizer
from media_server.rtp.clock import TrackClock
from media_server.rtp.packet import MalformedPacket, RtpPacket
from media_server.rtp.payload import sdp_parameter_sets
from media_server.rtp.rtcp import ReceptionStats, receiver_report, sender_reports

#: The video codecs this client takes; anything else is left to the PyAV client.
SUPPORTED = ("h264",)
#: Seconds between our receiver reports to the camera (RFC 3550's 5 s minimum).
REPORT_INTERVAL = 5.0


def _channels(transport: str, asked: tuple[int, int]) -> tuple[int, int]:
    """The interleaved channels a SETUP reply gave (cameras may choose others than asked)."""
    for part in transport.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() == "interleaved":
            first, _, second = value.partition("-")
            if first.isdigit():
                return int(first), int(second) if second.isdigit() else int(first) + 1
    return asked


@dataclass
class _Track:
    """One set-up track: where its RTP and RTCP arrive, its clock and what we received."""

    media: Media
    rtp: int
    rtcp: int
    clock: TrackClock
    stats: ReceptionStats | None = None
    last_seq: int | None = None
    ssrc: int | None = field(default=None)

    def received(self, packet: RtpPacket, now: float) -> bool:
        """Count `packet`; False when a packet before it was lost."""
        if self.stats is None or self.ssrc != packet.ssrc:
            self.stats, self.ssrc = ReceptionStats(packet.ssrc, self.media.clock_rate), packet.ssrc
            self.last_seq = None
        self.stats.packet(packet, now)
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
    ) -> None:
        self._url = url
        self._transport = transport
        self._want_audio = audio
        self._timeouts = (open_timeout, read_timeout)
        self._guard = guard
        self._session: RtspSession | None = None
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

    @property
    def channel(self) -> int:
        """The interleaved channel video RTP arrives on (the camera's choice)."""
        return self._video.rtp if self._video else 0

    # -- opening -------------------------------------------------------------------------
    def open(self) -> SourceInfo:
        if self._transport != "tcp":
            raise UnsupportedSource("the native RTSP client takes RTP over TCP only so far")
        session = self._session = RtspSession(self._url, self._guard, self._timeouts[0])
        session.connect()
        session.request("OPTIONS")
        described = session.request("DESCRIBE", headers={"Accept": "application/sdp"})
        self._expect(described.status, "DESCRIBE")
        base = (
            described.headers.get("content-base")
            or described.headers.get("content-location")
            or session.plain_url
        )
        media = parse(described.body.decode("utf-8", "replace"), base)
        video, audio = self._choose(media)
        self._video = self._setup(session, video, (0, 1))
        if audio is not None:
            self._audio = self._setup(session, audio, (2, 3))
            self._audio_frames = audio_depacketizer(audio.codec, audio.fmtp)
        played = session.request("PLAY", headers={"Range": "npt=0.000-"})
        self._expect(played.status, "PLAY")
        session.set_timeout(self._timeouts[1])
        self._alive_at = self._reported_at = time.monotonic()
        self._video_base = Fraction(1, video.clock_rate)
        params = sdp_parameter_sets("h264", video.fmtp)
        self._assembler = Assembler("h264", params)
        extradata = b"".join(START_CODE + unit for unit in params)
        sps = h264.find_sps(extradata)
        return SourceInfo(
            codec="h264",
            width=sps.width if sps else None,
            height=sps.height if sps else None,
            fps=None,
            profile=sps.profile_name if sps else None,
            extradata=extradata,
            browser_safe=h264.browser_safe(sps),
            audio=self._audio_info(audio),
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
                f"the native RTSP client takes H.264 video, the camera sends {videos[0].codec}"
            )
        audios = [m for m in media if m.kind == "audio"] if self._want_audio else []
        audio = next((m for m in audios if audio_depacketizer(m.codec, m.fmtp)), None)
        if audios and audio is None:
            raise UnsupportedSource(
                f"the native RTSP client takes Opus, G.711 or AAC (mpeg4-generic) audio, the "
                f'camera sends {audios[0].codec} ("audio": false takes its video alone)'
            )
        return video, audio

    def _setup(self, session: RtspSession, media: Media, asked: tuple[int, int]) -> _Track:
        transport = f"RTP/AVP/TCP;unicast;interleaved={asked[0]}-{asked[1]}"
        reply = session.request("SETUP", media.control, {"Transport": transport})
        self._expect(reply.status, "SETUP")
        rtp, rtcp = _channels(reply.headers.get("transport", ""), asked)
        return _Track(media, rtp, rtcp, TrackClock(media.clock_rate))

    def _audio_info(self, audio: Media | None) -> AudioInfo | None:
        if audio is None:
            return None
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

    # -- reading -------------------------------------------------------------------------
    def read(self) -> SourcePacket | None:
        session = self._session
        assert session is not None and self._video is not None, "open() first"
        while not self._out:
            now = time.monotonic()
            self._keep_alive(session, now)
            channel, data = session.frame()
            self._arrived(channel, data, time.monotonic())
        return self._out.pop(0)

    def _arrived(self, channel: int, data: bytes, now: float) -> None:
        video, audio = self._video, self._audio
        assert video is not None
        for track in (video, audio):
            if track is None:
                continue
            if channel == track.rtcp:
                for report in sender_reports(data):
                    if report.ssrc == track.ssrc and track.stats is not None:
                        track.clock.report(report)
                        track.stats.sender_report(report, now)
                return
            if channel == track.rtp:
                try:
                    packet = RtpPacket.parse(data)
                except MalformedPacket:
                    return
                if packet.payload_type != track.media.payload_type:
                    return
                whole = track.received(packet, now)
                if track is video:
                    self._video_packet(packet, now)
                else:
                    self._audio_packet(packet, whole)
                return

    def _video_packet(self, packet: RtpPacket, now: float) -> None:
        assert self._assembler is not None and self._video is not None
        clock = self._video.clock
        for unit in self._assembler.push(packet):
            pts = clock.unwrap(unit.timestamp)
            self._video_seen = (pts, now)
            out = av.Packet(unit.data)
            out.pts = pts
            out.time_base = self._video_base
            self._out.append(("video", out))

    def _audio_packet(self, packet: RtpPacket, whole: bool) -> None:
        frames = self._audio_frames
        assert frames is not None and self._audio is not None
        if not whole:
            frames.reset()
        for data, timestamp in frames.push(packet):
            pts = self._on_video_clock(self._audio.clock.unwrap(timestamp))
            if pts is None:
                continue  # before any video: nothing to place it against
            out = av.Packet(data)
            out.pts = pts
            out.time_base = self._video_base
            self._out.append(("audio", out))

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
        if now - self._reported_at >= REPORT_INTERVAL:
            self._reported_at = now
            for track in (self._video, self._audio):
                if track is not None and track.stats is not None:
                    session.send_frame(track.rtcp, receiver_report(self._ssrc, [track.stats]))
        if now - self._alive_at >= session.session_timeout / 2:
            self._alive_at = now
            session.request("GET_PARAMETER")

    def close(self) -> None:
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

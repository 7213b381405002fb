"""A camera read by the gateway's own RTSP client (`ingest.client: native`).

FFmpeg's H.264 parser holds each access unit until the next one begins: a frame of delay.
Here RTP arrives interleaved on the RTSP connection and an access unit leaves on the
packet that carries its marker bit (rtp/assembler.py). This first version takes H.264
video over RTP/TCP (interleaved), with Basic or Digest auth and checked redirects
(rtsp_session.py); audio, UDP and H.265 are the PyAV client's until they come here.
"""

from __future__ import annotations

import time
from fractions import Fraction

import av

from media_server.codecs import h264
from media_server.ingest.guard import SourceGuard
from media_server.ingest.rtsp_session import RtspSession
from media_server.ingest.sdp import Media, parse
from media_server.ingest.source import PermanentSourceError, SourceError, UnsupportedSource
from media_server.model.media import Packet, SourceInfo
from media_server.model.registration import RtspTransport
from media_server.rtp.assembler import START_CODE, Assembler, Unit
from media_server.rtp.packet import MalformedPacket, RtpPacket
from media_server.rtp.payload import sdp_parameter_sets

#: What this client takes; anything else is left to the PyAV client.
SUPPORTED = ("h264",)


def _channels(transport: str) -> tuple[int, int]:
    """The interleaved channels a SETUP reply gave (cameras may choose others than asked)."""
    for part in transport.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() == "interleaved":
            first, _, second = value.partition("-")
            if first.isdigit():
                return int(first), int(second) if second.isdigit() else int(first) + 1
    return 0, 1


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
        self._audio = audio
        self._timeouts = (open_timeout, read_timeout)
        self._guard = guard
        self._session: RtspSession | None = None
        self._media: Media | None = None
        self._assembler: Assembler | None = None
        #: The interleaved channel RTP arrives on (the camera's choice).
        self.channel = 0
        self._units: list[Unit] = []
        self._time_base = Fraction(1, 90_000)
        self._alive_at = 0.0

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
        videos = [m for m in media if m.kind == "video"]
        if not videos:
            kinds = ", ".join(sorted({m.kind for m in media})) or "nothing"
            raise PermanentSourceError(f"source has no video track (it offers {kinds})")
        video = next((m for m in videos if m.codec in SUPPORTED), None)
        if video is None:
            raise UnsupportedSource(
                f"the native RTSP client takes H.264 video, the camera sends {videos[0].codec}"
            )
        if self._audio and any(m.kind == "audio" for m in media):
            raise UnsupportedSource("the native RTSP client takes no audio so far")
        setup = session.request(
            "SETUP", video.control, {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        self._expect(setup.status, "SETUP")
        self.channel = _channels(setup.headers.get("transport", ""))[0]
        played = session.request("PLAY", headers={"Range": "npt=0.000-"})
        self._expect(played.status, "PLAY")
        session.set_timeout(self._timeouts[1])
        self._alive_at = time.monotonic()
        self._media = video
        self._time_base = Fraction(1, video.clock_rate)
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
            audio=None,
            client="native",
        )

    def _expect(self, status: int, method: str) -> None:
        if status == 200:
            return
        if status == 401:
            raise SourceError(f"the camera refused the credentials ({method}: 401)")
        raise SourceError(f"the camera answered {method} with {status}")

    def read(self) -> Packet | None:
        assert self._session is not None and self._assembler is not None, "open() first"
        session, media = self._session, self._media
        assert media is not None
        while not self._units:
            self._keep_alive(session)
            channel, data = session.frame()
            if channel != self.channel:
                continue  # RTCP, or a track not set up
            try:
                packet = RtpPacket.parse(data)
            except MalformedPacket:
                continue
            if packet.payload_type == media.payload_type:
                self._units.extend(self._assembler.push(packet))
        unit = self._units.pop(0)
        out = av.Packet(unit.data)
        out.pts = unit.timestamp
        out.time_base = self._time_base
        return out

    def _keep_alive(self, session: RtspSession) -> None:
        """GET_PARAMETER well within the session's timeout (a camera drops a silent one)."""
        now = time.monotonic()
        if now - self._alive_at < session.session_timeout / 2:
            return
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

"""RTSP camera reader on PyAV, opened with low-delay options.

Default probing buffers about a second before the first packet; `analyzeduration=0` and a
tiny `probesize` open in about 0.1 s. The protocol whitelist keeps FFmpeg from following a
URL anywhere but RTSP and its RTP transports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import av

from media_server.codecs import h264, h265
from media_server.ingest.audio import audio_mode
from media_server.ingest.guard import SourceGuard
from media_server.ingest.native import NativeRtspSource
from media_server.ingest.rtsp_gate import MAX_REDIRECTS, Gate
from media_server.ingest.source import (
    PermanentSourceError,
    Polled,
    Source,
    SourceError,
    UnsupportedSource,
)
from media_server.model.media import AudioInfo, Packet, SourceInfo, SourcePacket
from media_server.model.registration import Registration
from media_server.urls import redact_text

if TYPE_CHECKING:
    from media_server.ingest.sources import SourceContext, SourceFactory

log = logging.getLogger(__name__)

#: FFmpeg speaks plain RTSP to the gate (which does TLS for rtsps) and RTP over UDP.
PROTOCOL_WHITELIST = "rtsp,rtp,udp,tcp"


def gate_url(url: str, port: int) -> str:
    """The URL FFmpeg opens: the camera's, with its credentials and path, at the gate."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(("rtsp", f"{userinfo}127.0.0.1:{port}", parts.path, parts.query, ""))


def source_for(registration: Registration, context: SourceContext) -> SourceFactory:
    ingest = context.settings.ingest
    client = registration.client or ingest.client

    def native() -> Source:
        return NativeRtspSource(
            registration.url,
            ingest.open_timeout,
            ingest.read_timeout,
            context.guard,
            transport=registration.transport,
            audio=registration.audio,
            ports=context.ports,
            reactor=context.reactor,
        )

    def pyav() -> Source:
        return RtspSource(
            registration.url,
            registration.transport,
            ingest.open_timeout,
            ingest.read_timeout,
            context.guard,
            socket_timeout=ingest.stall_check == "socket",
            audio=registration.audio,
        )

    if client == "native":
        return lambda stop: native()
    if client == "pyav":
        return lambda stop: pyav()
    return lambda stop: AutoSource(registration.id, native, pyav)


class AutoSource:
    """`ingest.client: auto`: the gateway's own client where it takes the camera, and
    FFmpeg's where it does not (UnsupportedSource says which). Asked again on every
    connection, so a camera reconfigured to something native takes moves back to it."""

    def __init__(self, name: str, first: Callable[[], Source], fallback: Callable[[], Source]):
        self._name = name
        self._fallback = fallback
        self._source = first()

    def open(self) -> SourceInfo:
        try:
            return self._source.open()
        except UnsupportedSource as exc:
            self._source.close()
            log.info("stream %s: %s; FFmpeg's RTSP client reads it", self._name, exc)
            self._source = self._fallback()
            return self._source.open()

    def read(self) -> SourcePacket | None:
        return self._source.read()

    def polled(self) -> Polled | None:
        return self._source.polled()

    def close(self) -> None:
        self._source.close()


def audio_info(stream: av.audio.stream.AudioStream, wanted: bool) -> AudioInfo:
    """What a camera's audio track is, and whether viewers get it as it is or as Opus."""
    ctx = stream.codec_context
    return AudioInfo(
        ctx.name,
        ctx.sample_rate or 0,
        ctx.channels or 0,
        audio_mode(ctx.name, wanted),
        extradata=bytes(ctx.extradata or b""),
    )


class RtspSource:
    def __init__(
        self,
        url: str,
        transport: str,
        open_timeout: float,
        read_timeout: float,
        guard: SourceGuard,
        *,
        socket_timeout: bool = False,
        audio: bool = True,
    ):
        self._url = url
        self._audio = audio
        self._socket_timeout = socket_timeout
        self._guard = guard
        self._transport = transport
        self._timeout = (open_timeout, read_timeout)
        self._container: av.container.InputContainer | None = None
        self._gate: Gate | None = None
        self._packets: Iterator[Packet] | None = None

    def open(self) -> SourceInfo:
        options = {
            "rtsp_transport": self._transport,
            "analyzeduration": "0",
            "probesize": "32",
            "protocol_whitelist": PROTOCOL_WHITELIST,
        }
        timeout: tuple[float, float | None] = self._timeout
        if self._socket_timeout:
            # PyAV's read timeout is checked in FFmpeg's interrupt callback, which takes the
            # GIL every time FFmpeg polls: with many streams the ingest threads fight over
            # it. FFmpeg's socket timeout (microseconds) ends a stalled read without it.
            options["timeout"] = str(int(self._timeout[1] * 1_000_000))
            timeout = (self._timeout[0], None)
        container = self._connect(options, timeout)
        self._container = container
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise PermanentSourceError(f"source has no video track (it offers {kinds})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        extradata = h264.avcc_extradata_to_annexb(bytes(ctx.extradata or b""))
        sps = h264.find_sps(extradata) if ctx.name == "h264" else None
        hevc = h265.find_sps(extradata) if ctx.name == "hevc" else None
        rate = stream.average_rate or stream.guessed_rate
        audio = (
            audio_info(container.streams.audio[0], self._audio) if container.streams.audio else None
        )
        if audio is not None and audio.mode != "off":
            self._packets = container.demux(stream, container.streams.audio[0])
        else:
            self._packets = container.demux(stream)
        return SourceInfo(
            codec=ctx.name,
            width=sps.width if sps else (ctx.width or None),
            height=sps.height if sps else (ctx.height or None),
            fps=float(rate) if rate else None,
            profile=sps.profile_name if sps else hevc.profile_name if hevc else None,
            extradata=extradata,
            browser_safe=h264.browser_safe(sps) or h265.browser_safe(hevc),
            audio=audio,
            client="pyav",
        )

    def _connect(
        self, options: dict[str, str], timeout: tuple[float, float | None]
    ) -> av.container.InputContainer:
        """Open the camera through a gate (rtsp_gate.py), following a redirect only once
        the guard has checked where it leads, for at most MAX_REDIRECTS hops."""
        url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            gate = Gate(self._guard.upstream(url), self._timeout[0])  # checked each attempt
            started = time.monotonic()
            try:
                container = av.open(gate_url(url, gate.port), options=options, timeout=timeout)
            except (av.FFmpegError, OSError) as exc:
                gate.close()
                if gate.redirect is not None:
                    url = self._guard.redirect(url, gate.redirect)
                    continue
                if gate.refused is not None:
                    raise SourceError(redact_text(gate.refused, url)) from None
                if time.monotonic() - started >= self._timeout[0] * 0.9:
                    raise SourceError(f"no answer within {self._timeout[0]:g} s") from None
                raise SourceError(self._describe(exc)) from None
            self._gate = gate
            return container
        raise PermanentSourceError(f"the camera redirected more than {MAX_REDIRECTS} times")

    def read(self) -> SourcePacket | None:
        assert self._packets is not None, "open() first"
        started = time.monotonic()
        stall = self._timeout[1] * 0.9
        try:
            for packet in self._packets:
                # FFmpeg hands out what it still holds when its read times out, then waits
                # another timeout; a gap this long already is the stall.
                if time.monotonic() - started >= stall:
                    break
                if packet.size:
                    stream = packet.stream
                    audio = stream is not None and stream.type == "audio"
                    return SourcePacket.of("audio" if audio else "video", packet)
        except (av.FFmpegError, OSError) as exc:
            if time.monotonic() - started < stall:
                raise SourceError(self._describe(exc)) from None
        else:
            if time.monotonic() - started < stall:
                return None  # the camera ended the session
        raise SourceError(f"stalled: no data for {self._timeout[1]:g} s")

    def _describe(self, exc: Exception) -> str:
        """FFmpeg's reason without its error number and the URL (which holds credentials)."""
        reason = getattr(exc, "strerror", None) or str(exc)
        return redact_text(str(reason), self._url)

    def polled(self) -> None:
        return None  # FFmpeg reads, blocking, on the stream's thread

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._packets = None
        if self._gate is not None:
            self._gate.close()
            self._gate = None

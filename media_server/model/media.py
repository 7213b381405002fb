"""The vocabulary ingest, hub and webrtc share: stream states, access units, source facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import av

#: One clock for everything a viewer receives: RTP video clock, 90 kHz.
TIME_BASE = Fraction(1, 90_000)
CLOCK_RATE = 90_000

if TYPE_CHECKING:
    #: A packet of any stream (PyAV's stubs make Packet generic in its stream type).
    Packet = av.Packet[Any]
else:
    Packet = av.Packet

#: Which of a source's tracks a packet belongs to.
Track = Literal["video", "audio"]
EffectiveMode = Literal["passthrough", "transcode"]
#: Who reads a source: the gateway's RTSP client, FFmpeg's, or the built-in demo.
SourceClient = Literal["native", "pyav", "demo"]
AudioMode = Literal["passthrough", "transcode", "off"]

#: Camera audio codecs (FFmpeg names) browsers play as they are: their WebRTC name and
#: RTP clock rate. Anything else PyAV decodes is transcoded to Opus, once per stream.
BROWSER_AUDIO = {
    "opus": ("opus", 48_000),
    "pcm_mulaw": ("PCMU", 8_000),
    "pcm_alaw": ("PCMA", 8_000),
}
OPUS = ("opus", 48_000)


@dataclass(frozen=True, slots=True)
class SourcePacket:
    """What a source read: one encoded packet of video (Annex-B) or audio. Plain bytes:
    the gateway's own RTSP client need not make a PyAV packet (costly per packet with a
    hundred ingest threads at the GIL) that the worker would turn back into bytes."""

    track: Track
    data: bytes
    pts: int | None
    time_base: Fraction
    keyframe: bool = False
    #: When the camera captured it, in NTP seconds on the camera's clock (from its RTCP
    #: sender reports; None where it sent none, or FFmpeg's client read it).
    capture: float | None = None

    @classmethod
    def of(cls, track: Track, packet: Packet) -> SourcePacket:
        """A PyAV packet's (FFmpeg's client, the demo's encoder)."""
        return cls(
            track, bytes(packet), packet.pts, packet.time_base or TIME_BASE, packet.is_keyframe
        )


class StreamState(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One encoded picture (Annex-B, parameter sets in front of every keyframe) or audio
    frame, shared read-only by every viewer.

    The engine, relays and snapshots take its bytes. A PyAV packet (what aiortc's senders
    and decoders take) is made the first time one is asked for, on the loop, once: most
    units never need one, and making one per unit in each ingest thread costs the GIL.
    """

    data: bytes
    pts: int
    time_base: Fraction
    keyframe: bool
    #: The camera's capture time (NTP seconds), as its source packet gave it.
    capture: float | None = None
    made: Packet | None = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def packet(self) -> Packet:
        if self.made is None:
            packet = av.Packet(self.data)
            packet.pts = self.pts
            packet.time_base = self.time_base
            object.__setattr__(self, "made", packet)  # a cache: the unit stays the same
            return packet
        return self.made


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the source turned out to be once opened."""

    codec: str
    width: int | None
    height: int | None
    fps: float | None
    profile: str | None
    extradata: bytes
    browser_safe: bool
    audio: AudioInfo | None = None
    client: SourceClient | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """The camera's audio track, and what viewers get of it."""

    codec: str  # FFmpeg's name: opus, aac, pcm_mulaw, ...
    sample_rate: int
    channels: int
    mode: AudioMode
    extradata: bytes = b""  # what its decoder needs (AAC: the AudioSpecificConfig)

    @property
    def webrtc_codec(self) -> tuple[str, int] | None:
        """(codec name, RTP clock rate) viewers receive, None when audio is off."""
        if self.mode == "off":
            return None
        return BROWSER_AUDIO[self.codec] if self.mode == "passthrough" else OPUS

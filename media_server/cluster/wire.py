"""The internal link between nodes: a stream's media as its origin's hubs carry it.

A WebSocket from the edge to the origin, `GET /internal/v1/relay/{id}?lease=N` with the
cluster secret as bearer token. The origin sends a text message describing the media
(again whenever it changes), then one binary message per access unit:

    kind (1 byte: 1 video, 2 audio) | flags (1 byte: 1 keyframe) | pts (int64) | payload

Video is H.264 Annex-B with SPS/PPS before every keyframe on the 90 kHz clock; audio is
in the codec browsers receive (Opus, PCMU, PCMA) on that codec's clock. The edge needs
no decoder: it fans the units out as they come.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from media_server.model.media import BROWSER_AUDIO, AudioInfo, SourceInfo

HEADER = struct.Struct("!BBq")
VIDEO = 1
AUDIO = 2
KEYFRAME = 1

#: The WebSocket close code an origin uses when it no longer ingests the stream.
NOT_ORIGIN = 4409


@dataclass(frozen=True, slots=True)
class Unit:
    kind: int
    keyframe: bool
    pts: int
    data: bytes


def pack(kind: int, keyframe: bool, pts: int, data: bytes) -> bytes:
    return HEADER.pack(kind, KEYFRAME if keyframe else 0, pts) + data


def unpack(message: bytes) -> Unit:
    """Raise ValueError for anything that is not a unit."""
    if len(message) < HEADER.size:
        raise ValueError("relay message too short")
    kind, flags, pts = HEADER.unpack_from(message)
    if kind not in (VIDEO, AUDIO):
        raise ValueError(f"relay message of unknown kind {kind}")
    return Unit(kind, bool(flags & KEYFRAME), pts, message[HEADER.size :])


def describe(info: SourceInfo) -> str:
    """The media an origin relays, given what its camera is: video is always H.264 by
    then (passed through, or encoded once by the shared encoder)."""
    audio = info.audio
    relayed: dict[str, Any] | None = None
    if audio is not None and audio.mode != "off":
        codec = audio.codec if audio.mode == "passthrough" else "opus"
        rate = BROWSER_AUDIO[codec][1]
        relayed = {"codec": codec, "sample_rate": rate, "channels": audio.channels}
        if audio.mode == "transcode":
            relayed["channels"] = 2
    return json.dumps(
        {
            "codec": "h264",
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "profile": info.profile,
            "audio": relayed,
        }
    )


def parse_info(text: str) -> SourceInfo:
    """What an edge serves; raise ValueError for a description it cannot use."""
    try:
        data = json.loads(text)
        audio = data.get("audio")
        if data["codec"] != "h264":
            raise ValueError(f"relayed video is {data['codec']}, not h264")
        if audio is not None and audio["codec"] not in BROWSER_AUDIO:
            raise ValueError(f"relayed audio is {audio['codec']}")
        if audio is not None and not (
            0 < int(audio["sample_rate"]) <= 384_000 and 0 < int(audio["channels"]) <= 8
        ):
            raise ValueError("relayed audio has no sensible rate or channel count")
        return SourceInfo(
            codec="h264",
            width=data.get("width"),
            height=data.get("height"),
            fps=data.get("fps"),
            profile=data.get("profile"),
            extradata=b"",  # SPS/PPS travel in front of every keyframe
            browser_safe=True,
            audio=AudioInfo(
                audio["codec"], int(audio["sample_rate"]), int(audio["channels"]), "passthrough"
            )
            if audio
            else None,
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad relay description: {exc}") from None

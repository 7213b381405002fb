"""The internal link between nodes: a stream's media as its origin's hubs carry it.

A WebSocket from the edge to the origin, `GET /internal/v1/relay/{id}?lease=N` with the
cluster secret as bearer token. The origin sends a text message describing the media
(again whenever it changes), then one binary message per access unit:

    kind (1 byte: 1 video, 2 audio, 3 transcode) | flags (1 byte: 1 keyframe) |
    pts (int64) | payload

Video is H.264 or H.265 Annex-B with its parameter sets before every keyframe on the
90 kHz clock; audio is in the codec browsers receive (Opus, PCMU, PCMA) on that codec's
clock. For an H.265 stream the edge may ask for its H.264 transcode as well, with a text
message `{"transcode": true}` (and `false` when its last H.264 viewer left): the origin
makes one for all and sends it as kind 3. The edge needs no decoder: it fans the units
out as they come.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

from media_server.model.media import BROWSER_AUDIO, AudioInfo, SourceInfo

HEADER = struct.Struct("!BBq")
VIDEO = 1
AUDIO = 2
TRANSCODE = 3
KEYFRAME = 1
#: The video codecs a relay carries (FFmpeg's names, as the stream's view says them).
CODECS = ("h264", "hevc")

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
    if kind not in (VIDEO, AUDIO, TRANSCODE):
        raise ValueError(f"relay message of unknown kind {kind}")
    return Unit(kind, bool(flags & KEYFRAME), pts, message[HEADER.size :])


def describe(info: SourceInfo, codec: str) -> str:
    """The media an origin relays, given what its camera is and the codec of its video
    units (`Stream.video_codec`): H.264 (passed through, or encoded once by the shared
    encoder) or H.265 passed through, whose parameter sets go along (the edge answers
    viewers with the stream's profile, tier and level)."""
    audio = info.audio
    relayed: dict[str, Any] | None = None
    if audio is not None and audio.mode != "off":
        heard = audio.codec if audio.mode == "passthrough" else "opus"
        rate = BROWSER_AUDIO[heard][1]
        relayed = {"codec": heard, "sample_rate": rate, "channels": audio.channels}
        if audio.mode == "transcode":
            relayed["channels"] = 2
    return json.dumps(
        {
            "codec": codec,
            "extradata": base64.b64encode(info.extradata if codec == "hevc" else b"").decode(),
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
        codec = data["codec"]
        if codec not in CODECS:
            raise ValueError(f"relayed video is {codec}, not one of {', '.join(CODECS)}")
        if audio is not None and audio["codec"] not in BROWSER_AUDIO:
            raise ValueError(f"relayed audio is {audio['codec']}")
        if audio is not None and not (
            0 < int(audio["sample_rate"]) <= 384_000 and 0 < int(audio["channels"]) <= 8
        ):
            raise ValueError("relayed audio has no sensible rate or channel count")
        return SourceInfo(
            codec=codec,
            width=data.get("width"),
            height=data.get("height"),
            fps=data.get("fps"),
            profile=data.get("profile"),
            # Parameter sets travel in front of every keyframe; H.265's come here too.
            extradata=base64.b64decode(data.get("extradata", ""), validate=True),
            browser_safe=True,
            audio=AudioInfo(
                audio["codec"], int(audio["sample_rate"]), int(audio["channels"]), "passthrough"
            )
            if audio
            else None,
        )
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, binascii.Error) as exc:
        raise ValueError(f"bad relay description: {exc}") from None


def ask_transcode(wanted: bool) -> str:
    """The edge's message: whether it wants an H.265 stream's H.264 transcode now."""
    return json.dumps({"transcode": wanted})


def parse_ask(text: str) -> bool:
    """What an edge asked for; raise ValueError for anything else."""
    try:
        wanted = json.loads(text)["transcode"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad relay request: {exc}") from None
    if not isinstance(wanted, bool):
        raise ValueError("bad relay request: transcode must be true or false")
    return wanted

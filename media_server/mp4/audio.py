"""Which of a camera's audio goes into fMP4 (MSE and HLS), and why none where none does.

AAC goes in as the camera sent it; Opus (the camera's, or ours made from what browsers
cannot play) goes in as WebRTC viewers get it. G.711 has no place in the MP4 that
browsers' MediaSource and HLS players take, so those viewers get the video alone and the
stream's view says so.
"""

from __future__ import annotations

from typing import Literal

from media_server.model.media import AudioInfo

Fmp4Audio = Literal["aac", "opus"]


def fmp4_audio(
    info: AudioInfo | None, relayed: bool = False
) -> tuple[Fmp4Audio | None, str | None]:
    """The audio fMP4 carries (None: none), and a note where the camera's is left out.

    `relayed`: the stream comes from another node of a cluster, which relays what
    WebRTC viewers get (Opus), never the camera's AAC."""
    if info is None:
        return None, None
    if info.mode == "off":
        return None, f"the camera's {info.codec} audio is off, so fMP4 carries none"
    if info.codec == "aac" and info.extradata and not relayed:
        return "aac", None
    codec = info.webrtc_codec
    if codec is not None and codec[0] == "opus":
        return "opus", None
    return None, (
        f"{info.codec} audio has no place in fMP4: MSE and HLS viewers get the video alone "
        "(WebRTC viewers hear it)"
    )

"""How a stream reaches a viewer, by name: what the API's `media_transport`, the WebSocket
answer, WHEP's `X-Media-Transport` and the egress metrics call it.

A passed-through stream goes out through aiortc's sender (`passthrough`) or the engine
(`engine`); a transcoded one is encoded once for all (`transcode-shared`) or by aiortc
per viewer (`transcode-per-viewer`); `pending` until the source shows which mode it
takes. The canary's choice replaces the configured one for the mode it belongs to.
"""

from __future__ import annotations

from media_server.config import MEDIA_PATHS, TRANSCODE_ENCODES, Settings
from media_server.model.media import EffectiveMode
from media_server.model.registration import Mode


def delivery(settings: Settings, mode: EffectiveMode | Mode, canary: bool = False) -> str:
    other = settings.canary.choice if canary else None
    if mode == "passthrough":
        path = other if other in MEDIA_PATHS else settings.webrtc.media_path
        return "engine" if path == "engine" else "passthrough"
    if mode == "transcode":
        encode = other if other in TRANSCODE_ENCODES else settings.transcode.encode
        return "transcode-shared" if encode == "shared" else "transcode-per-viewer"
    return "pending"


def canary_turn(settings: Settings, admitted: int) -> bool:
    """Whether the viewer admitted after `admitted` others gets the canary: exactly
    `canary.percent` % of new viewers, spread evenly, not by chance."""
    canary = settings.canary
    share = canary.percent / 100 if canary.choice else 0.0
    return int((admitted + 1) * share) > int(admitted * share)

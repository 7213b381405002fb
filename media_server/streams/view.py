"""A stream as the API shows it: `GET /api/v1/streams/{id}`, the stream list, the console's
events and the OpenAPI response schema all come from this one model.

It extends the registration (credentials redacted) with what the stream is doing now.
Building it reads state and changes none.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from media_server.model.media import AudioMode, EffectiveMode, SourceClient, StreamState
from media_server.model.registration import Registration
from media_server.mp4.audio import Fmp4Audio
from media_server.streams.consumer import ConsumerKind

ManagedBy = Literal["api", "config", "demo"]

#: Present only on a node of a cluster.
CLUSTER_ONLY = ("ingest_node", "relays")


class Counters(BaseModel):
    """Totals since the stream's ingest (re)started on this node; they only grow."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    packets_in: int = 0
    bytes_in: int = 0
    keyframes_in: int = 0
    frames_decoded: int = 0
    frames_encoded: int = 0
    reconnects: int = 0
    ingest_dropped: int = 0
    units_out: int = 0
    frames_out: int = 0
    viewer_dropped: int = 0
    audio_packets_in: int = 0
    audio_frames_encoded: int = 0


def _cluster_fields_optional(schema: dict[str, Any]) -> None:
    schema["required"] = [name for name in schema["required"] if name not in CLUSTER_ONLY]


class StreamView(Registration):
    """The registration as registered (its URL without credentials), and its live state."""

    model_config = ConfigDict(
        title="Stream",
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_cluster_fields_optional,
    )

    url: str = Field(description="credentials redacted")
    managed_by: ManagedBy = Field(
        description="registered through the API, declared in the config file (not "
        "removable through the API), or this node's built-in demo"
    )
    state: StreamState
    error: str | None = Field(description="why the stream is not live, when it is not")
    viewers: int = Field(description="viewer sessions (relays to other nodes not counted)")
    consumers: dict[ConsumerKind, int] = Field(
        description="who consumes the stream now, by kind: viewer (WebRTC sessions), relay "
        "(other nodes of a cluster), fanout (the engine's feed), snapshot (being made), "
        "muxer (its fMP4, made while anyone watches over MSE or HLS or it records), mse "
        "(MSE viewers' WebSockets), hls (HLS players that polled in the last few target "
        "durations), recorder (writing it to disk)"
    )
    codec: str | None = Field(description="the camera's video codec (FFmpeg's name: h264, hevc)")
    video_codecs: dict[ConsumerKind, dict[str, int]] = Field(
        description="who gets which video codec now, by watching kind (viewer, mse, hls): "
        "an H.265 stream passes through to those that decode H.265, and the rest share "
        'its one H.264 transcode, e.g. {"viewer": {"hevc": 2, "h264": 1}}'
    )
    profile: str | None
    width: int | None
    height: int | None
    fps: float | None
    bitrate: int | None = Field(
        description="ingress bits/s over the last two seconds or more; null unless live"
    )
    audio_codec: str | None = Field(description="the camera's, e.g. aac")
    audio_sample_rate: int | None
    audio_channels: int | None
    audio_mode: AudioMode | None = Field(
        description="passthrough: Opus or G.711 as it is; transcode: Opus made once per "
        "stream; off: no audio for viewers; null: the source has no audio track"
    )
    fmp4_audio: Fmp4Audio | None = Field(
        description="the audio MSE and HLS viewers get (in fMP4): aac as the camera sent "
        "it, opus as WebRTC viewers get it; null: none"
    )
    fmp4_note: str | None = Field(
        description="why MSE and HLS viewers get no audio where the camera has some"
    )
    effective_mode: EffectiveMode | None
    ingest_client: SourceClient | None = Field(
        description="who reads the source now: native (the gateway's RTSP client), pyav "
        "(FFmpeg's), or demo; null until it has been opened"
    )
    media_transport: str = Field(description="what carries the stream to most viewers")
    created_at: float
    state_since: float
    counters: Counters
    ingest_node: str | None = Field(
        None, description="cluster only: the node that ingests the stream (null: none yet)"
    )
    relays: int = Field(
        0, description="cluster only: nodes this one relays the stream to (not in viewers)"
    )

    def body(self) -> dict[str, Any]:
        """The JSON body: cluster fields only where they were given (a cluster's node)."""
        return self.model_dump(mode="json", exclude_unset=True)


#: What a stream's origin publishes of it to the other nodes of a cluster.
STATUS_FIELDS = (
    "state",
    "error",
    "codec",
    "profile",
    "width",
    "height",
    "fps",
    "bitrate",
    "effective_mode",
    "ingest_client",
    "audio_codec",
    "audio_sample_rate",
    "audio_channels",
    "audio_mode",
)

#: Those fields of the view, validated as the view's own when another node's arrive.
_STATUS: dict[str, Any] = {
    name: (StreamView.model_fields[name].annotation, ...) for name in STATUS_FIELDS
}
StreamStatus: type[BaseModel] = create_model("StreamStatus", **_STATUS)

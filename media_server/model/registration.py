"""A camera's registration: the one model behind the API's body, the config file's
`streams:`, the SQLite and Redis rows, the CLI's options and the OpenAPI schema.

Equality is what makes registration idempotent: the same id with an equal registration
is the same stream. The model is frozen, so a stream's registration never changes under
it; a changed camera is a new registration.
"""

from __future__ import annotations

import secrets
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: How RTP reaches us from the camera (RTSP's own word for it).
RtspTransport = Literal["tcp", "udp"]
#: What the operator asked for: passthrough, transcode, or whichever the source allows.
Mode = Literal["auto", "passthrough", "transcode"]
Strategy = Literal["fixed", "linear", "exponential", "exponential_jitter"]
#: Whose RTSP client reads a camera: the gateway's own, FFmpeg's (through PyAV), or the
#: gateway's own where it takes the camera and FFmpeg's for the rest.
IngestClient = Literal["native", "pyav", "auto"]

STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ID_RULE = "id must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"

#: The schemes a registration may name; the demo source is built in, never registered.
CAMERA_SCHEMES = ("rtsp", "rtsps")
MAX_URL_LENGTH = 2048


def validate_source_url(url: str) -> str:
    """Return the URL if it is an acceptable camera URL; raise ValueError saying why not."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url is malformed: {exc}") from None
    if parts.scheme.lower() not in CAMERA_SCHEMES:
        raise ValueError("url must start with rtsp:// or rtsps://")
    if not parts.hostname:
        raise ValueError("url must name a host")
    if "#" in url:
        raise ValueError("url must not have a '#' fragment (RTSP sends none to the camera)")
    if port == 0:
        raise ValueError("url port must be between 1 and 65535")
    return parts.scheme.lower() + url[len(parts.scheme) :]  # FFmpeg knows only "rtsp"


class ReconnectPolicy(BaseModel):
    """How a stream retries its camera; a default in the settings, overridable per stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = "exponential_jitter"
    initial: float = Field(0.5, gt=0, le=600, description="first retry delay, seconds")
    max: float = Field(10.0, gt=0, le=3600, description="longest retry delay, seconds")
    breaker_failures: int = Field(
        10, ge=1, le=100_000, description="consecutive failures that mark the stream failed"
    )
    breaker_window: float = Field(
        120.0, gt=0, le=86_400, description="...when they all fall within this many seconds"
    )
    probe_interval: float = Field(
        60.0, gt=0, le=86_400, description="retry period while failed (the breaker is open)"
    )


class _Camera(BaseModel):
    """Every field of a registration but its id, with the one set of validators."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    transport: RtspTransport = "tcp"
    mode: Mode = "auto"
    on_demand: bool = False
    reconnect: ReconnectPolicy | None = Field(
        None, description="retries of this camera (null: the configured default)"
    )
    audio: bool = Field(True, description="false: viewers get the video only")
    client: IngestClient | None = Field(
        None, description="who reads the camera (null: the configured ingest.client)"
    )
    record: bool | None = Field(
        None,
        description="keep the stream on disk as fMP4 segments (null: the configured "
        "record.default); a recorded on-demand camera stays open",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return validate_source_url(value)


class _Named(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=STREAM_ID_PATTERN)


class Registration(_Camera, _Named):  # in this order, the id comes first
    """A registered camera. In the config file credentials come from the environment as
    ${NAME}, so the file can be versioned; through the API the id may be left out."""

    def same_camera(self, other: Registration) -> bool:
        """Registered alike but for the id (a request without an id finds its stream)."""
        return self.model_copy(update={"id": other.id}) == other


class NewRegistration(_Camera):
    """The body of `POST /api/v1/streams`: JSON types exactly, the id optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="StreamCreate")

    id: str | None = Field(None, pattern=STREAM_ID_PATTERN)

    def registration(self) -> Registration:
        """The registration, with an id made up when none was given."""
        data = self.model_dump()
        data["id"] = self.id or f"s-{secrets.token_hex(4)}"
        return Registration.model_validate(data)

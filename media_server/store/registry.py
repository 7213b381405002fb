"""The registry interface the stream manager depends on, and the spec's stored form."""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import ValidationError

from media_server.config import ReconnectPolicy
from media_server.streams.stream import StreamSpec
from media_server.urls import validate_source_url


class StoreError(Exception):
    """The store cannot be opened, read or written; the message says which and why."""


class Registry(Protocol):
    """Where registrations live: a SQLite file (one node) or Redis (a cluster)."""

    @property
    def location(self) -> str:
        """Where the store is, for readiness (never with a password)."""
        ...

    async def open(self) -> list[StreamSpec]:
        """Connect and verify; return the stored streams. Anything unreadable raises
        StoreError: starting empty would silently drop every registered camera."""
        ...

    async def load(self) -> list[StreamSpec]: ...

    async def add(self, spec: StreamSpec) -> StreamSpec | None:
        """Store `spec` unless its id is taken, atomically, durably before returning (an
        acknowledged registration survives a crash); the stored spec when it was taken."""
        ...

    async def delete(self, stream_id: str) -> bool:
        """Remove a stream; False when it was not stored."""
        ...

    async def check(self) -> str | None:
        """None when healthy, else what is wrong (for readiness)."""
        ...

    async def close(self) -> None: ...


def encode_spec(spec: StreamSpec) -> str:
    data: dict[str, Any] = {
        "id": spec.id,
        "url": spec.url,
        "transport": spec.transport,
        "mode": spec.mode,
        "on_demand": spec.on_demand,
        "reconnect": spec.reconnect.model_dump() if spec.reconnect else None,
        "audio": spec.audio,
    }
    return json.dumps(data, separators=(",", ":"))


def decode_spec(text: str) -> StreamSpec:
    """Rebuild a spec; raise StoreError if the stored form is not one we wrote."""
    try:
        data = json.loads(text)
        reconnect = data.get("reconnect")
        spec = StreamSpec(
            id=str(data["id"]),
            url=str(data["url"]),
            transport=data["transport"],
            mode=data["mode"],
            on_demand=bool(data["on_demand"]),
            reconnect=ReconnectPolicy.model_validate(reconnect) if reconnect else None,
            audio=bool(data.get("audio", True)),  # rows from before audio existed
        )
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise StoreError(f"a stored stream is malformed: {exc}") from None
    if spec.transport not in ("tcp", "udp") or spec.mode not in (
        "auto",
        "passthrough",
        "transcode",
    ):
        raise StoreError(f"stored stream '{spec.id}' has an unknown transport or mode")
    try:
        validate_source_url(spec.url)  # only what the API would have accepted
    except ValueError as exc:
        raise StoreError(f"stored stream '{spec.id}' has a bad url: {exc}") from None
    return spec

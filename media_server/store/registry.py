"""The registry interface the stream manager depends on, and a registration's stored form."""

from __future__ import annotations

from typing import Protocol

from pydantic import ValidationError

from media_server.model.registration import Registration


class StoreError(Exception):
    """The store cannot be opened, read or written; the message says which and why."""


class Registry(Protocol):
    """Where registrations live: a SQLite file (one node) or Redis (a cluster)."""

    @property
    def location(self) -> str:
        """Where the store is, for readiness (never with a password)."""
        ...

    async def open(self) -> list[Registration]:
        """Connect and verify; return the stored streams. Anything unreadable raises
        StoreError: starting empty would silently drop every registered camera."""
        ...

    async def load(self) -> list[Registration]: ...

    async def add(self, registration: Registration) -> Registration | None:
        """Store a registration unless its id is taken, atomically, durably before
        returning (an acknowledged registration survives a crash); the stored one when
        the id was taken."""
        ...

    async def delete(self, stream_id: str) -> bool:
        """Remove a stream; False when it was not stored."""
        ...

    async def check(self) -> str | None:
        """None when healthy, else what is wrong (for readiness)."""
        ...

    async def close(self) -> None: ...


def encode(registration: Registration) -> str:
    return registration.model_dump_json()


def decode(text: str) -> Registration:
    """Rebuild a registration, validated as the API would have validated it; raise
    StoreError if the stored form is not one we wrote."""
    try:
        return Registration.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"bad {'.'.join(str(p) for p in e['loc']) or 'row'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise StoreError(f"a stored stream is malformed: {problems}") from None

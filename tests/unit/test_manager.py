"""The stream manager's bookkeeping against an in-memory registry: what sync, apply_config,
create and delete start, stop, restart and leave alone.

Every camera here is on demand, so no ingest thread starts: only the manager's own logic
runs. Which streams were restarted shows in object identity (a restart is a new Stream).
"""

from __future__ import annotations

import asyncio

import pytest

from media_server.config import load_settings
from media_server.ingest.guard import SourceGuard
from media_server.model.registration import Registration
from media_server.streams.manager import (
    ConfigConflict,
    ManagedByConfig,
    StreamConflict,
    StreamManager,
)


def cam(stream_id: str, path: str = "x") -> Registration:
    return Registration(id=stream_id, url=f"rtsp://127.0.0.1:9/{path}", on_demand=True)


class MemoryRegistry:
    """A Registry that keeps its rows in a dict (another node writes with `rows`)."""

    location = "memory"

    def __init__(self, *registrations: Registration) -> None:
        self.rows = {r.id: r for r in registrations}
        self.deleted: list[str] = []

    async def open(self) -> list[Registration]:
        return await self.load()

    async def load(self) -> list[Registration]:
        return list(self.rows.values())

    async def add(self, registration: Registration) -> Registration | None:
        if registration.id in self.rows:
            return self.rows[registration.id]
        self.rows[registration.id] = registration
        return None

    async def delete(self, stream_id: str) -> bool:
        self.deleted.append(stream_id)
        return self.rows.pop(stream_id, None) is not None

    async def check(self) -> str | None:
        return None

    async def close(self) -> None:
        pass


def manager(registry: MemoryRegistry) -> StreamManager:
    settings = load_settings(demo=False)
    guard = SourceGuard.from_settings(settings)
    return StreamManager(settings, asyncio.get_running_loop(), registry, guard)


async def test_apply_config_starts_new_stops_gone_restarts_changed_only() -> None:
    streams = manager(MemoryRegistry())
    first = await streams.apply_config([cam("keep"), cam("change"), cam("gone")])
    assert (first.added, first.removed, first.changed) == (["change", "gone", "keep"], [], [])
    keep, change = streams.get("keep"), streams.get("change")

    second = await streams.apply_config([cam("keep"), cam("change", "new"), cam("new")])
    assert (second.added, second.removed, second.changed) == (["new"], ["gone"], ["change"])
    assert second.unchanged == 1
    assert streams.get("keep") is keep  # untouched, with its viewers
    assert streams.get("change") is not change
    assert streams.get("change").registration.url.endswith("/new")  # type: ignore[union-attr]
    assert "gone" not in streams and "new" in streams
    assert streams.get("new").managed_by == "config"  # type: ignore[union-attr]


async def test_apply_config_refuses_an_api_stream_and_changes_nothing() -> None:
    streams = manager(MemoryRegistry())
    await streams.create(cam("api"))
    await streams.apply_config([cam("mine")])
    mine = streams.get("mine")
    with pytest.raises(ConfigConflict, match="'api'"):
        await streams.apply_config([cam("api"), cam("other")])
    assert streams.get("mine") is mine and "other" not in streams
    assert streams.get("api").managed_by == "api"  # type: ignore[union-attr]


async def test_sync_follows_the_registry_and_leaves_this_nodes_own() -> None:
    registry = MemoryRegistry(cam("same"), cam("differs"), cam("dropped"))
    streams = manager(registry)
    streams.restore(await registry.open())
    await streams.apply_config([cam("config")])
    same, config = streams.get("same"), streams.get("config")

    # Another node changes the shared registry.
    registry.rows["differs"] = cam("differs", "elsewhere")
    del registry.rows["dropped"]
    registry.rows["added"] = cam("added")
    await streams.sync()

    assert sorted(s.id for s in streams.all()) == ["added", "config", "differs", "same"]
    assert streams.get("same") is same and streams.get("config") is config
    assert streams.get("differs").registration == cam("differs", "elsewhere")  # type: ignore[union-attr]


async def test_create_is_idempotent_and_refuses_another_body() -> None:
    registry = MemoryRegistry()
    streams = manager(registry)
    stream, created = await streams.create(cam("a"))
    assert created and registry.rows["a"] == cam("a")
    assert await streams.create(cam("a")) == (stream, False)
    with pytest.raises(StreamConflict):
        await streams.create(cam("a", "other"))
    assert streams.find_same(cam("b")) is stream  # the same camera under another id


async def test_create_takes_what_another_node_stored_first() -> None:
    registry = MemoryRegistry(cam("a", "theirs"))
    streams = manager(registry)
    with pytest.raises(StreamConflict):
        await streams.create(cam("a"))
    assert "a" not in streams
    stream, created = await streams.create(cam("a", "theirs"))
    assert created and stream.registration == cam("a", "theirs")


async def test_delete_removes_from_the_registry_but_not_a_config_stream() -> None:
    registry = MemoryRegistry()
    streams = manager(registry)
    await streams.create(cam("api"))
    await streams.apply_config([cam("config")])
    with pytest.raises(ManagedByConfig):
        await streams.delete("config")
    assert await streams.delete("api") and registry.deleted == ["api"]
    assert not await streams.delete("api")
    assert [s.id for s in streams.all()] == ["config"]

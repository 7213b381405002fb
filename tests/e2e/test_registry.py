"""The registry's behaviour, the same on both backends (a SQLite file, a real Redis), and
what is particular to each: durability, refusal to start empty or from foreign data."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis import Redis

from media_server.model.registration import ReconnectPolicy, Registration
from media_server.store.redis import RedisRegistry
from media_server.store.registry import Registry, StoreError
from media_server.store.sqlite import SqliteRegistry
from tests.support.redis_server import RedisServer

SPEC = Registration(
    id="cam1",
    url="rtsp://u:p@10.0.0.1/x",
    transport="udp",
    mode="transcode",
    on_demand=True,
    reconnect=ReconnectPolicy(),
)
BAD_ROW = '{"id":"x","url":"file:///etc/passwd","transport":"tcp","mode":"auto","on_demand":false}'
_prefixes = itertools.count()

#: Opens a new handle on one store (as another process would); writes a raw row into it.
Opener = Callable[[], Registry]


class Backend:
    def __init__(self, opener: Opener, write_raw: Callable[[str, str], None]) -> None:
        self.open = opener
        self.write_raw = write_raw


@pytest.fixture(params=["sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "registry.sqlite3"

        def write_sqlite(stream_id: str, row: str) -> None:
            db = sqlite3.connect(path)
            db.execute("INSERT INTO streams VALUES (?, ?, 0)", (stream_id, row))
            db.commit()
            db.close()

        yield Backend(lambda: SqliteRegistry(path), write_sqlite)
        return
    server: RedisServer = request.getfixturevalue("redis")
    prefix = f"test{next(_prefixes)}:"
    client = Redis.from_url(server.url)

    def write_redis(stream_id: str, row: str) -> None:
        client.hset(f"{prefix}streams", stream_id, row)

    yield Backend(lambda: RedisRegistry(server.url, prefix, "node-a"), write_redis)
    client.close()


async def test_round_trip(backend: Backend) -> None:
    store = backend.open()
    assert await store.open() == []
    assert await store.add(SPEC) is None
    assert await store.add(Registration(id="cam2", url="rtsp://h/y")) is None
    # Taken: the stored registration is kept and returned, not replaced or duplicated.
    assert await store.add(Registration(id="cam2", url="rtsp://h/z")) == Registration(
        id="cam2", url="rtsp://h/y"
    )
    assert await store.check() is None
    await store.close()

    again = backend.open()
    assert await again.open() == [SPEC, Registration(id="cam2", url="rtsp://h/y")]
    assert await again.delete("cam1") is True
    assert await again.delete("cam1") is False
    assert await again.load() == [Registration(id="cam2", url="rtsp://h/y")]
    await again.close()


async def test_write_is_visible_to_another_handle_at_once(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    await first.open()
    await second.open()
    await first.add(SPEC)
    assert await second.load() == [SPEC]  # as after kill -9 of the first: nothing pending
    await first.close()
    await second.close()


async def test_concurrent_adds_of_one_id_have_one_winner(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    await first.open()
    await second.open()
    a, b = Registration(id="cam", url="rtsp://h/a"), Registration(id="cam", url="rtsp://h/b")
    results = await asyncio.gather(first.add(a), second.add(b))
    assert results.count(None) == 1, results
    winner = a if results[0] is None else b
    assert [r for r in results if r is not None] == [winner]
    assert await first.load() == [winner]
    await first.close()
    await second.close()


async def test_row_the_api_would_refuse_is_an_error(backend: Backend) -> None:
    store = backend.open()
    await store.open()
    backend.write_raw("x", BAD_ROW)
    await store.close()
    with pytest.raises(StoreError, match="bad url"):
        await backend.open().open()


async def test_unreachable_redis_is_an_error() -> None:
    from tests.support.rtsp import free_port

    store = RedisRegistry(f"redis://:secret@127.0.0.1:{free_port()}/0", "x:", "node-a")
    with pytest.raises(StoreError, match="unreachable") as caught:
        await store.open()
    assert "secret" not in str(caught.value)  # the password is never shown
    assert "secret" not in store.location
    assert await store.check() is not None
    await store.close()


async def test_sqlite_file_is_private_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "registry.sqlite3"
    store = SqliteRegistry(path)
    await store.open()
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds camera credentials
    await store.add(SPEC)
    # Read through another connection while the first is still open (as after kill -9).
    db = sqlite3.connect(path)
    assert db.execute("SELECT id FROM streams").fetchall() == [("cam1",)]
    db.close()
    await store.close()


async def test_unreadable_store_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="unreadable"):
        await SqliteRegistry(path).open()
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(StoreError, match="unreadable"):
        await SqliteRegistry(directory).open()


async def test_foreign_schema_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=7")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 7"):
        await SqliteRegistry(path).open()


async def test_memory_store_keeps_nothing() -> None:
    assert await SqliteRegistry(Path(":memory:")).open() == []

"""The SQLite registry on a real file: round trips, atomic replacement, refusal to start empty."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from media_server.config import ReconnectPolicy
from media_server.hub.stream import StreamSpec
from media_server.store.registry import StoreError
from media_server.store.sqlite import SqliteRegistry

SPEC = StreamSpec("cam1", "rtsp://u:p@10.0.0.1/x", "udp", "transcode", True, ReconnectPolicy())


async def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "registry.sqlite3"
    store = SqliteRegistry(path)
    assert store.open() == []
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds camera credentials
    await store.put(SPEC)
    await store.put(StreamSpec("cam2", "rtsp://h/y"))
    await store.put(StreamSpec("cam2", "rtsp://h/z"))  # replaced, not duplicated
    assert await store.check() is None
    await store.close()

    again = SqliteRegistry(path)
    specs = again.open()
    assert specs == [SPEC, StreamSpec("cam2", "rtsp://h/z")]
    await again.delete("cam1")
    assert await again.load() == [StreamSpec("cam2", "rtsp://h/z")]
    await again.close()


async def test_write_is_durable_without_close(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    store = SqliteRegistry(path)
    store.open()
    await store.put(SPEC)
    # Read through another connection while the first is still open (as after kill -9).
    db = sqlite3.connect(path)
    assert db.execute("SELECT id FROM streams").fetchall() == [("cam1",)]
    db.close()
    await store.close()


def test_unreadable_store_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="unreadable"):
        SqliteRegistry(path).open()
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(StoreError, match="unreadable"):
        SqliteRegistry(directory).open()


def test_foreign_schema_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=7")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 7"):
        SqliteRegistry(path).open()


def test_memory_store_keeps_nothing() -> None:
    assert SqliteRegistry(Path(":memory:")).open() == []


def test_row_the_api_would_refuse_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    store = SqliteRegistry(path)
    store.open()
    db = sqlite3.connect(path)
    row = '{"id":"x","url":"file:///etc/passwd","transport":"tcp","mode":"auto","on_demand":false}'
    db.execute("INSERT INTO streams VALUES ('x', ?, 0)", (row,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="bad url"):
        SqliteRegistry(path).open()

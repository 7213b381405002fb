"""SQLite registry: one row per stream, written in a transaction that is synced to disk.

WAL mode with `synchronous=FULL` makes each acknowledged write durable against `kill -9`
and power loss, and every write is a single atomic transaction. All access goes through
one worker thread, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from media_server.model.registration import Registration
from media_server.store.registry import StoreError, decode, encode

SCHEMA_VERSION = 1
T = TypeVar("T")


class SqliteRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="registry")

    @property
    def location(self) -> str:
        return str(self.path)

    async def open(self) -> list[Registration]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    def _open(self) -> list[Registration]:
        memory = str(self.path) == ":memory:"
        try:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self.path.exists():
                    # The store holds camera credentials: readable by the owner only.
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5
            )
            self._db = db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            check = db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise StoreError(f"integrity check failed: {check[0] if check else 'no answer'}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS streams ("
                    " id TEXT PRIMARY KEY, spec TEXT NOT NULL, updated_at REAL NOT NULL)"
                )
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StoreError(f"schema version {version} is not {SCHEMA_VERSION}")
            rows = db.execute("SELECT spec FROM streams ORDER BY rowid").fetchall()
        except (sqlite3.Error, OSError) as exc:
            self._close_now()
            raise StoreError(f"registry store {self.path} is unreadable: {exc}") from None
        except StoreError as exc:
            self._close_now()
            raise StoreError(f"registry store {self.path} is unusable: {exc}") from None
        try:
            return [decode(row[0]) for row in rows]
        except StoreError as exc:
            self._close_now()
            raise StoreError(f"registry store {self.path}: {exc}") from None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise StoreError("registry store is closed")

        def call() -> T:
            try:
                return fn(db)
            except sqlite3.Error as exc:
                raise StoreError(f"registry store {self.path}: {exc}") from None

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def load(self) -> list[Registration]:
        rows = await self._run(lambda db: db.execute("SELECT spec FROM streams").fetchall())
        return [decode(row[0]) for row in rows]

    async def add(self, registration: Registration) -> Registration | None:
        row = (registration.id, encode(registration), time.time())

        def insert(db: sqlite3.Connection) -> str | None:
            cursor = db.execute(
                "INSERT INTO streams (id, spec, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(id) DO NOTHING",
                row,
            )
            if cursor.rowcount:
                return None
            found = db.execute("SELECT spec FROM streams WHERE id=?", (registration.id,)).fetchone()
            return str(found[0])

        stored = await self._run(insert)
        return decode(stored) if stored is not None else None

    async def delete(self, stream_id: str) -> bool:
        cursor = await self._run(
            lambda db: db.execute("DELETE FROM streams WHERE id=?", (stream_id,))
        )
        return cursor.rowcount > 0

    async def check(self) -> str | None:
        try:
            await self._run(lambda db: db.execute("SELECT count(*) FROM streams").fetchone())
        except StoreError as exc:
            return str(exc)
        return None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_now)
        self._executor.shutdown(wait=False)

    def _close_now(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

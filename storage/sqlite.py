"""SQLite behind the store: one file (WAL), one connection per process, BEGIN IMMEDIATE.

All work on the one connection is serialised by an asyncio lock, because two coroutines'
statements on one connection would mix their transactions. Other connections (another
process) are kept out by BEGIN IMMEDIATE plus the busy timeout.

Privacy: the file is created readable by its owner only (SQLite gives its -wal and -shm the
same mode); every connection has secure_delete on, so deleted rows are overwritten with
zeros, and after a /forget the WAL is checkpointed and truncated, so the old copies of the
pages it held are gone from disk too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import URL, Connection, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import StaticPool

from engine.errors import StorageError
from storage import migrations
from storage.database import Database, causes
from storage.presence import OwnerFiles
from storage.target import DatabaseTarget

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000

# Primary SQLite result codes (extended codes keep these in their low byte).
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_SQLITE_IOERR, _SQLITE_CANTOPEN, _SQLITE_READONLY, _SQLITE_FULL = 10, 14, 8, 13


class SqliteDatabase(Database):
    name: ClassVar = "sqlite"
    insert: ClassVar = staticmethod(sqlite_insert)

    def __init__(self, *args: Any, owners: OwnerFiles | None = None) -> None:
        super().__init__(*args)
        self._lock = asyncio.Lock()
        # None for an in-memory database: it is this store's alone.
        self._owners = owners
        self._owner = ""

    @classmethod
    async def open(cls, target: DatabaseTarget, busy_timeout_ms: int) -> SqliteDatabase:
        name = target.location
        if not target.in_memory:
            name = await asyncio.to_thread(_prepare_folder, Path(name))
            try:
                # With the standard library first: a plain open turns the common failures
                # (a directory, no permission, not a database, locked) into a clean error
                # before any async driver thread exists, and writes nothing to a bad file.
                await asyncio.to_thread(_preflight, name, busy_timeout_ms)
            except sqlite3.Error as error:
                raise translate(error, name) from error
        # One connection, kept: the lock below serialises its use (and ":memory:" lives
        # only as long as its connection).
        engine = create_async_engine(
            URL.create("sqlite+aiosqlite", database=name),
            poolclass=StaticPool,
            connect_args={"timeout": busy_timeout_ms / 1000},
        )
        event.listen(engine.sync_engine, "connect", _on_connect)
        event.listen(engine.sync_engine, "begin", _on_begin)
        owners = None if target.in_memory else OwnerFiles(Path(f"{name}-owners"))
        return cls(engine, name, owners=owners)

    @asynccontextmanager
    async def transaction(self, write: bool) -> AsyncIterator[AsyncConnection]:
        async with self._lock, super().transaction(write) as conn:
            yield conn

    @asynccontextmanager
    async def migration(self) -> AsyncIterator[AsyncConnection]:
        # Batch mode changes a table by copying it, dropping the original and renaming the
        # copy; with foreign keys on, dropping a parent (users) would delete every row that
        # refers to it (ON DELETE CASCADE). SQLite's own recipe for such changes: foreign keys
        # off around the transaction (they cannot change inside one), and a check of them
        # before it commits.
        async with self._lock, self.engine.connect() as conn:
            await conn.run_sync(_set_foreign_keys, False)
            try:
                await conn.execution_options(write=True)
                async with conn.begin():
                    yield conn
                    broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).first()
                    if broken is not None:
                        raise StorageError(
                            f"the schema upgrade of {self.shown} would leave rows of the table "
                            f"{broken[0]} pointing at nothing; it was rolled back"
                        )
            finally:
                await conn.run_sync(_set_foreign_keys, True)

    async def lock_schema(self, conn: AsyncConnection) -> None:
        pass  # BEGIN IMMEDIATE already holds the write lock

    async def announce(self, owner: str) -> None:
        self._owner = owner
        if self._owners is not None:
            try:
                await asyncio.to_thread(self._owners.hold, owner)
            except OSError as error:
                raise StorageError(
                    f"cannot write the owner files next to the database {self.shown}: {error}"
                ) from error

    async def owner_gone(self, conn: AsyncConnection, owner: str) -> bool:
        if self._owners is None:
            return owner != self._owner
        return await asyncio.to_thread(self._owners.gone, owner)

    async def scrub(self) -> None:
        # Outside a transaction: a checkpoint cannot run inside one. TRUNCATE copies the WAL
        # into the file (where secure_delete already zeroed the deleted rows) and empties it;
        # another process reading at that moment keeps it from finishing (it says so).
        async with self._lock, self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            busy, *_ = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
        if busy:
            log.warning("the database's WAL could not be emptied now (another process is "
                        "reading it); it will be overwritten as the bot goes on")  # fmt: skip

    def translate(self, error: BaseException) -> StorageError:
        for cause in causes(error):
            if isinstance(cause, sqlite3.Error):
                return translate(cause, self.shown)
        return StorageError(f"database error on {self.shown}: {type(error).__name__}")

    async def close(self) -> None:
        async with self._lock:  # a transaction in flight finishes first
            await super().close()
        if self._owners is not None:
            self._owners.release()


def _on_connect(dbapi_connection: Any, record: Any) -> None:
    # The sqlite3 module must not open transactions behind our back: _on_begin does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    # Deleted content is overwritten, not just unlinked: /forget must leave no text behind.
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.close()


def _set_foreign_keys(conn: Connection, on: bool) -> None:
    # On the driver's connection, outside any transaction: SQLAlchemy would begin one first.
    cursor = conn.connection.cursor()
    cursor.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
    cursor.close()


def _on_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front, so another process's writer waits for it
    # (busy timeout) instead of failing later when upgrading a read lock.
    write = conn.get_execution_options().get("write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _prepare_folder(path: Path) -> str:
    """The database file's full name, its folder created if needed, and the file itself
    created (empty: SQLite reads that as a new database) readable by its owner only."""
    file = path.expanduser()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the database folder {file.parent}: {exc}") from exc
    try:
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _warn_if_shared(file)
    except OSError:
        pass  # a folder, no permission…: the preflight open reports it clearly
    return str(file)


def _warn_if_shared(file: Path) -> None:
    # An existing file's mode is the owner's choice (a group may be meant to read it): said,
    # not changed.
    try:
        mode = file.stat().st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) and mode & 0o077:
        log.warning("the database file %s can be read by other users (mode %03o): it holds "
                    "conversations; chmod 600 it", file, stat.S_IMODE(mode))  # fmt: skip


def _preflight(name: str, busy_timeout_ms: int) -> None:
    conn = sqlite3.connect(name, timeout=busy_timeout_ms / 1000, isolation_level=None)
    try:
        # Reading the header first makes a non-database file fail here, before we ask
        # SQLite to write anything (such as the WAL switch) next to it; a database of a newer
        # bot is refused here too, untouched.
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        revisions: tuple[str, ...] = ()
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone():
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            revisions = tuple(row[0] for row in rows)
        migrations.check(migrations.SchemaState(revisions, version), name)
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def translate(exc: sqlite3.Error, path: str) -> StorageError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text or "busy" in text:
        message = f"the database is locked by another process: {path}"
    elif (
        primary in (_SQLITE_NOTADB, _SQLITE_CORRUPT)
        or "not a database" in text
        or ("malformed" in text)
    ):
        message = f"the database file is unreadable or corrupt: {path}"
    elif primary == _SQLITE_IOERR or "disk i/o" in text:
        message = f"a disk I/O error happened while using the database: {path}"
    elif primary == _SQLITE_FULL or "full" in text:
        message = f"the disk is full, the database cannot grow: {path}"
    elif primary == _SQLITE_READONLY or "readonly" in text:
        message = f"the database file is read-only: {path}"
    elif primary == _SQLITE_CANTOPEN or "unable to open" in text:
        message = f"cannot open the database file: {path}"
    elif isinstance(exc, sqlite3.IntegrityError):
        message = f"the database refused to store invalid data ({exc})"
    else:
        message = f"database error on {path}: {exc}"
    return StorageError(message)

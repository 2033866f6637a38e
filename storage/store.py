"""SQLite implementation of core.ports.MoodStore on top of aiosqlite."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from core.errors import StorageError
from core.types import MoodEvent, Turn, UserKey
from storage.migrations import MIGRATIONS, SCHEMA_VERSION, split_statements

DEFAULT_BUSY_TIMEOUT_MS = 5000

# Primary SQLite result codes (extended codes keep these in their low byte).
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_SQLITE_IOERR, _SQLITE_CANTOPEN, _SQLITE_READONLY, _SQLITE_FULL = 10, 14, 8, 13


class SqliteMoodStore:
    """One SQLite file (WAL) holding users, their mood events and conversation turns.

    All work on the single connection is serialised by an asyncio lock, because interleaving
    two coroutines' statements on one connection would mix their transactions. Other
    connections (another store or process) are kept out by BEGIN IMMEDIATE plus busy_timeout.
    """

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    ) -> SqliteMoodStore:
        """Open (creating if needed) and migrate the database; raises StorageError on failure."""
        name = str(path)
        if name != ":memory:":
            name = await asyncio.to_thread(_prepare_folder, Path(path))
        try:
            # aiosqlite does not wait for its worker thread when connecting fails, and that
            # thread may later report into a closed event loop; a plain open first turns the
            # common failures (a directory, no permission) into a clean error.
            await asyncio.to_thread(_probe_open, name)
            # isolation_level=None: the sqlite3 module must not open transactions behind our
            # back; every write below says BEGIN IMMEDIATE itself.
            conn = await aiosqlite.connect(
                name, isolation_level=None, timeout=busy_timeout_ms / 1000
            )
        except sqlite3.Error as exc:
            raise _translate(exc, name) from exc
        store = cls(conn, name)
        try:
            await store._setup(busy_timeout_ms)
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        # Under the lock, so a transaction in flight finishes instead of losing its connection.
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.close()

    # --- MoodStore --------------------------------------------------------------------------

    async def record_exchange(self, event: MoodEvent, turns: Sequence[Turn]) -> None:
        created_at = _to_text(event.created_at)
        async with self._transaction() as conn:
            user_id = await _upsert_user(conn, event.platform, event.user_id, created_at)
            await conn.execute(
                "INSERT INTO mood_events (user_id, chat_id, label, p_positive, created_at, excerpt)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, event.chat_id, event.label, event.p_positive, created_at, event.excerpt),
            )
            await conn.executemany(
                "INSERT INTO turns (user_id, chat_id, role, content, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(user_id, event.chat_id, t.role, t.content, created_at) for t in turns],
            )

    async def recent_turns(
        self, user: UserKey, chat_id: str, limit: int, step: int = 1
    ) -> list[Turn]:
        if limit <= 0:
            return []
        # The window starts at a multiple of `step` turns into the chat: the first of the last
        # `limit` turns, rounded up to the next such position.
        # A user turn's label is its message's mood event, which record_exchange writes with
        # the same user, chat and timestamp. A subquery rather than a join: two events at one
        # instant (only ever seen in tests) must not duplicate the turn.
        rows = await self._fetchall(
            "WITH chat AS (SELECT t.*,"
            " ROW_NUMBER() OVER (ORDER BY t.created_at, t.id) - 1 AS position,"
            " COUNT(*) OVER () AS total FROM turns t"
            " WHERE t.user_id = (SELECT id FROM users WHERE platform = ? AND platform_user_id = ?)"
            " AND t.chat_id = ?)"
            " SELECT c.role, c.content, CASE WHEN c.role = 'user' THEN"
            " (SELECT e.label FROM mood_events e WHERE e.user_id = c.user_id"
            " AND e.chat_id = c.chat_id AND e.created_at = c.created_at"
            " ORDER BY e.id DESC LIMIT 1) END FROM chat c"
            " WHERE c.position >= (MAX(c.total - ?, 0) + ? - 1) / ? * ?"
            " ORDER BY c.position",
            (user.platform, user.user_id, chat_id, limit, step, step, step),
        )
        return [Turn(role, content, label) for role, content, label in rows]

    async def mood_events(
        self, user: UserKey, since: datetime, until: datetime | None = None
    ) -> list[MoodEvent]:
        sql = (
            "SELECT e.chat_id, e.label, e.p_positive, e.created_at, e.excerpt"
            " FROM mood_events e JOIN users u ON u.id = e.user_id"
            " WHERE u.platform = ? AND u.platform_user_id = ? AND e.created_at >= ?"
        )
        params: list[object] = [user.platform, user.user_id, _to_text(since)]
        if until is not None:
            sql += " AND e.created_at < ?"
            params.append(_to_text(until))
        rows = await self._fetchall(sql + " ORDER BY e.created_at, e.id", params)
        return [
            MoodEvent(
                user.platform, user.user_id, chat_id, label, p_positive, _from_text(at), excerpt
            )
            for chat_id, label, p_positive, at, excerpt in rows
        ]

    async def clear_turns(self, user: UserKey, chat_id: str) -> int:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM turns WHERE chat_id = ? AND user_id ="
                " (SELECT id FROM users WHERE platform = ? AND platform_user_id = ?)",
                (chat_id, user.platform, user.user_id),
            )
            return cursor.rowcount

    async def forget_user(self, user: UserKey) -> int:
        # Children are deleted explicitly rather than by ON DELETE CASCADE, because cascaded
        # rows are not included in the changes count we must return.
        deleted = 0
        async with self._transaction() as conn:
            for table in ("turns", "mood_events"):  # our own names: identifiers can't be bound
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE user_id ="
                    " (SELECT id FROM users WHERE platform = ? AND platform_user_id = ?)",
                    (user.platform, user.user_id),
                )
                deleted += cursor.rowcount
            cursor = await conn.execute(
                "DELETE FROM users WHERE platform = ? AND platform_user_id = ?",
                (user.platform, user.user_id),
            )
            return deleted + cursor.rowcount

    # --- internals --------------------------------------------------------------------------

    async def _setup(self, busy_timeout_ms: int) -> None:
        async with self._guard() as conn:
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await conn.execute("PRAGMA foreign_keys = ON")
            # Reading the header first makes a non-database file fail here, before we ask
            # SQLite to write anything (such as the WAL switch) next to it.
            version = await _user_version(conn)
            _check_version(version, self._path)
            await conn.execute("PRAGMA journal_mode = WAL")
        if version < SCHEMA_VERSION:
            await self._migrate()

    async def _migrate(self) -> None:
        async with self._transaction() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = await _user_version(conn)
            _check_version(version, self._path)
            for script in MIGRATIONS[version:]:
                for statement in split_statements(script):
                    await conn.execute(statement)
            # PRAGMA takes no parameters; the value is our own integer constant.
            await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def _fetchall(self, sql: str, params: Sequence[object]) -> list[tuple]:
        async with self._guard() as conn, conn.execute(sql, params) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the connection lock and turn sqlite errors into StorageError."""
        async with self._lock:
            if self._conn is None:
                raise StorageError("the mood store is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise _translate(exc, self._path) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (including cancellation)."""
        async with self._guard() as conn:
            # IMMEDIATE takes the write lock up front, so a second connection waits for it
            # (busy_timeout) instead of failing later when upgrading a read lock.
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back; the original error is what matters.
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                raise


def _prepare_folder(path: Path) -> str:
    """The database file's full name, its folder created if needed."""
    file = path.expanduser()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the database folder {file.parent}: {exc}") from exc
    return str(file)


def _probe_open(name: str) -> None:
    sqlite3.connect(name).close()


async def _upsert_user(conn: aiosqlite.Connection, platform: str, user_id: str, now: str) -> int:
    await conn.execute(
        "INSERT INTO users (platform, platform_user_id, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (platform, platform_user_id) DO NOTHING",
        (platform, user_id, now),
    )
    async with conn.execute(
        "SELECT id FROM users WHERE platform = ? AND platform_user_id = ?", (platform, user_id)
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None  # inserted or already present, inside this transaction
    return int(row[0])


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _check_version(version: int, path: str) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database {path} has schema version {version}, but this bot only knows up to "
            f"{SCHEMA_VERSION}; it was written by a newer version of the bot — upgrade the bot "
            "or point it at another file (the file was left untouched)"
        )


def _to_text(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment!r}")
    # Fixed width (always microseconds, always +00:00) so text order equals time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _translate(exc: sqlite3.Error, path: str) -> StorageError:
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

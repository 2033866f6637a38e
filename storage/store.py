"""core.ports.MoodStore on SQLAlchemy Core: one set of statements for SQLite and PostgreSQL.

Every write is one transaction; every statement is parameterised (Core binds the values).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import StorageError
from core.types import DigestSubscription, MessageKey, MoodEvent, Turn, UserKey
from storage.database import Database, check_version
from storage.migrations import MIGRATIONS, SCHEMA_VERSION, split_statements
from storage.postgres import PostgresDatabase
from storage.schema import aware, digests, inbox, mood_events, turns, users
from storage.sqlite import DEFAULT_BUSY_TIMEOUT_MS, SqliteDatabase
from storage.target import DatabaseTarget

DEFAULT_POOL_SIZE = 10


class SqlMoodStore:
    """Users, their mood events and conversation turns, and the inbox of platform messages,
    in SQLite (one file, WAL) or PostgreSQL (shared by several bot processes)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._closed = False

    @classmethod
    async def open(
        cls,
        target: DatabaseTarget | str | Path,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> SqlMoodStore:
        """Connect to (creating a SQLite file if needed) and migrate the database; a path or
        URL string is read as DATABASE_URL is. Raises StorageError on failure."""
        if isinstance(target, Path):
            target = DatabaseTarget.sqlite(target)
        elif isinstance(target, str):
            try:
                target = DatabaseTarget.parse(target)
            except ValueError as error:
                raise StorageError(f"DATABASE_URL {error}") from None
        database: Database
        if target.kind == "sqlite":
            database = await SqliteDatabase.open(target, busy_timeout_ms)
        else:
            database = await PostgresDatabase.open(target, pool_size)
        store = cls(database)
        try:
            await store._migrate()
        except BaseException:
            await database.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        return self._db.name

    @property
    def shown(self) -> str:
        """The database, for logs: the path, or the URL without its password."""
        return self._db.shown

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.close()

    # --- MoodStore: the inbox ---------------------------------------------------------------

    async def claim_message(self, key: MessageKey, user: UserKey, at: datetime) -> bool:
        insert = self._db.insert(inbox).on_conflict_do_nothing(
            index_elements=[inbox.c.platform, inbox.c.chat_id, inbox.c.message_id]
        )
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, user, at)
            result = await conn.execute(
                insert,
                {
                    "platform": key.platform,
                    "chat_id": key.chat_id,
                    "message_id": key.message_id,
                    "user_id": user_id,
                    "state": "received",
                    "received_at": aware(at),
                },
            )
            # The message text is not kept while work is pending (STORE_MESSAGE_TEXT is off
            # by default); a crash recovery that needs it would add a column here.
            return result.rowcount == 1

    async def mark_done(self, key: MessageKey, at: datetime) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                update(inbox).where(*_is(key)).values(state="done", done_at=aware(at))
            )

    # --- MoodStore: exchanges ---------------------------------------------------------------

    async def record_exchange(
        self, event: MoodEvent, turns_: Sequence[Turn], done: MessageKey | None = None
    ) -> None:
        at = aware(event.created_at)
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, UserKey(event.platform, event.user_id), at)
            await conn.execute(
                mood_events.insert(),
                {
                    "user_id": user_id,
                    "chat_id": event.chat_id,
                    "label": event.label,
                    "p_positive": event.p_positive,
                    "created_at": at,
                    "excerpt": event.excerpt,
                    "neutral": event.neutral,
                },
            )
            if turns_:
                await conn.execute(
                    turns.insert(),
                    [
                        {
                            "user_id": user_id,
                            "chat_id": event.chat_id,
                            "role": t.role,
                            "content": t.content,
                            "created_at": at,
                        }
                        for t in turns_
                    ],
                )
            if done is not None:
                await self._mark_done_in(conn, done, user_id, at)

    async def recent_turns(
        self, user: UserKey, chat_id: str, limit: int, step: int = 1
    ) -> list[Turn]:
        if limit <= 0:
            return []
        # The window starts at a multiple of `step` turns into the chat: the first of the last
        # `limit` turns, rounded up to the next such position.
        t = turns.c
        chat = (
            select(
                t.user_id,
                t.role,
                t.content,
                t.created_at,
                (func.row_number().over(order_by=(t.created_at, t.id)) - 1).label("position"),
                func.count().over().label("total"),
            )
            .where(t.user_id == _user_id_of(user), t.chat_id == chat_id)
            .subquery("chat")
        )
        c = chat.c
        first = case((c.total > limit, c.total - limit), else_=0)
        # A user turn's tone is its message's mood event, which record_exchange writes with
        # the same user, chat and timestamp. A subquery rather than a join: two events at one
        # instant (only ever seen in tests) must not duplicate the turn.
        e = mood_events.c
        tone = (
            select(case((e.neutral, "neutral"), else_=e.label))
            .where(e.user_id == c.user_id, e.chat_id == chat_id, e.created_at == c.created_at)
            .order_by(e.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = (
            select(c.role, c.content, case((c.role == "user", tone), else_=None))
            .where(c.position >= (first + (step - 1)) // step * step)
            .order_by(c.position)
        )
        return [Turn(role, content, shown) for role, content, shown in await self._fetchall(query)]

    async def mood_events(
        self, user: UserKey, since: datetime, until: datetime | None = None
    ) -> list[MoodEvent]:
        e = mood_events.c
        query = (
            select(e.chat_id, e.label, e.p_positive, e.created_at, e.excerpt, e.neutral)
            .join_from(mood_events, users, users.c.id == e.user_id)
            .where(
                users.c.platform == user.platform,
                users.c.platform_user_id == user.user_id,
                e.created_at >= aware(since),
            )
            .order_by(e.created_at, e.id)
        )
        if until is not None:
            query = query.where(e.created_at < aware(until))
        return [
            MoodEvent(
                user.platform, user.user_id, chat_id, label, p_positive, at, excerpt, bool(neutral)
            )
            for chat_id, label, p_positive, at, excerpt, neutral in await self._fetchall(query)
        ]

    async def clear_turns(self, user: UserKey, chat_id: str) -> int:
        async with self._transaction() as conn:
            result = await conn.execute(
                delete(turns).where(
                    turns.c.chat_id == chat_id, turns.c.user_id == _user_id_of(user)
                )
            )
            return result.rowcount

    async def forget_user(self, user: UserKey) -> int:
        # Children are deleted explicitly rather than by ON DELETE CASCADE, because cascaded
        # rows are not included in the count we must return.
        deleted = 0
        async with self._transaction() as conn:
            for table in (turns, mood_events, inbox, digests):
                result = await conn.execute(
                    delete(table).where(table.c.user_id == _user_id_of(user))
                )
                deleted += result.rowcount
            result = await conn.execute(
                delete(users).where(
                    users.c.platform == user.platform, users.c.platform_user_id == user.user_id
                )
            )
            return deleted + result.rowcount

    # --- MoodStore: the weekly digest's opt-ins ---------------------------------------------

    async def set_digest(self, user: UserKey, chat_id: str | None, at: datetime) -> bool:
        d = digests.c
        async with self._transaction() as conn:
            if chat_id is None:
                result = await conn.execute(delete(digests).where(d.user_id == _user_id_of(user)))
                return result.rowcount == 1
            user_id = await self._user_id(conn, user, aware(at))
            # Moving the digest to another chat keeps when it was last sent: a week is a week.
            upsert = self._db.insert(digests).on_conflict_do_update(
                index_elements=[d.user_id],
                set_={"chat_id": chat_id},
                where=d.chat_id != chat_id,
            )
            row = {"user_id": user_id, "chat_id": chat_id, "created_at": aware(at)}
            result = await conn.execute(upsert, row)
            return result.rowcount == 1

    async def digest_subscriptions(self, platform: str) -> list[DigestSubscription]:
        d, u = digests.c, users.c
        query = (
            select(u.platform_user_id, d.chat_id)
            .join_from(digests, users, u.id == d.user_id)
            .where(u.platform == platform)
            .order_by(d.created_at, d.user_id)
        )
        return [
            DigestSubscription(UserKey(platform, user_id), chat_id)
            for user_id, chat_id in await self._fetchall(query)
        ]

    async def claim_digest(self, user: UserKey, not_since: datetime, at: datetime) -> bool:
        d = digests.c
        async with self._transaction() as conn:
            # One conditional UPDATE: of several processes running the same weekly job, the
            # first to commit wins; the others find last_sent_at already in this week.
            result = await conn.execute(
                update(digests)
                .where(
                    d.user_id == _user_id_of(user),
                    (d.last_sent_at.is_(None)) | (d.last_sent_at < aware(not_since)),
                )
                .values(last_sent_at=aware(at))
            )
            return result.rowcount == 1

    @asynccontextmanager
    async def user_turn(self, user: UserKey) -> AsyncIterator[None]:
        self._check_open()
        async with self._db.user_turn(user):
            yield

    # --- internals --------------------------------------------------------------------------

    async def _migrate(self) -> None:
        async with self._transaction(write=False) as conn:
            version = await self._db.schema_version(conn)
        check_version(version, self.shown)
        if version == SCHEMA_VERSION:
            return
        async with self._transaction() as conn:
            await self._db.lock_schema(conn)
            # Read again under the lock: another process may have migrated meanwhile.
            version = await self._db.schema_version(conn)
            check_version(version, self.shown)
            for migration in MIGRATIONS[version:]:
                for statement in split_statements(migration.script(self._db.name)):
                    await conn.exec_driver_sql(statement)
            await self._db.set_schema_version(conn, SCHEMA_VERSION)

    async def _user_id(self, conn: AsyncConnection, user: UserKey, at: datetime) -> int:
        """The user's row id, the row inserted if new (inside the caller's transaction)."""
        await conn.execute(
            self._db.insert(users).on_conflict_do_nothing(
                index_elements=[users.c.platform, users.c.platform_user_id]
            ),
            {"platform": user.platform, "platform_user_id": user.user_id, "created_at": at},
        )
        # Inserted or already there; on PostgreSQL a concurrent insert by another process
        # has committed by now (ON CONFLICT waited for it), so the row is visible.
        return int((await conn.execute(select(_user_id_of(user)))).scalar_one())

    async def _mark_done_in(
        self, conn: AsyncConnection, key: MessageKey, user_id: int, at: datetime
    ) -> None:
        # An upsert: /forget may have deleted the row while the reply was being written.
        row = {
            "platform": key.platform,
            "chat_id": key.chat_id,
            "message_id": key.message_id,
            "user_id": user_id,
            "state": "done",
            "received_at": at,
            "done_at": at,
        }
        await conn.execute(
            self._db.insert(inbox).on_conflict_do_update(
                index_elements=[inbox.c.platform, inbox.c.chat_id, inbox.c.message_id],
                set_={"state": "done", "done_at": at},
            ),
            row,
        )

    async def _fetchall(self, query: Select[Any]) -> list[tuple]:
        async with self._transaction(write=False) as conn:
            result = await conn.execute(query)
            return [tuple(row) for row in result.all()]

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the mood store is closed")

    @asynccontextmanager
    async def _transaction(self, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """One transaction; database errors come out as StorageError with a clear message."""
        self._check_open()
        with self._db.translated():
            async with self._db.transaction(write) as conn:
                yield conn


def _is(key: MessageKey) -> tuple[ColumnElement[bool], ...]:
    return (
        inbox.c.platform == key.platform,
        inbox.c.chat_id == key.chat_id,
        inbox.c.message_id == key.message_id,
    )


def _user_id_of(user: UserKey) -> ScalarSelect[int]:
    """The scalar subquery for a user's row id."""
    return (
        select(users.c.id)
        .where(users.c.platform == user.platform, users.c.platform_user_id == user.user_id)
        .scalar_subquery()
    )

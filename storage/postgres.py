"""PostgreSQL behind the store (asyncpg): a pool of connections, and one more connection per
user whose message is being handled, holding that user's advisory lock.

Several bot processes may share the database. The lock keeps one user's messages in order
across them: a process waits for the user's turn before it tags the message, and the
server grants waiting turns in the order they were asked for. A process that dies loses its
connections, and with them its locks, so nobody waits for a dead process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from engine.errors import StorageError
from engine.types import UserKey
from storage.database import Database, causes
from storage.target import DatabaseTarget

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key (Python's hash() differs between processes)."""
    digest = hashlib.blake2b(":".join(("all-in-one-bot", *parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


_SCHEMA_LOCK = lock_key("schema")


class PostgresDatabase(Database):
    name: ClassVar = "postgresql"
    insert: ClassVar = staticmethod(postgres_insert)

    def __init__(self, engine: AsyncEngine, turns: AsyncEngine, shown: str, size: int) -> None:
        super().__init__(engine, shown)
        self._turns = turns
        # Bounds the connections held for users' turns; more messages wait here, in order.
        self._turn_slots = asyncio.Semaphore(size)
        self._presence: AsyncConnection | None = None  # holds this store's owner lock

    @classmethod
    async def open(cls, target: DatabaseTarget, pool_size: int) -> PostgresDatabase:
        options: dict[str, Any] = {"connect_args": {"timeout": CONNECT_TIMEOUT_S}}
        try:
            engine = create_async_engine(
                target.location, pool_size=pool_size, max_overflow=0, pool_pre_ping=True,
                **options,
            )  # fmt: skip
            # A turn's connection is opened for it and closed after (which also releases the
            # lock, whatever happened), so none is ever returned to a pool still holding one.
            turns = create_async_engine(
                target.location, poolclass=NullPool, isolation_level="AUTOCOMMIT", **options
            )
        except Exception:  # noqa: BLE001 - the parser's message would repeat the password
            raise StorageError(
                f"DATABASE_URL is not a PostgreSQL URL the driver understands: {target.shown}"
            ) from None
        database = cls(engine, turns, target.shown, pool_size)
        try:
            with database.translated():
                async with engine.connect() as conn:  # a server down or a wrong password: here
                    await conn.execute(select(1))
        except BaseException:
            await database.close()
            raise
        return database

    async def lock_schema(self, conn: AsyncConnection) -> None:
        # Two processes starting at once: the second waits here, then finds nothing to do.
        await conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))

    @asynccontextmanager
    async def user_turn(self, user: UserKey) -> AsyncIterator[None]:
        key = lock_key("user", user.platform, user.user_id)
        async with self._turn_slots:
            with self.translated():
                conn = await self._turns.connect()
            try:
                with self.translated():
                    await conn.execute(select(func.pg_advisory_lock(key)))
                yield
            finally:
                # Shielded: a second cancellation (a stopping adapter insists) must not leave
                # the connection, and the user's lock on it, open.
                await asyncio.shield(self._release(conn, key))

    async def announce(self, owner: str) -> None:
        # Its own connection, never returned to a pool: the lock lasts as long as it does.
        with self.translated():
            conn = await self._turns.connect()
            try:
                await conn.execute(select(func.pg_advisory_lock(lock_key("owner", owner))))
            except BaseException:
                await conn.close()
                raise
        self._presence = conn

    async def owner_gone(self, conn: AsyncConnection, owner: str) -> bool:
        # Taken only when nobody holds it; released when the caller's transaction ends.
        key = lock_key("owner", owner)
        return bool(await conn.scalar(select(func.pg_try_advisory_xact_lock(key))))

    async def _release(self, conn: AsyncConnection, key: int) -> None:
        try:
            await conn.execute(select(func.pg_advisory_unlock(key)))
        except Exception as error:  # noqa: BLE001 - closing the connection releases it anyway
            log.warning("releasing a user's turn failed: %s", self.translate(error))
        finally:
            await conn.close()

    def translate(self, error: BaseException) -> StorageError:
        where = f"the PostgreSQL database of DATABASE_URL ({self.shown})"
        for cause in causes(error):
            state = getattr(cause, "sqlstate", None)
            if isinstance(state, str) and state:
                return StorageError(_by_state(state, where, _first_line(cause)))
        for cause in causes(error):
            if isinstance(cause, OSError):
                reason = _first_line(cause) or type(cause).__name__
                return StorageError(f"cannot reach {where}: {reason}")
        return StorageError(f"{where} failed: {type(error).__name__}: {_first_line(error)}")

    async def close(self) -> None:
        presence, self._presence = self._presence, None
        if presence is not None:
            with contextlib.suppress(Exception):
                await presence.close()
        await super().close()
        await self._turns.dispose()


def _by_state(state: str, where: str, detail: str) -> str:
    if state in ("28P01", "28000"):
        return f"{where} refused the login: wrong user name or password ({detail})"
    if state == "3D000":
        return f"{where} does not exist: create it first ({detail})"
    if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
        return f"lost the connection to {where}, or it is shutting down ({detail})"
    if state == "53300":
        return f"{where} has no connection slot free: too many clients ({detail})"
    if state.startswith("53"):
        return f"{where} is out of disk space or memory ({detail})"
    if state in ("40001", "40P01", "55P03"):
        return f"{where} is busy: the change collided with another process's, try again"
    if state.startswith("23"):
        return f"{where} refused to store invalid data ({detail})"
    return f"{where} failed with SQLSTATE {state} ({detail})"


def _first_line(error: BaseException) -> str:
    # Only the driver's own message: SQLAlchemy's text would add the SQL and its values.
    message = str(error).strip().splitlines()
    return message[0] if message else ""

"""PostgreSQL behind the store (asyncpg): a pool of connections, and one more connection per
user whose message is being handled, holding that user's advisory lock.

Several bot processes may share the database. The lock makes one process at a time answer a
user's messages; the chat service's check for the user's earlier unfinished messages keeps
them in the order they were sent. A process that dies loses its connections, and with them
its locks, so nobody waits for a dead process.

A server that hangs or goes away must not hold the bot up: every statement has a timeout
(asyncpg's command_timeout, and the server's statement_timeout as a second line), connecting
has one, and the server is asked to probe idle connections (TCP keepalives), so that a bot
host that vanished loses its locks in about a minute, not hours. The presence lock is
re-taken when its connection was lost (a server restart), so that other processes do not go
on treating this live one as dead.
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
from storage.config import PostgresOptions
from storage.database import Database, causes
from storage.target import DatabaseTarget

log = logging.getLogger(__name__)

# How often a user's turn, held by another process, is asked for again.
TURN_POLL_S = 0.2


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key (Python's hash() differs between processes)."""
    digest = hashlib.blake2b(":".join(("all-in-one-bot", *parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


_SCHEMA_LOCK = lock_key("schema")


class PostgresDatabase(Database):
    name: ClassVar = "postgresql"
    insert: ClassVar = staticmethod(postgres_insert)

    def __init__(
        self,
        engine: AsyncEngine,
        turns: AsyncEngine,
        shown: str,
        size: int,
        options: PostgresOptions | None = None,
    ) -> None:
        super().__init__(engine, shown)
        self._turns = turns
        self._options = options or PostgresOptions()
        # Bounds the connections held for users' turns; more messages wait here, in order.
        self._turn_slots = asyncio.Semaphore(size)
        self._presence: AsyncConnection | None = None  # holds this store's owner lock
        self._presence_watch: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, target: DatabaseTarget, pool_size: int, settings: PostgresOptions | None = None
    ) -> PostgresDatabase:
        settings = settings or PostgresOptions()
        options: dict[str, Any] = {"connect_args": settings.connect_args()}
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
        database = cls(engine, turns, target.shown, pool_size, settings)
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
                # Asked again until free rather than waited for in the server: each statement
                # stays short, so a hung server is noticed by the statement timeout (the
                # order of a user's messages is kept by the chat service, not by this lock).
                with self.translated():
                    while not await conn.scalar(select(func.pg_try_advisory_lock(key))):  # noqa: ASYNC110 - another process's lock
                        await asyncio.sleep(TURN_POLL_S)
                yield
            finally:
                # Shielded: a second cancellation (a stopping adapter insists) must not leave
                # the connection, and the user's lock on it, open.
                await asyncio.shield(self._release(conn, key))

    async def announce(self, owner: str) -> None:
        await self._hold_presence(owner)
        self._presence_watch = asyncio.create_task(
            self._watch_presence(owner), name="presence-lock"
        )

    async def _hold_presence(self, owner: str) -> None:
        # Its own connection, never returned to a pool: the lock lasts as long as it does.
        with self.translated():
            conn = await self._turns.connect()
            try:
                await conn.execute(select(func.pg_advisory_lock(lock_key("owner", owner))))
            except BaseException:
                await conn.close()
                raise
        self._presence = conn

    async def _watch_presence(self, owner: str) -> None:
        """Check the presence lock's connection every few seconds; once it is lost (the
        server restarted, the network dropped it), connect again and take the lock again."""
        while True:
            await asyncio.sleep(self._options.presence_check_s)
            conn = self._presence
            if conn is not None:
                try:
                    with self.translated():
                        await conn.execute(select(1))
                    continue
                except StorageError as error:
                    log.warning("lost the presence lock's connection (%s): taking it again",
                                error)  # fmt: skip
                    self._presence = None
                    with contextlib.suppress(Exception):
                        await conn.invalidate()
            try:
                await self._hold_presence(owner)
            except StorageError as error:
                log.warning("could not take the presence lock again yet: %s", error)
            else:
                log.info("presence lock taken again")

    async def owner_gone(self, conn: AsyncConnection, owner: str) -> bool:
        # A shared lock: taken only when its owner does not hold it (exclusively), while any
        # number of processes and transactions may ask at once (an exclusive try would make
        # two of them asking together see each other as the owner). Released at the end of
        # the caller's transaction.
        key = lock_key("owner", owner)
        return bool(await conn.scalar(select(func.pg_try_advisory_xact_lock_shared(key))))

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
        watch, self._presence_watch = self._presence_watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
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

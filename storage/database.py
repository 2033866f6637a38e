"""What differs between the two databases behind the store, behind one small interface:
how to connect, how a schema upgrade is held apart, how errors read, how a user's turn is held.
"""

from __future__ import annotations

import contextlib
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar, Literal

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.errors import StorageError
from engine.types import UserKey

Dialect = Literal["sqlite", "postgresql"]


class Database(ABC):
    name: ClassVar[Dialect]
    # The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update.
    insert: ClassVar[Callable[..., Any]]

    def __init__(self, engine: AsyncEngine, shown: str) -> None:
        self.engine = engine
        self.shown = shown  # the path, or the URL without its password
        # Same pool; the option tells SQLite's BEGIN hook to take the write lock up front.
        self._writer = engine.execution_options(write=True)

    @asynccontextmanager
    async def transaction(self, write: bool) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed at the end, rolled back on any error (or cancellation).
        Errors come out as they are: the store translates them."""
        async with (self._writer if write else self.engine).begin() as conn:
            yield conn

    def migration(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """The transaction a schema upgrade runs in (storage/migrations.py)."""
        return self.transaction(write=True)

    @abstractmethod
    async def lock_schema(self, conn: AsyncConnection) -> None:
        """First in the migration transaction: keep other processes out until it commits."""

    @abstractmethod
    def translate(self, error: BaseException) -> StorageError:
        """A clear message for the user and the log: never the SQL, its values or a password."""

    def user_turn(self, user: UserKey) -> AbstractAsyncContextManager[None]:
        """Held while one of the user's messages is handled, so that other processes sharing
        the database wait; a database used by one process needs nothing."""
        return contextlib.nullcontext()

    @abstractmethod
    async def announce(self, owner: str) -> None:
        """Show that `owner` (this store) lives, for as long as the database is open; see
        storage/presence.py."""

    @abstractmethod
    async def owner_gone(self, conn: AsyncConnection, owner: str) -> bool:
        """Whether the process that was `owner` has ended (inside the caller's transaction)."""

    async def scrub(self) -> None:
        """After a deletion: leave no copy of the deleted rows behind where the database can
        do so (SQLite's WAL); PostgreSQL's dead rows go at its next (auto)vacuum."""
        return None

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except DATABASE_ERRORS as error:
            raise self.translate(error) from error

    async def close(self) -> None:
        await self.engine.dispose()


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error, the driver's error SQLAlchemy wraps, and what caused each."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None, current.__cause__]


# OSError: a server that cannot be reached (TimeoutError included); asyncpg raises some of
# its errors outside the DBAPI classes SQLAlchemy wraps.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    sqlite3.Error,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

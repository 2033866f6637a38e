"""PostgreSQL going away under a running store: a server restart, a server that hangs.

Each test runs its own throwaway cluster (it is stopped and started again, which the
session's shared one must not be)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from engine.errors import StorageError
from engine.types import IncomingMessage, MessageKey, UserKey
from storage.config import PostgresOptions
from storage.store import SqlMoodStore
from tests.postgres import PostgresCluster, find_bindir, postgres_cluster
from tests.storage.test_storage import ALICE, T0

pytestmark = pytest.mark.asyncio

KEY = MessageKey("telegram", "chat-1", "100")
MESSAGE = IncomingMessage("telegram", "42", "chat-1", "so tired today", "100")
QUICK = PostgresOptions(statement_timeout_s=1.0, connect_timeout_s=2.0, presence_check_s=0.2)


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    with postgres_cluster() as own:
        yield own


async def held_owner_locks(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
        )
    finally:
        await conn.close()


async def test_the_presence_lock_is_taken_again_after_a_server_restart(
    cluster: PostgresCluster,
) -> None:
    url = cluster.new_database()
    owner = await SqlMoodStore.open(url, postgres=QUICK)
    other = await SqlMoodStore.open(url, postgres=QUICK)
    try:
        assert await owner.claim_message(KEY, ALICE, T0, MESSAGE)
        cluster.shut_down()
        cluster.start_again()
        # Both stores take their presence locks again within a few checks.
        deadline = time.monotonic() + 30
        while await held_owner_locks(url) < 2:
            assert time.monotonic() < deadline, "the presence locks were not taken again"
            await asyncio.sleep(0.1)
        # So the owner, alive all along, is not taken for dead: its message stays its own.
        assert await other.unfinished("telegram") == []
        assert await other.take_message(KEY) is None
        assert await owner.take_message(KEY) == 0
    finally:
        await owner.close()
        await other.close()


async def test_a_hung_server_gives_a_clear_error_not_a_hang(cluster: PostgresCluster) -> None:
    url = cluster.new_database()
    store = await SqlMoodStore.open(url, postgres=QUICK)
    blocker = await asyncpg.connect(url)
    try:
        # Stands for a server that does not answer: every statement on the inbox blocks.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE inbox IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StorageError, match="PostgreSQL"):
            await asyncio.wait_for(store.claim_message(KEY, ALICE, T0, MESSAGE), 20)
        await transaction.rollback()
        # The store goes on once the server answers again.
        assert await store.claim_message(KEY, ALICE, T0, MESSAGE)
    finally:
        await blocker.close()
        await store.close()


async def test_a_stopped_server_gives_a_clear_error_and_the_store_recovers(
    cluster: PostgresCluster,
) -> None:
    url = cluster.new_database()
    store = await SqlMoodStore.open(url, postgres=QUICK)
    try:
        cluster.shut_down()
        with pytest.raises(StorageError, match="PostgreSQL") as raised:
            await asyncio.wait_for(store.claim_message(KEY, ALICE, T0, MESSAGE), 20)
        assert cluster.password not in str(raised.value)
        with pytest.raises(StorageError):
            await asyncio.wait_for(store.user_turn(UserKey("telegram", "42")).__aenter__(), 20)
        cluster.start_again()
        assert await store.claim_message(KEY, ALICE, T0, MESSAGE)
        async with store.user_turn(UserKey("telegram", "42")):
            assert await store.take_message(KEY) == 0
    finally:
        await store.close()

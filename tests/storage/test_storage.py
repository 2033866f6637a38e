"""SqlMoodStore on both databases: a real SQLite file and a throwaway PostgreSQL cluster.

The `db` fixture runs each shared test twice; tests of SQLite's own behaviour (WAL, locked,
corrupt or read-only files) and of PostgreSQL's (start-up errors, the per-user turn) are
written for that database only. The schema's upgrades are tested in test_migrations.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from engine.errors import StorageError
from engine.types import Label, MessageKey, MoodEvent, Tone, Turn, UserKey
from storage.migrations import head
from storage.postgres import lock_key
from storage.store import SqlMoodStore
from tests.postgres import PostgresCluster
from tests.support import refusing_port

pytestmark = pytest.mark.asyncio

T0 = datetime(2024, 11, 22, 12, 0, tzinfo=UTC)
ALICE = UserKey("telegram", "42")


def event(
    user: UserKey = ALICE,
    chat_id: str = "chat-1",
    at: datetime = T0,
    p_positive: float = 0.9,
    excerpt: str | None = None,
    neutral: bool = False,
) -> MoodEvent:
    label: Label = "positive" if p_positive >= 0.5 else "negative"
    return MoodEvent(user.platform, user.user_id, chat_id, label, p_positive, at, excerpt, neutral)


def exchange(n: int, tone: Tone | None = None) -> list[Turn]:
    """One message and its answer; `tone` is what the store reads back for the message."""
    return [Turn("user", f"question {n}", tone), Turn("assistant", f"answer {n}")]


def raw_count(path: Path, sql: str, params: tuple = ()) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchone()[0]


@dataclass
class Db:
    """One database under test: where it is, and a way to look at it without the store."""

    kind: str
    target: str  # a SQLite path or a PostgreSQL URL, as DATABASE_URL takes them

    async def value(self, sql: str) -> object:
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as conn:
                return conn.execute(sql).fetchone()[0]
        conn = await asyncpg.connect(self.target)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def count(self, table: str, where: str = "TRUE") -> int:
        return int(await self.value(f"SELECT count(*) FROM {table} WHERE {where}"))  # type: ignore[call-overload]

    async def revision(self) -> str:
        return str(await self.value("SELECT version_num FROM alembic_version"))

    async def legacy_version(self) -> int:
        """Where the hand-written migrations kept the version (and older bots read it)."""
        if self.kind == "sqlite":
            return int(await self.value("PRAGMA user_version"))  # type: ignore[call-overload]
        return int(await self.value("SELECT max(version) FROM schema_version"))  # type: ignore[call-overload]

    async def execute(self, sql: str) -> None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as conn:
                conn.execute(sql)
            return
        conn = await asyncpg.connect(self.target)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def rows(self, sql: str) -> list[tuple[object, ...]]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as conn:
                return [tuple(row) for row in conn.execute(sql)]
        conn = await asyncpg.connect(self.target)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    async def has_table(self, name: str) -> bool:
        if self.kind == "sqlite":
            sql = f"SELECT count(*) FROM sqlite_master WHERE name = '{name}'"
            return bool(await self.value(sql))
        return bool(await self.value(f"SELECT to_regclass('{name}') IS NOT NULL"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    if request.param == "sqlite":
        return Db("sqlite", str(tmp_path / "bot.db"))
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return Db("postgresql", cluster.new_database())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest_asyncio.fixture  # not plain pytest.fixture, so it also works in strict mode
async def store(db: Db) -> AsyncIterator[SqlMoodStore]:
    opened = await SqlMoodStore.open(db.target)
    try:
        yield opened
    finally:
        await opened.close()


# --- opening (both databases) ----------------------------------------------------------------


async def test_closed_store_raises_storage_error(db: Db) -> None:
    store = await SqlMoodStore.open(db.target)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        await store.recent_turns(ALICE, "chat-1", 5)


# --- SQLite's own behaviour -----------------------------------------------------------------


async def test_sqlite_open_creates_parent_dirs_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "mood.db"
    store = await SqlMoodStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_corrupt_file_raises_on_open_and_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    garbage = b"definitely not sqlite" + os.urandom(8192)
    path.write_bytes(garbage)
    with pytest.raises(StorageError, match="unreadable or corrupt") as info:
        await SqlMoodStore.open(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.db"]


async def test_unopenable_path_raises_storage_error(tmp_path: Path) -> None:
    folder = tmp_path / "is-a-directory.db"
    folder.mkdir()
    with pytest.raises(StorageError):
        await SqlMoodStore.open(folder)


async def test_locked_database_write_raises_then_recovers(db_path: Path) -> None:
    store = await SqlMoodStore.open(db_path, busy_timeout_ms=100)
    try:
        # The configured busy timeout, not the default 5 s, is the one the store waits with.
        async with store._db.transaction(write=False) as conn:
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 100
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StorageError, match="locked by another process"):
            await store.record_exchange(event(), exchange(1))
        # It waited for the lock (SQLite sleeps the whole timeout before it gives up) rather
        # than failing at once.
        assert time.monotonic() - started >= 0.1
        holder.execute("ROLLBACK")
        holder.close()
        # The failed write left no transaction open on the store's connection.
        await store.record_exchange(event(), exchange(2))
        assert await store.recent_turns(ALICE, "chat-1", 10) == exchange(2, "positive")
    finally:
        await store.close()


async def test_locked_database_on_open_raises(db_path: Path) -> None:
    # A rollback-journal file under an exclusive lock cannot even be read.
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO other VALUES (1)")
    try:
        with pytest.raises(StorageError, match="locked"):
            await SqlMoodStore.open(db_path, busy_timeout_ms=50)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


READ_ONLY_PROBE = """
import asyncio, sys
from datetime import UTC, datetime
from engine.types import MoodEvent, UserKey
from storage.store import SqlMoodStore

async def main():
    store = await SqlMoodStore.open(sys.argv[1])
    try:
        alice = UserKey("telegram", "42")
        print(len(await store.mood_events(alice, datetime(2000, 1, 1, tzinfo=UTC))))
        event = MoodEvent("telegram", "42", "chat-1", "positive", 0.9, datetime.now(UTC))
        await store.record_exchange(event, [])
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_read_only_file_reads_and_refuses_writes_clearly(db_path: Path) -> None:
    store = await SqlMoodStore.open(db_path)
    await store.record_exchange(event(), exchange(1))
    await store.close()
    db_path.chmod(0o444)
    # Root may write a read-only file anyway; without CAP_DAC_OVERRIDE it may not.
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv (util-linux) is missing")
        prefix = ["setpriv", "--bounding-set=-dac_override", "--inh-caps=-dac_override"]
    root = Path(__file__).resolve().parents[2]
    done = await asyncio.to_thread(
        subprocess.run,
        [*prefix, sys.executable, "-c", READ_ONLY_PROBE, str(db_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "1"  # what is there can still be read
    assert f"StorageError: the database file is read-only: {db_path}" in done.stderr
    assert raw_count(db_path, "SELECT count(*) FROM mood_events") == 1


async def test_memory_database_works() -> None:
    store = await SqlMoodStore.open(":memory:")
    await store.record_exchange(event(), exchange(1))
    assert len(await store.mood_events(ALICE, T0 - timedelta(days=1))) == 1
    await store.close()


async def test_sqlite_urls_and_paths_name_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    first = await SqlMoodStore.open(f"sqlite:///{path}")  # sqlite:////abs/path
    await first.record_exchange(event(), exchange(1))
    await first.close()
    second = await SqlMoodStore.open(str(path))
    try:
        assert await second.recent_turns(ALICE, "chat-1", 10) == exchange(1, "positive")
    finally:
        await second.close()


async def test_an_unknown_database_url_is_refused_without_repeating_it() -> None:
    with pytest.raises(StorageError, match="DATABASE_URL takes") as info:
        await SqlMoodStore.open("mysql://bot:hunter2@db/bot")
    assert "hunter2" not in str(info.value)


# --- PostgreSQL's own behaviour -------------------------------------------------------------


async def test_postgres_wrong_password_names_database_url_not_the_password(
    postgres: PostgresCluster,
) -> None:
    url = postgres.url(password="not-the-password")
    with pytest.raises(StorageError) as info:
        await SqlMoodStore.open(url)
    message = str(info.value)
    assert "DATABASE_URL" in message
    assert "refused the login" in message
    assert f"127.0.0.1:{postgres.port}" in message
    assert "not-the-password" not in message
    assert postgres.password not in message


async def test_postgres_down_names_database_url_not_the_password() -> None:
    with refusing_port() as port, pytest.raises(StorageError) as info:
        await SqlMoodStore.open(f"postgresql://bot:s3cret-pw@127.0.0.1:{port}/bot")
    message = str(info.value)
    assert "cannot reach" in message
    assert f"DATABASE_URL (postgresql://bot:***@127.0.0.1:{port}/bot)" in message
    assert "s3cret-pw" not in message


async def test_postgres_password_may_come_from_pgpassword(
    postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.new_database().replace(f":{postgres.password}@", "@")
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    store = await SqlMoodStore.open(url)
    try:
        async with store.user_turn(ALICE):  # the turn's own connection logs in the same way
            await store.record_exchange(event(), exchange(1))
        assert await store.recent_turns(ALICE, "chat-1", 2) == exchange(1, "positive")
    finally:
        await store.close()
    assert postgres.password not in store.shown


async def test_postgres_missing_database_says_so(postgres: PostgresCluster) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        await SqlMoodStore.open(postgres.url("no_such_database"))


async def test_postgres_user_turn_keeps_other_processes_waiting(
    postgres: PostgresCluster,
) -> None:
    url = postgres.new_database()
    first, second = SqlMoodStore.open(url), SqlMoodStore.open(url)
    a, b = await asyncio.gather(first, second)
    order: list[str] = []
    try:
        async with a.user_turn(ALICE):
            waiting = asyncio.create_task(_take_turn(b, ALICE, order))
            other = asyncio.create_task(_take_turn(b, UserKey("discord", "42"), order))
            await asyncio.wait_for(other, 5)  # another user is not held up
            await asked_for_turns(url, 2)  # Alice's, held by a, and asked for by b
            assert not waiting.done()  # the same user on another store waits
            order.append("first released")
        await asyncio.wait_for(waiting, 5)
    finally:
        await a.close()
        await b.close()
    assert order == ["discord:42", "first released", "telegram:42"]


async def asked_for_turns(url: str, connections: int) -> None:
    """Wait until that many connections last asked for a user's turn (pg_try_advisory_lock;
    one that gave its turn back last ran the unlock): a waiter among them has been refused
    once at least, and keeps asking while the holder holds."""
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
           " AND query LIKE '%pg_try_advisory_lock(%'")  # fmt: skip
    conn = await asyncpg.connect(url)
    try:
        for _ in range(1000):
            if await conn.fetchval(sql) >= connections:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"fewer than {connections} connections asked for a turn")
    finally:
        await conn.close()


async def _take_turn(store: SqlMoodStore, user: UserKey, order: list[str]) -> None:
    async with store.user_turn(user):
        order.append(f"{user.platform}:{user.user_id}")


async def test_postgres_a_cancelled_holder_or_waiter_gives_the_turn_back(
    postgres: PostgresCluster,
) -> None:
    url = postgres.new_database()
    a, b = await SqlMoodStore.open(url), await SqlMoodStore.open(url)
    entered = asyncio.Event()

    async def hold_forever(store: SqlMoodStore) -> None:
        async with store.user_turn(ALICE):
            entered.set()
            await asyncio.Event().wait()

    try:
        holder = asyncio.create_task(hold_forever(a))
        await asyncio.wait_for(entered.wait(), 5)
        waiter = asyncio.create_task(_take_turn(b, ALICE, []))
        await asked_for_turns(url, 2)  # the holder's and the waiter's
        waiter.cancel()  # gave up waiting: must not take the turn later
        for _ in range(2):  # a stopping adapter cancels, and insists
            holder.cancel()
            await asyncio.sleep(0)
        await asyncio.gather(holder, waiter, return_exceptions=True)
        order: list[str] = []
        await asyncio.wait_for(_take_turn(b, ALICE, order), 5)
        await asyncio.wait_for(_take_turn(a, ALICE, order), 5)
    finally:
        await a.close()
        await b.close()
    assert order == ["telegram:42", "telegram:42"]


async def test_postgres_a_dead_holder_releases_the_users_turn(
    postgres: PostgresCluster,
) -> None:
    url = postgres.new_database()
    store = await SqlMoodStore.open(url)
    holder = await asyncpg.connect(url)  # another process, holding Alice's turn
    await holder.execute("SELECT pg_advisory_lock($1)", lock_key("user", "telegram", "42"))
    order: list[str] = []
    try:
        waiting = asyncio.create_task(_take_turn(store, ALICE, order))
        await asked_for_turns(url, 1)  # the holder took it with pg_advisory_lock
        assert not waiting.done()
        holder.terminate()  # the process dies: its connection, and the lock, go with it
        await asyncio.wait_for(waiting, 5)
    finally:
        await store.close()
    assert order == ["telegram:42"]


# --- writes (both databases) ----------------------------------------------------------------


async def test_record_exchange_is_atomic(store: SqlMoodStore, db: Db) -> None:
    bad_turns = [Turn("user", "hello"), Turn("narrator", "not a valid role")]  # type: ignore[arg-type]
    key = MessageKey("telegram", "chat-1", "1")
    assert await store.claim_message(key, ALICE, T0)
    with pytest.raises(StorageError):
        await store.record_exchange(event(), bad_turns, done=key)
    for table in ("mood_events", "turns"):
        assert await db.count(table) == 0, table
    assert await db.count("inbox", "state = 'received'") == 1  # not marked done either
    # And the store is still usable afterwards.
    await store.record_exchange(event(), exchange(1), done=key)
    assert await db.count("turns") == 2
    assert await db.count("inbox", "state = 'done'") == 1


async def test_invalid_event_stores_nothing(store: SqlMoodStore, db: Db) -> None:
    bad = MoodEvent("telegram", "42", "chat-1", "meh", 0.5, T0)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        await store.record_exchange(bad, exchange(1))
    assert await db.count("users") == 0


async def test_concurrent_writers_on_one_store_lose_nothing(store: SqlMoodStore, db: Db) -> None:
    users = [UserKey("telegram", str(n)) for n in range(5)]
    await asyncio.gather(
        *(
            store.record_exchange(event(users[i % 5], at=T0 + timedelta(seconds=i)), exchange(i))
            for i in range(200)
        )
    )
    assert await db.count("mood_events") == 200
    assert await db.count("turns") == 400
    assert await db.count("users") == 5
    assert len(await store.mood_events(users[0], T0)) == 40


async def test_two_stores_on_one_database_lose_nothing(db: Db) -> None:
    first = await SqlMoodStore.open(db.target)
    second = await SqlMoodStore.open(db.target)
    try:
        await asyncio.gather(
            *(
                (first if i % 2 else second).record_exchange(
                    event(UserKey("discord", str(i % 3)), at=T0 + timedelta(seconds=i)),
                    exchange(i),
                )
                for i in range(200)
            )
        )
    finally:
        await first.close()
        await second.close()
    assert await db.count("mood_events") == 200
    assert await db.count("turns") == 400
    assert await db.count("users") == 3


# --- the inbox (both databases) -------------------------------------------------------------


async def test_a_message_is_claimed_once(store: SqlMoodStore, db: Db) -> None:
    key = MessageKey("telegram", "chat-1", "100")
    assert await store.claim_message(key, ALICE, T0) is True
    assert await store.claim_message(key, ALICE, T0 + timedelta(seconds=1)) is False
    # The same message id in another chat, or on another platform, is another message.
    assert await store.claim_message(MessageKey("telegram", "chat-2", "100"), ALICE, T0)
    assert await store.claim_message(MessageKey("discord", "chat-1", "100"), ALICE, T0)
    assert await db.count("inbox", "state = 'received'") == 3


async def test_two_stores_claiming_one_message_at_once_let_one_win(db: Db) -> None:
    stores = [await SqlMoodStore.open(db.target) for _ in range(2)]
    try:
        keys = [MessageKey("telegram", "chat-1", str(n)) for n in range(20)]
        results = await asyncio.gather(
            *(s.claim_message(key, ALICE, T0) for key in keys for s in stores)
        )
    finally:
        for opened in stores:
            await opened.close()
    assert sum(results) == 20  # of each pair of claims, exactly one won
    assert await db.count("inbox") == 20


async def test_record_exchange_marks_the_message_done_and_mark_done_does_too(
    store: SqlMoodStore, db: Db
) -> None:
    answered, failed = MessageKey("telegram", "chat-1", "1"), MessageKey("telegram", "chat-1", "2")
    for key in (answered, failed):
        assert await store.claim_message(key, ALICE, T0)
    await store.record_exchange(event(at=T0 + timedelta(seconds=5)), exchange(1), done=answered)
    await store.mark_done(failed, T0 + timedelta(seconds=6))
    assert await db.count("inbox", "state = 'done' AND done_at IS NOT NULL") == 2
    assert await store.claim_message(answered, ALICE, T0) is False


async def test_done_is_recorded_even_if_the_claim_was_deleted(store: SqlMoodStore, db: Db) -> None:
    key = MessageKey("telegram", "chat-1", "1")
    assert await store.claim_message(key, ALICE, T0)
    await store.forget_user(ALICE)  # /forget while the reply was being written
    await store.record_exchange(event(), exchange(1), done=key)
    assert await db.count("inbox", "state = 'done'") == 1
    assert await store.claim_message(key, ALICE, T0) is False


# --- reads (both databases) -----------------------------------------------------------------


async def test_platforms_are_separate_people(store: SqlMoodStore, db: Db) -> None:
    bob = UserKey("discord", "42")
    await store.record_exchange(event(ALICE, p_positive=0.9), exchange(1))
    await store.record_exchange(event(bob, p_positive=0.1), exchange(2))
    alice_events = await store.mood_events(ALICE, T0 - timedelta(days=1))
    bob_events = await store.mood_events(bob, T0 - timedelta(days=1))
    assert [e.label for e in alice_events] == ["positive"]
    assert [(e.platform, e.label) for e in bob_events] == [("discord", "negative")]
    assert await store.recent_turns(bob, "chat-1", 10) == exchange(2, "negative")
    assert await db.count("users") == 2


async def test_recent_turns_newest_limit_oldest_first_per_chat(store: SqlMoodStore) -> None:
    for n in range(4):
        await store.record_exchange(event(at=T0 + timedelta(minutes=n)), exchange(n))
    await store.record_exchange(event(chat_id="chat-2", at=T0 + timedelta(hours=1)), exchange(9))
    assert await store.recent_turns(ALICE, "chat-1", 3) == [
        Turn("assistant", "answer 2"),
        Turn("user", "question 3", "positive"),
        Turn("assistant", "answer 3"),
    ]
    assert await store.recent_turns(ALICE, "chat-2", 10) == exchange(9, "positive")
    assert await store.recent_turns(ALICE, "chat-1", 0) == []
    assert await store.recent_turns(UserKey("telegram", "nobody"), "chat-1", 5) == []


@pytest.mark.parametrize("step", [1, 2, 6])
async def test_kept_turns_are_pruned_without_moving_the_window_the_prompt_reads(
    store: SqlMoodStore, db: Db, step: int
) -> None:
    limit = 4
    keep = limit + step - 1  # what ChatConfig.kept_turns gives for HISTORY_TURNS/STEP
    kept, whole = UserKey("telegram", "kept"), UserKey("telegram", "whole")
    for n in range(15):
        at = T0 + timedelta(minutes=n)
        await store.record_exchange(event(kept, at=at), exchange(n), keep_turns=keep,
                                    turn_step=step)  # fmt: skip
        await store.record_exchange(event(whole, at=at), exchange(n))  # nothing pruned
        # The prompt reads exactly what it read from the whole history.
        assert await store.recent_turns(kept, "chat-1", limit, step) == (
            await store.recent_turns(whole, "chat-1", limit, step)
        ), n
        assert len(await store.recent_turns(kept, "chat-1", 1000)) < keep + step
    assert len(await store.recent_turns(whole, "chat-1", 1000)) == 30
    assert len(await store.recent_turns(kept, "chat-1", 1000)) < keep + step  # pruned
    # The text of the pruned turns is gone from the database, not only from the window.
    assert await db.count("turns", "content = 'question 0'") == 1  # the unpruned user's only


async def test_the_window_of_recent_turns_moves_in_steps(store: SqlMoodStore) -> None:
    async def window(total_exchanges: int, step: int) -> list[str]:
        while len(await store.recent_turns(ALICE, "chat-1", 1000)) < 2 * total_exchanges:
            n = len(await store.recent_turns(ALICE, "chat-1", 1000)) // 2
            await store.record_exchange(event(at=T0 + timedelta(minutes=n)), exchange(n))
        return [t.content for t in await store.recent_turns(ALICE, "chat-1", 12, step)]

    assert len(await window(3, 6)) == 6  # shorter than the limit: everything
    assert await window(6, 6) == await window(6, 1)  # exactly the limit
    # 7 exchanges = 14 turns: the last 12 would start at turn 2; with steps of 6 the window
    # starts at turn 6 (question 3) and stays there until it holds 12 turns again.
    assert (await window(7, 6))[0] == "question 3"
    assert len(await window(7, 6)) == 8
    assert (await window(9, 6))[0] == "question 3"
    assert len(await window(9, 6)) == 12
    assert (await window(10, 6))[0] == "question 6"  # 20 turns: it moves on by 6
    assert (await window(10, 1))[0] == "question 4"  # step 1: the last 12, sliding
    assert await window(10, 6) == await window(10, 6)


async def test_each_user_turn_reads_back_the_tone_of_its_own_message(
    store: SqlMoodStore,
) -> None:
    await store.record_exchange(event(p_positive=0.2), exchange(1))
    await store.record_exchange(event(at=T0 + timedelta(minutes=1), p_positive=0.7), [])  # failed
    await store.record_exchange(event(at=T0 + timedelta(minutes=2), p_positive=0.9), exchange(2))
    # Shown as neutral: its turn reads back neutral, not the two-way label it keeps.
    small_talk = event(at=T0 + timedelta(minutes=3), p_positive=0.55, neutral=True)
    await store.record_exchange(small_talk, exchange(6))
    # The same instant in another chat is another message.
    await store.record_exchange(event(chat_id="chat-2", p_positive=0.9), exchange(3))
    assert await store.recent_turns(ALICE, "chat-1", 10) == [
        *exchange(1, "negative"),
        *exchange(2, "positive"),
        *exchange(6, "neutral"),
    ]
    assert await store.recent_turns(ALICE, "chat-2", 10) == exchange(3, "positive")
    # Two messages stored at one instant (a clock that stood still) are not duplicated.
    await store.record_exchange(event(chat_id="chat-3", p_positive=0.1), exchange(4))
    await store.record_exchange(event(chat_id="chat-3", p_positive=0.9), exchange(5))
    assert [t.content for t in await store.recent_turns(ALICE, "chat-3", 10)] == [
        "question 4",
        "answer 4",
        "question 5",
        "answer 5",
    ]


async def test_mood_events_range_order_and_round_trip(store: SqlMoodStore) -> None:
    plus_eight = timezone(timedelta(hours=8))
    stamps = [T0 + timedelta(hours=h) for h in (5, 0, 2, 3)]  # inserted out of order
    for n, at in enumerate(stamps):
        local = at.astimezone(plus_eight)  # a non-UTC input must come back as the same instant
        await store.record_exchange(event(at=local, excerpt=f"msg {n}" if n else None), [])
    got = await store.mood_events(ALICE, T0, T0 + timedelta(hours=3))
    assert [e.created_at for e in got] == [T0, T0 + timedelta(hours=2)]  # since incl., until excl.
    assert all(e.created_at.utcoffset() == timedelta(0) for e in got)
    assert got[0].excerpt == "msg 1"
    assert got[1].excerpt == "msg 2"
    everything = await store.mood_events(ALICE, T0 - timedelta(days=1))
    assert [e.created_at for e in everything] == sorted(stamps)
    assert everything[-1].p_positive == pytest.approx(0.9)
    assert everything[-1].excerpt is None  # the first inserted, at T0+5h, had no excerpt


async def test_a_neutral_message_keeps_its_label_and_is_read_back_neutral(
    store: SqlMoodStore,
) -> None:
    small_talk = replace(event(p_positive=0.55), neutral=True)
    await store.record_exchange(small_talk, [])
    await store.record_exchange(event(at=T0 + timedelta(minutes=1)), [])
    got = await store.mood_events(ALICE, T0)
    assert [(e.label, e.neutral) for e in got] == [("positive", True), ("positive", False)]


async def test_microseconds_survive_the_round_trip(store: SqlMoodStore) -> None:
    at = T0 + timedelta(microseconds=123456)
    await store.record_exchange(event(at=at), [])
    assert [e.created_at for e in await store.mood_events(ALICE, T0)] == [at]


async def test_naive_datetimes_are_rejected(store: SqlMoodStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.mood_events(ALICE, datetime(2024, 1, 1))


# --- deletes (both databases) ---------------------------------------------------------------


async def test_clear_turns_only_that_chat(store: SqlMoodStore) -> None:
    await store.record_exchange(event(chat_id="chat-1"), exchange(1))
    await store.record_exchange(event(chat_id="chat-1"), exchange(2))
    await store.record_exchange(event(chat_id="chat-2"), exchange(3))
    await store.record_exchange(event(UserKey("discord", "42"), chat_id="chat-1"), exchange(4))
    assert await store.clear_turns(ALICE, "chat-1") == 4
    assert await store.recent_turns(ALICE, "chat-1", 10) == []
    assert await store.recent_turns(ALICE, "chat-2", 10) == exchange(3, "positive")
    other = UserKey("discord", "42")
    assert await store.recent_turns(other, "chat-1", 10) == exchange(4, "positive")
    assert len(await store.mood_events(ALICE, T0)) == 3  # mood history is not conversation memory
    assert await store.clear_turns(ALICE, "chat-1") == 0


async def test_forget_user_deletes_everything_about_them(store: SqlMoodStore, db: Db) -> None:
    other = UserKey("discord", "42")
    await store.record_exchange(event(chat_id="chat-1", excerpt="secret"), exchange(1))
    await store.record_exchange(event(chat_id="chat-2"), exchange(2))
    await store.record_exchange(event(other), exchange(3))
    assert await store.claim_message(MessageKey("telegram", "chat-1", "9"), ALICE, T0)
    assert await store.forget_user(ALICE) == 2 + 4 + 1 + 1  # events + turns + inbox + user row
    query = (
        "user_id IN (SELECT id FROM users WHERE platform = 'telegram' AND platform_user_id = '42')"
    )
    for table in ("mood_events", "turns", "inbox"):
        assert await db.count(table, query) == 0
    assert await db.count("users", "platform = 'telegram'") == 0
    assert await db.count("mood_events", "excerpt = 'secret'") == 0
    assert await db.count("mood_events") == 1  # the other user's
    assert await db.count("inbox") == 0
    assert await store.recent_turns(other, "chat-1", 10) == exchange(3, "positive")
    assert await store.forget_user(ALICE) == 0

"""SqliteMoodStore against real SQLite files: schema, errors, atomicity, concurrency."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio

import storage.store as store_module
from core.errors import StorageError
from core.types import Label, MoodEvent, Turn, UserKey
from storage import SqliteMoodStore
from storage.migrations import MIGRATIONS, SCHEMA_VERSION, split_statements

pytestmark = pytest.mark.asyncio

T0 = datetime(2024, 11, 22, 12, 0, tzinfo=UTC)
ALICE = UserKey("telegram", "42")


def event(
    user: UserKey = ALICE,
    chat_id: str = "chat-1",
    at: datetime = T0,
    p_positive: float = 0.9,
    excerpt: str | None = None,
) -> MoodEvent:
    label: Label = "positive" if p_positive >= 0.5 else "negative"
    return MoodEvent(user.platform, user.user_id, chat_id, label, p_positive, at, excerpt)


def exchange(n: int, label: Label | None = None) -> list[Turn]:
    """One message and its answer; `label` is what the store reads back for the message."""
    return [Turn("user", f"question {n}", label), Turn("assistant", f"answer {n}")]


def raw_count(path: Path, sql: str, params: tuple = ()) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchone()[0]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest_asyncio.fixture  # not plain pytest.fixture, so it also works in strict mode
async def store(db_path: Path) -> AsyncIterator[SqliteMoodStore]:
    opened = await SqliteMoodStore.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()


# --- opening and migrations ---------------------------------------------------------------


async def test_open_creates_parent_dirs_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "mood.db"
    store = await SqliteMoodStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users", "mood_events", "turns"} <= tables


async def test_reopen_keeps_data_and_applies_only_new_migrations(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await SqliteMoodStore.open(db_path)
    await store.record_exchange(event(), exchange(1))
    await store.close()

    # A second, hypothetical migration: it must run once on reopen and never again.
    extra = (*MIGRATIONS, "CREATE TABLE extra (x INTEGER);")
    monkeypatch.setattr(store_module, "MIGRATIONS", extra)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(extra))
    for _ in range(2):  # the second open would fail with "table extra already exists"
        store = await SqliteMoodStore.open(db_path)
        assert await store.recent_turns(ALICE, "chat-1", 10) == exchange(1, "positive")
        await store.close()
    assert raw_count(db_path, "PRAGMA user_version") == len(extra)
    assert raw_count(db_path, "SELECT count(*) FROM extra") == 0


async def test_reopen_up_to_date_file_runs_no_migration(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await (await SqliteMoodStore.open(db_path)).close()

    def explode(script: str) -> list[str]:
        raise AssertionError("a migration ran on an up-to-date file")

    monkeypatch.setattr(store_module, "split_statements", explode)
    await (await SqliteMoodStore.open(db_path)).close()
    assert raw_count(db_path, "PRAGMA user_version") == SCHEMA_VERSION


async def test_failed_migration_rolls_back_and_keeps_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await (await SqliteMoodStore.open(db_path)).close()
    broken = (*MIGRATIONS, "CREATE TABLE half (x INTEGER); INSERT INTO nowhere VALUES (1);")
    monkeypatch.setattr(store_module, "MIGRATIONS", broken)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(broken))
    with pytest.raises(StorageError):
        await SqliteMoodStore.open(db_path)
    assert raw_count(db_path, "PRAGMA user_version") == SCHEMA_VERSION
    assert raw_count(db_path, "SELECT count(*) FROM sqlite_master WHERE name = 'half'") == 0


async def test_too_new_schema_is_refused_and_untouched(db_path: Path) -> None:
    await (await SqliteMoodStore.open(db_path)).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer version"):
        await SqliteMoodStore.open(db_path)
    assert raw_count(db_path, "PRAGMA user_version") == SCHEMA_VERSION + 1


async def test_corrupt_file_raises_on_open_and_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    garbage = b"definitely not sqlite" + os.urandom(8192)
    path.write_bytes(garbage)
    with pytest.raises(StorageError, match="unreadable or corrupt") as info:
        await SqliteMoodStore.open(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.db"]


async def test_unopenable_path_raises_storage_error(tmp_path: Path) -> None:
    folder = tmp_path / "is-a-directory.db"
    folder.mkdir()
    with pytest.raises(StorageError):
        await SqliteMoodStore.open(folder)


async def test_locked_database_write_raises_then_recovers(db_path: Path) -> None:
    store = await SqliteMoodStore.open(db_path, busy_timeout_ms=100)
    try:
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StorageError, match="locked by another process"):
            await store.record_exchange(event(), exchange(1))
        assert time.monotonic() - started < 3  # the short busy timeout, not the default 5 s
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
            await SqliteMoodStore.open(db_path, busy_timeout_ms=50)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_memory_database_works() -> None:
    store = await SqliteMoodStore.open(":memory:")
    await store.record_exchange(event(), exchange(1))
    assert len(await store.mood_events(ALICE, T0 - timedelta(days=1))) == 1
    await store.close()


async def test_closed_store_raises_storage_error(db_path: Path) -> None:
    store = await SqliteMoodStore.open(db_path)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        await store.recent_turns(ALICE, "chat-1", 5)


# --- writes -------------------------------------------------------------------------------


async def test_record_exchange_is_atomic(store: SqliteMoodStore, db_path: Path) -> None:
    bad_turns = [Turn("user", "hello"), Turn("narrator", "not a valid role")]  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        await store.record_exchange(event(), bad_turns)
    for table in ("users", "mood_events", "turns"):
        assert raw_count(db_path, f"SELECT count(*) FROM {table}") == 0, table
    # And the store is still usable afterwards.
    await store.record_exchange(event(), exchange(1))
    assert raw_count(db_path, "SELECT count(*) FROM turns") == 2


async def test_invalid_event_stores_nothing(store: SqliteMoodStore, db_path: Path) -> None:
    bad = MoodEvent("telegram", "42", "chat-1", "meh", 0.5, T0)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        await store.record_exchange(bad, exchange(1))
    assert raw_count(db_path, "SELECT count(*) FROM users") == 0


async def test_concurrent_writers_on_one_store_lose_nothing(
    store: SqliteMoodStore, db_path: Path
) -> None:
    users = [UserKey("telegram", str(n)) for n in range(5)]
    await asyncio.gather(
        *(
            store.record_exchange(event(users[i % 5], at=T0 + timedelta(seconds=i)), exchange(i))
            for i in range(200)
        )
    )
    assert raw_count(db_path, "SELECT count(*) FROM mood_events") == 200
    assert raw_count(db_path, "SELECT count(*) FROM turns") == 400
    assert raw_count(db_path, "SELECT count(*) FROM users") == 5
    assert len(await store.mood_events(users[0], T0)) == 40


async def test_two_stores_on_one_file_lose_nothing(db_path: Path) -> None:
    first = await SqliteMoodStore.open(db_path)
    second = await SqliteMoodStore.open(db_path)
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
    assert raw_count(db_path, "SELECT count(*) FROM mood_events") == 200
    assert raw_count(db_path, "SELECT count(*) FROM turns") == 400
    assert raw_count(db_path, "SELECT count(*) FROM users") == 3


# --- reads --------------------------------------------------------------------------------


async def test_platforms_are_separate_people(store: SqliteMoodStore, db_path: Path) -> None:
    bob = UserKey("discord", "42")
    await store.record_exchange(event(ALICE, p_positive=0.9), exchange(1))
    await store.record_exchange(event(bob, p_positive=0.1), exchange(2))
    alice_events = await store.mood_events(ALICE, T0 - timedelta(days=1))
    bob_events = await store.mood_events(bob, T0 - timedelta(days=1))
    assert [e.label for e in alice_events] == ["positive"]
    assert [(e.platform, e.label) for e in bob_events] == [("discord", "negative")]
    assert await store.recent_turns(bob, "chat-1", 10) == exchange(2, "negative")
    assert raw_count(db_path, "SELECT count(*) FROM users") == 2


async def test_recent_turns_newest_limit_oldest_first_per_chat(store: SqliteMoodStore) -> None:
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


async def test_the_window_of_recent_turns_moves_in_steps(store: SqliteMoodStore) -> None:
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


async def test_each_user_turn_reads_back_the_label_of_its_own_message(
    store: SqliteMoodStore,
) -> None:
    await store.record_exchange(event(p_positive=0.2), exchange(1))
    await store.record_exchange(event(at=T0 + timedelta(minutes=1), p_positive=0.7), [])  # failed
    await store.record_exchange(event(at=T0 + timedelta(minutes=2), p_positive=0.9), exchange(2))
    # The same instant in another chat is another message.
    await store.record_exchange(event(chat_id="chat-2", p_positive=0.9), exchange(3))
    assert await store.recent_turns(ALICE, "chat-1", 10) == [
        *exchange(1, "negative"),
        *exchange(2, "positive"),
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


async def test_mood_events_range_order_and_round_trip(store: SqliteMoodStore) -> None:
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


async def test_naive_datetimes_are_rejected(store: SqliteMoodStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.mood_events(ALICE, datetime(2024, 1, 1))


# --- deletes ------------------------------------------------------------------------------


async def test_clear_turns_only_that_chat(store: SqliteMoodStore) -> None:
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


async def test_forget_user_deletes_everything_about_them(
    store: SqliteMoodStore, db_path: Path
) -> None:
    other = UserKey("discord", "42")
    await store.record_exchange(event(chat_id="chat-1", excerpt="secret"), exchange(1))
    await store.record_exchange(event(chat_id="chat-2"), exchange(2))
    await store.record_exchange(event(other), exchange(3))
    assert await store.forget_user(ALICE) == 2 + 4 + 1  # events + turns + the user row
    query = (
        "SELECT count(*) FROM {} WHERE user_id IN"
        " (SELECT id FROM users WHERE platform = 'telegram' AND platform_user_id = '42')"
    )
    for table in ("mood_events", "turns"):
        assert raw_count(db_path, query.format(table)) == 0
    assert raw_count(db_path, "SELECT count(*) FROM users WHERE platform = 'telegram'") == 0
    assert raw_count(db_path, "SELECT count(*) FROM mood_events WHERE excerpt = 'secret'") == 0
    assert raw_count(db_path, "SELECT count(*) FROM mood_events") == 1  # the other user's
    assert await store.recent_turns(other, "chat-1", 10) == exchange(3, "positive")
    assert await store.forget_user(ALICE) == 0


async def test_split_statements_respects_quotes() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT 'x;y'); -- note; here\nCREATE TABLE b (y);\n"
    assert len(split_statements(script)) == 2

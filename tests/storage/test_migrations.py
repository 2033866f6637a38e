"""The schema's upgrades (storage/migrations.py, Alembic) on a SQLite file and on PostgreSQL.

A database is created by the store at head; a further revision runs once, in one
transaction with the rest, and a failing one changes nothing; a database of a newer bot is
refused untouched. A database an older bot left behind (today's hand-written migrations 1..7,
frozen in legacy_migrations.py) is recognised at each version, stamped and upgraded in place
with all its rows, into the tables a new database has (test_schema.py compares them).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from textwrap import dedent
from typing import TypeVar

import pytest

from engine.errors import StorageError
from engine.types import MessageKey
from storage import migrations
from storage.migrations import LEGACY_GUARD, LEGACY_LAST, head
from storage.store import SqlMoodStore
from tests.storage import test_schema, test_storage
from tests.storage.legacy_migrations import create_postgres, create_sqlite
from tests.storage.test_schema import differences, inspected, shape
from tests.storage.test_storage import ALICE, T0, Db, event, exchange

# The storage suite's fixtures: each test runs on a SQLite file and on PostgreSQL.
db = test_storage.db
other = test_schema.other


T = TypeVar("T")

TABLES = (
    "users",
    "mood_events",
    "turns",
    "inbox",
    "people",
    "link_codes",
    "link_attempts",
    "digests",
    "support_notes",
)


@pytest.fixture
def revisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the shipped revisions the store runs instead, to add further ones to."""
    folder = tmp_path / "alembic"
    shutil.copytree(migrations.SCRIPT_FOLDER, folder)
    monkeypatch.setattr(migrations, "SCRIPT_FOLDER", folder)
    forget_revisions()
    yield folder
    forget_revisions()


def forget_revisions() -> None:
    migrations.scripts.cache_clear()
    migrations.revisions.cache_clear()


def add_revision(folder: Path, number: int, *statements: str) -> str:
    """Revision `number` after the last one, its upgrade() the given op.* statements."""
    revision = f"{number:04d}"
    body = "".join(f"    {statement}\n" for statement in statements)
    script = (
        '"""a further revision, for a test"""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f"revision = {revision!r}\n"
        f"down_revision = {f'{number - 1:04d}'!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        f"def upgrade() -> None:\n{body}\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    (folder / "versions" / f"{revision}_test.py").write_text(script)
    forget_revisions()
    return revision


NEXT = int(head()) + 1  # the number of a revision added after the shipped ones
EXTRA_TABLE = 'op.create_table("extra", sa.Column("x", sa.Integer()))'


# --- a database made by this bot ------------------------------------------------------------


async def test_open_creates_every_table_at_head_and_bars_older_bots(db: Db) -> None:
    await (await SqlMoodStore.open(db.target)).close()
    assert await db.revision() == head()
    for table in TABLES:
        assert await db.has_table(table), table
    # Where the hand-written migrations kept their version: an older bot refuses anything
    # above the last it knew, instead of running its migrations on these tables.
    assert await db.legacy_version() == LEGACY_GUARD > LEGACY_LAST


async def test_a_further_revision_runs_once_and_keeps_the_data(db: Db, revisions: Path) -> None:
    store = await SqlMoodStore.open(db.target)
    await store.record_exchange(event(), exchange(1))
    await store.close()

    extra = add_revision(revisions, NEXT, EXTRA_TABLE)
    for _ in range(2):  # a second run would fail: "table extra already exists"
        store = await SqlMoodStore.open(db.target)
        assert await store.recent_turns(ALICE, "chat-1", 10) == exchange(1, "positive")
        await store.close()
    assert await db.revision() == extra
    assert await db.count("extra") == 0


async def test_an_up_to_date_database_runs_no_revision(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await (await SqlMoodStore.open(db.target)).close()

    def explode(*args: object) -> None:
        raise AssertionError("an upgrade ran on an up-to-date database")

    monkeypatch.setattr(migrations, "upgrade", explode)
    await (await SqlMoodStore.open(db.target)).close()
    assert await db.revision() == head()


async def test_a_failing_revision_changes_nothing(db: Db, revisions: Path) -> None:
    await (await SqlMoodStore.open(db.target)).close()
    shipped = head()
    add_revision(
        revisions,
        NEXT,
        'op.create_table("half", sa.Column("x", sa.Integer()))',
        'op.execute("INSERT INTO nowhere VALUES (1)")',
    )
    with pytest.raises(StorageError):
        await SqlMoodStore.open(db.target)
    assert await db.revision() == shipped
    assert not await db.has_table("half")


async def test_two_processes_upgrading_at_once_upgrade_once(db: Db, revisions: Path) -> None:
    await (await SqlMoodStore.open(db.target)).close()
    extra = add_revision(revisions, NEXT, EXTRA_TABLE)
    stores = await asyncio.gather(*(SqlMoodStore.open(db.target) for _ in range(3)))
    for opened in stores:
        await opened.close()
    assert await db.revision() == extra


async def test_a_database_of_a_newer_bot_is_refused_untouched(db: Db) -> None:
    await (await SqlMoodStore.open(db.target)).close()
    await db.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StorageError, match="newer version of the bot"):
        await SqlMoodStore.open(db.target)
    assert await db.revision() == "9999"


async def test_a_legacy_version_past_the_last_is_refused_untouched(tmp_path: Path) -> None:
    # A database of hand-written migrations this bot never had: not guessed at.
    path = tmp_path / "bot.db"
    create_sqlite(path, LEGACY_LAST)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LEGACY_LAST + 1}")
    with pytest.raises(StorageError, match="newer version of the bot"):
        await SqlMoodStore.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LEGACY_LAST + 1
        assert not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"
        ).fetchone()


async def test_sqlite_a_revision_leaving_rows_without_their_user_is_rolled_back(
    tmp_path: Path, revisions: Path
) -> None:
    # Foreign keys are off while the revisions run (so that batch mode's copy of a parent
    # table deletes nothing); the check before commit still refuses what they would refuse.
    path = tmp_path / "bot.db"
    await (await SqlMoodStore.open(path)).close()
    shipped = head()
    orphan = "(99, 'chat-1', 'user', 'orphan', '2024-11-22T12:00:00+00:00')"
    columns = "(user_id, chat_id, role, content, created_at)"
    add_revision(revisions, NEXT, f'op.execute("INSERT INTO turns {columns} VALUES {orphan}")')
    with pytest.raises(StorageError, match="pointing at nothing"):
        await SqlMoodStore.open(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM turns").fetchone()[0] == 0
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == shipped


# --- a database an older bot left behind ----------------------------------------------------

ALICE_ID = "(SELECT id FROM users WHERE platform_user_id = '42')"
AT = "'2024-11-22T12:00:00.000000+00:00'"
LATER = "'2024-11-23T12:00:00.000000+00:00'"

# Rows of every kind, as the bot of each version wrote them: (first version, statements).
LEGACY_ROWS = (
    (
        1,
        f"""
        INSERT INTO users (platform, platform_user_id, created_at) VALUES ('telegram', '42', {AT});
        INSERT INTO mood_events (user_id, chat_id, label, p_positive, created_at, excerpt)
            VALUES ({ALICE_ID}, 'chat-1', 'negative', 0.25, {AT}, 'old');
        INSERT INTO turns (user_id, chat_id, role, content, created_at) VALUES
            ({ALICE_ID}, 'chat-1', 'user', 'question 0', {AT}),
            ({ALICE_ID}, 'chat-1', 'assistant', 'answer 0', {AT});
    """,
    ),
    (
        2,
        f"""
        INSERT INTO inbox (platform, chat_id, message_id, user_id, state, received_at, done_at)
            VALUES ('telegram', 'chat-1', '5', {ALICE_ID}, 'done', {AT}, {AT});
    """,
    ),
    (
        3,
        f"""
        INSERT INTO mood_events (user_id, chat_id, label, p_positive, created_at, neutral)
            VALUES ({ALICE_ID}, 'chat-1', 'positive', 0.55, {LATER}, TRUE);
    """,
    ),
    (
        4,
        f"""
        INSERT INTO people (created_at) VALUES ({AT});
        UPDATE users SET person_id = (SELECT max(id) FROM people);
        UPDATE mood_events SET message_id = '5', corrected_label = 'negative',
            corrected_at = {LATER} WHERE excerpt IS NULL;
        INSERT INTO link_codes (code_hash, user_id, created_at, expires_at, used_at)
            VALUES ('ab12', {ALICE_ID}, {AT}, {LATER}, NULL);
        INSERT INTO link_attempts (user_id, at) VALUES ({ALICE_ID}, {AT});
    """,
    ),
    (
        5,
        f"""
        INSERT INTO digests (user_id, chat_id, created_at, last_sent_at)
            VALUES ({ALICE_ID}, 'chat-1', {AT}, {LATER});
    """,
    ),
    (
        6,
        f"""
        INSERT INTO inbox (platform, chat_id, message_id, user_id, state, received_at, text,
                           origin, reply_ref, owner, attempts)
            VALUES ('telegram', 'chat-1', '6', {ALICE_ID}, 'received', {LATER}, 'half done',
                    '{{"chat": 1}}', '77', 'gone-process', 1);
    """,
    ),
    (
        7,
        f"""
        INSERT INTO support_notes (user_id, kind, created_at) VALUES ({ALICE_ID}, 'stretch', {AT});
    """,
    ),
)


def legacy_rows(version: int) -> str:
    return "".join(dedent(sql) for first, sql in LEGACY_ROWS if first <= version)


async def make_legacy(db: Db, version: int) -> None:
    if db.kind == "sqlite":
        create_sqlite(Path(db.target), version, legacy_rows(version))
    else:
        await create_postgres(db.target, version, legacy_rows(version))


async def columns(db: Db, table: str) -> list[str]:
    if db.kind == "sqlite":
        return [str(row[1]) for row in await db.rows(f"PRAGMA table_info({table})")]
    sql = ("SELECT column_name FROM information_schema.columns "
           f"WHERE table_name = '{table}' ORDER BY ordinal_position")  # fmt: skip
    return [str(row[0]) for row in await db.rows(sql)]


async def contents(db: Db, tables: dict[str, list[str]]) -> dict[str, list[tuple[object, ...]]]:
    """Every row of these tables, in these columns, in a stable order."""
    found: dict[str, list[tuple[object, ...]]] = {}
    for table, names in tables.items():
        listed = ", ".join(names)
        found[table] = await db.rows(f"SELECT {listed} FROM {table} ORDER BY {listed}")
    return found


@pytest.mark.parametrize("version", range(1, LEGACY_LAST + 1))
async def test_a_database_of_the_hand_written_migrations_upgrades_in_place(
    db: Db, other: Db, version: int
) -> None:
    await make_legacy(db, version)
    old_tables = {t: await columns(db, t) for t in TABLES if await db.has_table(t)}
    before = await contents(db, old_tables)
    assert before["turns"]  # the fixture wrote rows

    await (await SqlMoodStore.open(db.target)).close()
    assert await db.revision() == head()
    assert await db.legacy_version() == LEGACY_GUARD
    # Every row of every table is still there, every value as it was (batch mode copies
    # users at revision 0004 on SQLite: with foreign keys on, that would have emptied the
    # tables that refer to it).
    assert await contents(db, old_tables) == before
    # The tables are those of a database the revisions made, checks and indexes included.
    await (await SqlMoodStore.open(other.target)).close()
    assert await inspected(db, shape) == await inspected(other, shape)
    if db.kind == "postgresql":  # the same names too (SQLite's old constraints have none)
        assert await inspected(db, differences) == []

    store = await SqlMoodStore.open(db.target)
    try:
        # What the older bot stored reads back through the store as it was written.
        assert await store.recent_turns(ALICE, "chat-1", 2) == exchange(0, "negative")
        # The tables and columns it did not have yet work with its rows.
        later = T0 + timedelta(days=3)
        key = MessageKey("telegram", "chat-1", "8")
        assert await store.claim_message(key, ALICE, later)
        await store.record_exchange(event(at=later), exchange(1), done=key)
        assert await store.recent_turns(ALICE, "chat-1", 2) == exchange(1, "positive")
    finally:
        await store.close()


def test_opening_an_up_to_date_database_does_not_import_alembic(tmp_path: Path) -> None:
    # Alembic (and every SQLAlchemy dialect it loads) is imported only to upgrade.
    path = tmp_path / "bot.db"
    probe = (
        "import asyncio, sys\n"
        "from storage.store import SqlMoodStore\n"
        "async def main():\n"
        f"    await (await SqlMoodStore.open({str(path)!r})).close()\n"
        "    print('alembic' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[2]
    first, again = (
        subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True,
                       check=True).stdout.strip()
        for _ in range(2)
    )  # fmt: skip
    assert (first, again) == ("True", "False")

"""The tables defined once: what storage/schema.py defines is what the Alembic revisions make,
on a SQLite file and on PostgreSQL (Alembic's autogenerate comparison finds nothing, and the
CHECK constraints and partial indexes it skips match metadata.create_all()'s); the revisions
are one numbered line; every downgrade undoes its upgrade.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.engine import Inspector
from sqlalchemy.ext.asyncio import create_async_engine

from storage import migrations
from storage.migrations import LEGACY_TABLE, head, numbered
from storage.schema import metadata
from storage.store import SqlMoodStore
from tests.postgres import PostgresCluster
from tests.storage import test_storage
from tests.storage.test_storage import Db

# The storage suite's fixture: each test runs on a SQLite file and on PostgreSQL.
db = test_storage.db

T = TypeVar("T")


def test_the_revisions_are_numbered_in_one_line() -> None:
    # What the store and `python -m storage.alembic` rely on: one head, and revision N after
    # N-1 (two branches that both added 0008 fail here until one is renumbered).
    line = list(reversed(list(migrations.scripts().walk_revisions())))
    assert [(r.revision, r.down_revision) for r in line] == [
        (numbered(n), numbered(n - 1) if n > 1 else None) for n in range(1, len(line) + 1)
    ]
    assert migrations.scripts().get_heads() == [head()]
    assert migrations.revisions() == tuple(r.revision for r in line)
    for script in line:
        assert Path(script.path).name.startswith(f"{script.revision}_")


SKIPPED = {"alembic_version", LEGACY_TABLE}


def shape(conn: Connection) -> dict[str, object]:
    """What the database enforces, table by table: columns, keys, checks, indexes. On SQLite
    without names or declared types: a file of the hand-written migrations has unnamed
    constraints and other type names (REAL, INTEGER for a boolean), which SQLite treats alike."""
    inspector = inspect(conn)
    sqlite = conn.dialect.name == "sqlite"
    found: dict[str, object] = {}
    for table in sorted(set(inspector.get_table_names()) - SKIPPED):
        key = inspector.get_pk_constraint(table)
        pk = tuple(key["constrained_columns"])
        columns = [
            # SQLite lets a non-INTEGER primary key column hold NULL unless it says NOT NULL.
            (c["name"], None if sqlite else repr(c["type"]), c["nullable"] and c["name"] not in pk,
             str(c.get("default")).strip("'"))
            for c in inspector.get_columns(table)
        ]  # fmt: skip
        name = (lambda found: None) if sqlite else (lambda found: found)
        found[table] = {
            "columns": columns,
            "pk": (pk, name(key.get("name"))),
            "fks": foreign_keys(conn, inspector, table),
            "unique": sorted(
                (tuple(u["column_names"]), name(u["name"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "checks": sorted(
                (" ".join(c["sqltext"].split()), name(c["name"]))
                for c in inspector.get_check_constraints(table)
            ),
            "indexes": sorted(
                (
                    i["name"],
                    tuple(i["column_names"]),
                    i["unique"],
                    str(i.get("dialect_options", {}).get(f"{conn.dialect.name}_where")),
                )
                for i in inspector.get_indexes(table)
            ),
        }
    return found


def foreign_keys(conn: Connection, inspector: Inspector, table: str) -> list[tuple[object, ...]]:
    if conn.dialect.name == "sqlite":
        # From SQLite itself: SQLAlchemy reads no ON DELETE from an inline REFERENCES clause
        # (as the hand-written migrations wrote them).
        pragma = conn.exec_driver_sql(f"PRAGMA foreign_key_list({table})")
        return sorted((row.__getattr__("from"), row.table, row.to, row.on_delete) for row in pragma)
    return sorted(
        (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
         fk["options"].get("ondelete", "NO ACTION").upper(), fk["name"])
        for fk in inspector.get_foreign_keys(table)
    )  # fmt: skip


def differences(conn: Connection) -> list[object]:
    """Alembic's autogenerate comparison of storage/schema.py with the database: what a new
    revision would have to do; empty when the database is what schema.py defines."""
    context = MigrationContext.configure(conn, opts=migrations.context_options(conn.dialect.name))
    return list(compare_metadata(context, metadata))


async def inspected(db: Db, look: Callable[[Connection], T]) -> T:
    url = f"sqlite+aiosqlite:///{db.target}" if db.kind == "sqlite" else db.target
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(look)
    finally:
        await engine.dispose()


@pytest.fixture
def other(db: Db, request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """A second, empty database of the same kind."""
    if db.kind == "sqlite":
        return Db("sqlite", str(tmp_path / "other.db"))
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return Db("postgresql", cluster.new_database())


async def test_the_revisions_make_exactly_what_schema_py_defines(db: Db, other: Db) -> None:
    await (await SqlMoodStore.open(db.target)).close()
    assert await inspected(db, differences) == []
    # What Alembic's comparison leaves out too (CHECK constraints, partial indexes): the
    # same as the tables metadata.create_all() makes from schema.py.
    await inspected(other, metadata.create_all)
    assert await inspected(db, shape) == await inspected(other, shape)


def down_and_up(conn: Connection) -> list[str]:
    """Every revision's downgrade, then every upgrade again; the tables left in between."""
    from alembic import command

    config = migrations.alembic_config(conn)
    command.downgrade(config, "base")
    left = sorted(set(inspect(conn).get_table_names()) - SKIPPED)
    command.upgrade(config, "head")
    return left


async def test_the_downgrades_undo_every_revision(db: Db) -> None:
    # The bot never downgrades; a developer trying a revision does (`python -m storage.alembic
    # downgrade -1`).
    await (await SqlMoodStore.open(db.target)).close()
    assert await inspected(db, down_and_up) == []
    assert await inspected(db, differences) == []

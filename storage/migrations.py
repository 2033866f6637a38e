"""The schema's versions: Alembic revisions (storage/alembic/versions/), run by the store at
open on its own connection, inside one transaction, up to the newest ("head").

The tables are defined once, in storage/schema.py; each revision is the step between two
versions of those definitions, written once with op.* calls for both databases (SQLite's
changes that ALTER TABLE cannot make are done in batch mode: a copy of the table).

Before Alembic, hand-written migrations 1..7 kept the version in `PRAGMA user_version`
(SQLite) or the table schema_version (PostgreSQL). Revision "000N" makes exactly what
migration N made, so such a database is stamped with its revision and upgraded from there.
Afterwards that old place holds LEGACY_GUARD, which an older bot reads as "written by a
newer version" and refuses, instead of running its migrations on top.

Alembic itself is imported only when there is something to upgrade: an up-to-date database is
recognised from alembic_version and the revisions' file names (NNNN_what.py, one line of
numbers: tests/storage/test_schema.py keeps them so), which saves its import at start-up.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Identity, text

from engine.errors import StorageError
from storage.schema import UtcTime, metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

SCRIPT_FOLDER = Path(__file__).with_name("alembic")  # env.py, versions/ (package data)
LEGACY_LAST = 7  # the newest of the hand-written migrations
LEGACY_GUARD = 1000
LEGACY_TABLE = "schema_version"  # PostgreSQL's old version table, kept for the guard


@dataclass(frozen=True)
class SchemaState:
    revisions: tuple[str, ...]  # alembic_version's rows; () before Alembic
    legacy: int  # PRAGMA user_version or schema_version's; 0 when there is none

    def is_current(self) -> bool:
        return self.revisions == (head(),) and self.legacy == LEGACY_GUARD


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_FOLDER))
    config.attributes["connection"] = connection
    return config


@functools.cache
def scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@functools.cache
def revisions() -> tuple[str, ...]:
    """The shipped revisions, oldest first."""
    names = (path.name for path in (SCRIPT_FOLDER / "versions").glob("*.py"))
    return tuple(sorted(match[1] for name in names if (match := re.match(r"(\d{4})_", name))))


def head() -> str:
    return revisions()[-1]


def known(revision: str) -> bool:
    return revision in revisions()


def read_state(connection: Connection) -> SchemaState:
    sqlite = connection.dialect.name == "sqlite"

    def exists(table: str) -> bool:
        if sqlite:
            found = f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
        else:
            found = f"SELECT to_regclass('{table}') IS NOT NULL"
        return bool(connection.scalar(text(found)))

    stamped: tuple[str, ...] = ()
    if exists("alembic_version"):
        stamped = tuple(connection.scalars(text("SELECT version_num FROM alembic_version")))
    if sqlite:
        legacy = connection.exec_driver_sql("PRAGMA user_version").scalar_one()
    elif exists(LEGACY_TABLE):
        legacy = connection.scalar(text(f"SELECT coalesce(max(version), 0) FROM {LEGACY_TABLE}"))
    else:
        legacy = 0
    return SchemaState(stamped, int(legacy))


def check(state: SchemaState, shown: str) -> None:
    """Refuse a database this bot does not know how to read: written by a newer bot."""
    unknown = [revision for revision in state.revisions if not known(revision)]
    if unknown or (not state.revisions and state.legacy > LEGACY_LAST):
        found = ", ".join(unknown) if unknown else f"version {state.legacy}"
        raise StorageError(
            f"the database {shown} has schema {found}, which this bot does not know (its newest "
            f"is {head()}); it was written by a newer version of the bot — upgrade the bot or "
            "point it at another database (it was left untouched)"
        )


def upgrade(connection: Connection, shown: str) -> None:
    """Bring the database to head inside the caller's transaction (which holds the schema
    lock); a database of the hand-written migrations is stamped with its revision first."""
    from alembic import command

    state = read_state(connection)
    check(state, shown)
    if state.is_current():
        return
    config = alembic_config(connection)
    if not state.revisions and state.legacy:
        command.stamp(config, numbered(state.legacy))
    command.upgrade(config, "head")
    _write_guard(connection)


def numbered(number: int) -> str:
    """Revision ids are numbers: 0001, 0002… (and hand-written migration N is revision N)."""
    return f"{number:04d}"


def _write_guard(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA user_version = {LEGACY_GUARD}")
        return
    connection.execute(
        text(f"CREATE TABLE IF NOT EXISTS {LEGACY_TABLE} (version INTEGER NOT NULL)")
    )
    connection.execute(text(f"DELETE FROM {LEGACY_TABLE}"))
    connection.execute(text(f"INSERT INTO {LEGACY_TABLE} (version) VALUES ({LEGACY_GUARD})"))


# --- the options of Alembic's environment (storage/alembic/env.py) ---------------------------


def context_options(dialect: str) -> dict[str, Any]:
    """What env.py configures, for the store and for `python -m storage.alembic` alike."""
    return {
        "target_metadata": metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead (the store
        # turns foreign keys off around it, so copying a parent table deletes no child rows).
        "render_as_batch": True,
        # Alembic's own comparison, less identity columns on SQLite (which has none: its
        # INTEGER PRIMARY KEY is the rowid, filled in alone).
        "compare_server_default": _compare_server_default if dialect == "sqlite" else True,
        "include_name": _include_name,
        "render_item": _render_item,
        "process_revision_directives": _number_revision,
    }


def _compare_server_default(
    context: MigrationContext, inspected: Any, column: Any, *defaults: Any
) -> bool | None:
    if isinstance(column.server_default, Identity):
        return False
    return None  # Alembic's own comparison


def _render_item(kind: str, item: Any, autogen_context: Any) -> str | bool:
    # An autogenerated revision names the schema's own types by module, imported.
    if kind == "type" and isinstance(item, UtcTime):
        autogen_context.imports.add("import storage.schema")
        return "storage.schema.UtcTime()"
    return False  # Alembic's own rendering


def _include_name(name: str | None, kind: str, parent: Any) -> bool:
    return not (kind == "table" and name == LEGACY_TABLE)


def _number_revision(context: MigrationContext, revision: Any, directives: list[Any]) -> None:
    """Revisions are numbered 0001, 0002…: the next number, unless --rev-id gave one."""
    from alembic.operations.ops import MigrationScript

    for script in directives:
        if isinstance(script, MigrationScript) and not _is_number(script.rev_id):
            current = scripts().get_current_head()
            script.rev_id = numbered(int(current) + 1 if current else 1)


def _is_number(rev_id: str | None) -> bool:
    return rev_id is not None and len(rev_id) == 4 and rev_id.isdigit()

"""Numbered schema migrations, tracked with `PRAGMA user_version`.

MIGRATIONS[0] takes a file from version 0 to 1, MIGRATIONS[1] from 1 to 2, and so on. Never edit
a migration that has shipped: append a new one, because existing files only run what they lack.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: users, mood events and conversation turns.
    """
    CREATE TABLE users (
        id               INTEGER PRIMARY KEY,
        platform         TEXT NOT NULL,
        platform_user_id TEXT NOT NULL,
        created_at       TEXT NOT NULL,
        UNIQUE (platform, platform_user_id)
    );

    -- created_at is fixed-width UTC ISO text ("2024-11-22T14:03:00.000000+00:00"), so string
    -- order is time order and range queries can use the index.
    CREATE TABLE mood_events (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        chat_id    TEXT NOT NULL,
        label      TEXT NOT NULL CHECK (label IN ('positive', 'negative')),
        p_positive REAL NOT NULL CHECK (p_positive BETWEEN 0.0 AND 1.0),
        created_at TEXT NOT NULL,
        excerpt    TEXT NULL
    );
    CREATE INDEX mood_events_user_time ON mood_events (user_id, created_at);

    CREATE TABLE turns (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        chat_id    TEXT NOT NULL,
        role       TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content    TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    -- All turns of one exchange share a timestamp; id (insertion order) then keeps the user
    -- turn before its reply.
    CREATE INDEX turns_user_chat_time ON turns (user_id, chat_id, created_at, id);
    """,
    # 2: a message shown as neutral keeps its two-way label; /mood counts it apart.
    """
    ALTER TABLE mood_events ADD COLUMN neutral INTEGER NOT NULL DEFAULT 0
        CHECK (neutral IN (0, 1));
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def split_statements(script: str) -> list[str]:
    """Split a script into single statements for `execute`.

    `executescript` would be simpler, but it commits any open transaction first, which would
    break applying a migration and bumping user_version atomically.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        # complete_statement knows about quotes and trigger bodies, so a ';' inside them
        # does not end the statement early.
        if sqlite3.complete_statement(buffer):
            if _strip_comments(buffer).strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement at end of migration: {buffer.strip()!r}")
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())

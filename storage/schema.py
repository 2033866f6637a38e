"""The tables as the queries see them (SQLAlchemy Core), for SQLite and PostgreSQL alike.

The tables are made by storage/migrations.py, never from these definitions; these only say
what the columns hold, so one set of statements serves both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UtcTime(TypeDecorator[datetime]):
    """A timezone-aware instant: timestamptz on PostgreSQL; on SQLite, fixed-width UTC ISO
    text ("2024-11-22T14:03:00.000000+00:00"), so that text order is time order."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        utc = aware(value).astimezone(UTC)
        return utc if dialect.name == "postgresql" else utc.isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.astimezone(UTC)


def aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment!r}")
    return moment


metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("platform", Text, nullable=False),
    Column("platform_user_id", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("person_id", Integer),  # linked accounts share one (migration 5)
)

mood_events = Table(
    "mood_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("chat_id", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("p_positive", Float, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("excerpt", Text),
    Column("neutral", Boolean, nullable=False, default=False),
    Column("message_id", Text),  # the platform message it labelled
    Column("corrected_label", Text),  # the user's correction: positive, negative or neutral
    Column("corrected_at", UtcTime),
)

turns = Table(
    "turns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("chat_id", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("platform", Text, primary_key=True),
    Column("chat_id", Text, primary_key=True),
    Column("message_id", Text, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("state", Text, nullable=False),  # 'received' | 'done'
    Column("received_at", UtcTime, nullable=False),
    Column("done_at", UtcTime),
    # Migration 6: a retry's needs, kept while 'received' (text is NULL once done).
    Column("text", Text),
    Column("origin", Text),
    Column("reply_ref", Text),
    Column("owner", Text),  # storage/presence.py's id of the process answering it
    Column("attempts", Integer, nullable=False, default=0),
    # Migration 8 (delivery): reply_ref holds every chunk's id, space-separated; the support
    # note's id, a send under way's key, and the answer stored but not yet shown in full
    # (JSON: text, label, p_positive, neutral, support), dropped once done.
    Column("support_ref", Text),
    Column("sending", Text),
    Column("reply", Text),
)

people = Table(
    "people",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", UtcTime, nullable=False),
)

link_codes = Table(
    "link_codes",
    metadata,
    Column("code_hash", Text, primary_key=True),  # SHA-256 of the code, never the code
    Column("user_id", Integer, nullable=False),  # who asked for it
    Column("created_at", UtcTime, nullable=False),
    Column("expires_at", UtcTime, nullable=False),
    Column("used_at", UtcTime),
)

link_attempts = Table(
    "link_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),  # who entered a code that did not work
    Column("at", UtcTime, nullable=False),
)

support_notes = Table(
    "support_notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column(
        "kind", Text, nullable=False
    ),  # the trigger: 'words' | 'stretch' (engine/chat/safety.py)
    Column("created_at", UtcTime, nullable=False),
)

digests = Table(
    "digests",
    metadata,
    Column("user_id", Integer, primary_key=True),
    Column("chat_id", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("last_sent_at", UtcTime),
)

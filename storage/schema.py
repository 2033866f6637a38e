"""The tables, defined once (SQLAlchemy Core) for SQLite and PostgreSQL alike.

The queries read them, and the Alembic revisions in storage/alembic/versions/ make them:
`python -m storage.alembic revision --autogenerate -m "what changes"` writes the next revision
from the difference between these definitions and what the revisions so far make
(docs/development.md), and tests/storage/test_schema.py fails while the two disagree on
either database.

What differs between the two databases is said here once: ids are BIGINT identity columns on
PostgreSQL and INTEGER PRIMARY KEY (the rowid) on SQLite; instants are timestamptz on
PostgreSQL and fixed-width UTC ISO text on SQLite (UtcTime). Constraint names follow
PostgreSQL's own defaults, so a database made by the old hand-written migrations has the
same names as one made by the revisions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UtcTime(TypeDecorator[datetime]):
    """A timezone-aware instant: timestamptz on PostgreSQL; on SQLite, fixed-width UTC ISO
    text ("2024-11-22T14:03:00.000000+00:00"), so that text order is time order and range
    queries can use an index."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(Text())

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


# A row id: BIGINT on PostgreSQL; on SQLite it must be exactly INTEGER to be the rowid.
RowId = BigInteger().with_variant(Integer(), "sqlite")


def row_id() -> Column[int]:
    """An id filled in by the database (Identity is PostgreSQL's; SQLite's rowid needs none)."""
    return Column("id", RowId, Identity(), primary_key=True)


def user_ref(**options: Any) -> Column[int]:
    """users.id; the user's rows go with the user (/forget deletes the users row)."""
    return Column(
        "user_id", RowId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, **options
    )


metadata = MetaData(
    # PostgreSQL's own names for unnamed constraints: a database made before these
    # definitions (by hand-written SQL) has exactly these, so a revision can name them.
    naming_convention={
        "pk": "%(table_name)s_pkey",
        "uq": "%(table_name)s_%(column_0_N_name)s_key",
        "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    }
)

users = Table(
    "users",
    metadata,
    row_id(),
    Column("platform", Text, nullable=False),
    Column("platform_user_id", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    # Accounts linked with /link share one mood history; unlinking keeps the account.
    Column("person_id", RowId, ForeignKey("people.id", ondelete="SET NULL")),
    UniqueConstraint("platform", "platform_user_id"),
    Index(
        "users_person",
        "person_id",
        postgresql_where=text("person_id IS NOT NULL"),
        sqlite_where=text("person_id IS NOT NULL"),
    ),
)

mood_events = Table(
    "mood_events",
    metadata,
    row_id(),
    user_ref(),
    Column("chat_id", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("p_positive", Float, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("excerpt", Text),
    # Shown as neutral: the two-way label is kept, /mood counts it apart.
    Column(
        "neutral",
        Boolean(create_constraint=True, name="mood_events_neutral_check"),
        nullable=False,
        default=False,
        server_default=false(),
    ),
    Column("message_id", Text),  # the platform message it labelled
    Column("corrected_label", Text),  # the user's correction: positive, negative or neutral
    Column("corrected_at", UtcTime),
    CheckConstraint("label IN ('positive', 'negative')", name="mood_events_label_check"),
    CheckConstraint("p_positive BETWEEN 0.0 AND 1.0", name="mood_events_p_positive_check"),
    CheckConstraint(
        "corrected_label IN ('positive', 'negative', 'neutral')",
        name="mood_events_corrected_label_check",
    ),
    Index("mood_events_user_time", "user_id", "created_at"),
    Index(
        "mood_events_message",
        "chat_id",
        "message_id",
        postgresql_where=text("message_id IS NOT NULL"),
        sqlite_where=text("message_id IS NOT NULL"),
    ),
    Index(
        "mood_events_corrected",
        "corrected_at",
        postgresql_where=text("corrected_label IS NOT NULL"),
        sqlite_where=text("corrected_label IS NOT NULL"),
    ),
)

turns = Table(
    "turns",
    metadata,
    row_id(),
    user_ref(),
    Column("chat_id", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    CheckConstraint("role IN ('user', 'assistant')", name="turns_role_check"),
    # All turns of one exchange share a timestamp; id (insertion order) then keeps the user
    # turn before its reply.
    Index("turns_user_chat_time", "user_id", "chat_id", "created_at", "id"),
)

# Every incoming platform message is recorded here before work on it starts ('received')
# and marked 'done' in the transaction that stores its exchange, so a message delivered twice
# is handled at most once. While 'received' it keeps what finishing it after a crash needs;
# the text is set to NULL once done (answered text is not kept).
inbox = Table(
    "inbox",
    metadata,
    Column("platform", Text, primary_key=True),
    Column("chat_id", Text, primary_key=True),
    Column("message_id", Text, primary_key=True),
    user_ref(),
    Column("state", Text, nullable=False),
    Column("received_at", UtcTime, nullable=False),
    Column("done_at", UtcTime),
    Column("text", Text),
    Column("origin", Text),  # the adapter's note of where to answer
    Column("reply_ref", Text),  # the reply message the adapter had begun
    Column("owner", Text),  # storage/presence.py's id of the process answering it
    Column("attempts", Integer, nullable=False, default=0, server_default=text("0")),
    CheckConstraint("state IN ('received', 'done')", name="inbox_state_check"),
    Index("inbox_user", "user_id"),
    # The unfinished messages, which a start-up recovery picks up.
    Index(
        "inbox_unfinished",
        "received_at",
        postgresql_where=text("state = 'received'"),
        sqlite_where=text("state = 'received'"),
    ),
)

people = Table(
    "people",
    metadata,
    row_id(),
    Column("created_at", UtcTime, nullable=False),
)

# Link codes are kept as hashes, with an expiry and a used mark.
link_codes = Table(
    "link_codes",
    metadata,
    Column("code_hash", Text, primary_key=True),  # SHA-256 of the code, never the code
    user_ref(),  # who asked for it
    Column("created_at", UtcTime, nullable=False),
    Column("expires_at", UtcTime, nullable=False),
    Column("used_at", UtcTime),
    # The account that entered the code and was asked to confirm (the last one to enter it).
    Column("offered_to", RowId, ForeignKey("users.id", ondelete="SET NULL")),
    Index("link_codes_user", "user_id"),
)

# Failed link attempts per user, so that guessing a code is bounded.
link_attempts = Table(
    "link_attempts",
    metadata,
    row_id(),
    user_ref(),
    Column("at", UtcTime, nullable=False),
    Index("link_attempts_user_time", "user_id", "at"),
)

# The weekly digest's opt-ins: a row per user who asked for it (/digest off deletes it).
digests = Table(
    "digests",
    metadata,
    Column("user_id", RowId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("chat_id", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("last_sent_at", UtcTime),  # lets one bot process of several claim a week's send
)

# The safety net's record (engine/chat/safety.py): a support note shown after a reply, who
# and when and its trigger, never the message.
support_notes = Table(
    "support_notes",
    metadata,
    row_id(),
    user_ref(),
    Column("kind", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    CheckConstraint("kind IN ('words', 'stretch')", name="support_notes_kind_check"),
    Index("support_notes_user_time", "user_id", "created_at"),
)

# Per chat, the newest platform message recorded (where a catch-up starts): its key and when,
# no text and no user. Kept apart from the inbox, so that /forget, which deletes inbox rows,
# does not move it back.
catch_up_marks = Table(
    "catch_up_marks",
    metadata,
    Column("platform", Text, primary_key=True),
    Column("chat_id", Text, primary_key=True),
    Column("message_id", Text, nullable=False),
    Column("seen_at", UtcTime, nullable=False),
)

# The daily check-in's opt-ins (/checkin off and /forget delete them); the time of day
# ("HH:MM") is read in the IANA zone beside it, and last_day ("YYYY-MM-DD", that zone's) is the
# day last claimed, so that of several bot processes one asks each day.
checkins = Table(
    "checkins",
    metadata,
    Column("user_id", RowId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("chat_id", Text, nullable=False),
    Column("at_time", Text, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("last_day", Text),
)

"""the journal: corrections, linked accounts (people), link codes and attempts

A mood event remembers the platform message it labelled, so a correction button under the
label finds it, and keeps the user's correction beside the model's label. Accounts on several
platforms can be one person (users.person_id), sharing one mood history; link codes are kept
as hashes, and failed attempts are logged per user so guessing is bounded.

Revision ID: 0004
Revises: 0003
Create Date: hand-written migration 4
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.schema

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Added as the hand-written migration did (ALTER TABLE ADD COLUMN, the CHECK inline), so
    # SQLite does not copy the table.
    op.add_column("mood_events", sa.Column("message_id", sa.Text(), nullable=True))
    op.add_column(
        "mood_events",
        sa.Column(
            "corrected_label",
            sa.Text(),
            sa.CheckConstraint(
                "corrected_label IN ('positive', 'negative', 'neutral')",
                name="mood_events_corrected_label_check",
            ),
            nullable=True,
        ),
    )
    op.add_column("mood_events", sa.Column("corrected_at", storage.schema.UtcTime(), nullable=True))
    op.create_index(
        "mood_events_message",
        "mood_events",
        ["chat_id", "message_id"],
        postgresql_where=sa.text("message_id IS NOT NULL"),
        sqlite_where=sa.text("message_id IS NOT NULL"),
    )
    op.create_index(
        "mood_events_corrected",
        "mood_events",
        ["corrected_at"],
        postgresql_where=sa.text("corrected_label IS NOT NULL"),
        sqlite_where=sa.text("corrected_label IS NOT NULL"),
    )
    # On SQLite, batch mode copies users to add the foreign key (the store turns foreign keys
    # off meanwhile, so the rows referring to users stay).
    op.create_table(
        "people",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("people_pkey")),
    )
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(
            sa.Column(
                "person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_foreign_key(
            op.f("users_person_id_fkey"), "people", ["person_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index(
            "users_person",
            ["person_id"],
            postgresql_where=sa.text("person_id IS NOT NULL"),
            sqlite_where=sa.text("person_id IS NOT NULL"),
        )
    op.create_table(
        "link_codes",
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
        sa.Column("expires_at", storage.schema.UtcTime(), nullable=False),
        sa.Column("used_at", storage.schema.UtcTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("link_codes_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("link_codes_pkey")),
    )
    op.create_index("link_codes_user", "link_codes", ["user_id"])
    op.create_table(
        "link_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", storage.schema.UtcTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("link_attempts_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("link_attempts_pkey")),
    )
    op.create_index("link_attempts_user_time", "link_attempts", ["user_id", "at"])


def downgrade() -> None:
    op.drop_table("link_attempts")
    op.drop_table("link_codes")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_index("users_person")
        batch_op.drop_constraint(op.f("users_person_id_fkey"), type_="foreignkey")
        batch_op.drop_column("person_id")
    op.drop_table("people")
    with op.batch_alter_table("mood_events") as batch_op:
        batch_op.drop_index("mood_events_corrected")
        batch_op.drop_index("mood_events_message")
        batch_op.drop_constraint("mood_events_corrected_label_check", type_="check")
        batch_op.drop_column("corrected_at")
        batch_op.drop_column("corrected_label")
        batch_op.drop_column("message_id")

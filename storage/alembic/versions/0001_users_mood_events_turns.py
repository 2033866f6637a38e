"""users, mood events and conversation turns

Revision ID: 0001
Revises:
Create Date: 2024-11-22 (hand-written migration 1)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("platform_user_id", sa.Text(), nullable=False),
        sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("users_pkey")),
        sa.UniqueConstraint(
            "platform", "platform_user_id", name=op.f("users_platform_platform_user_id_key")
        ),
    )
    op.create_table(
        "mood_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("p_positive", sa.Float(), nullable=False),
        sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=True),
        sa.CheckConstraint("label IN ('positive', 'negative')", name="mood_events_label_check"),
        sa.CheckConstraint("p_positive BETWEEN 0.0 AND 1.0", name="mood_events_p_positive_check"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("mood_events_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("mood_events_pkey")),
    )
    op.create_index("mood_events_user_time", "mood_events", ["user_id", "created_at"])
    op.create_table(
        "turns",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="turns_role_check"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("turns_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("turns_pkey")),
    )
    op.create_index("turns_user_chat_time", "turns", ["user_id", "chat_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("turns")
    op.drop_table("mood_events")
    op.drop_table("users")

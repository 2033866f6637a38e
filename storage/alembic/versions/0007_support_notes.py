"""the safety net's record: a support note shown after a reply, never the message

Revision ID: 0007
Revises: 0006
Create Date: hand-written migration 7
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "support_notes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
        sa.CheckConstraint("kind IN ('words', 'stretch')", name="support_notes_kind_check"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("support_notes_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("support_notes_pkey")),
    )
    op.create_index("support_notes_user_time", "support_notes", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_table("support_notes")

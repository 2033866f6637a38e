"""the inbox: each incoming platform message, recorded before work on it starts

Revision ID: 0002
Revises: 0001
Create Date: hand-written migration 2
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.schema

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("received_at", storage.schema.UtcTime(), nullable=False),
        sa.Column("done_at", storage.schema.UtcTime(), nullable=True),
        sa.CheckConstraint("state IN ('received', 'done')", name="inbox_state_check"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("inbox_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("platform", "chat_id", "message_id", name=op.f("inbox_pkey")),
    )
    op.create_index("inbox_user", "inbox", ["user_id"])
    op.create_index(
        "inbox_unfinished",
        "inbox",
        ["received_at"],
        postgresql_where=sa.text("state = 'received'"),
        sqlite_where=sa.text("state = 'received'"),
    )


def downgrade() -> None:
    op.drop_table("inbox")

"""the weekly digest: who opted in, the chat it goes to, when it was last sent

Revision ID: 0005
Revises: 0004
Create Date: hand-written migration 5
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.schema

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),
        sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
        sa.Column("last_sent_at", storage.schema.UtcTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("digests_user_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("digests_pkey")),
    )


def downgrade() -> None:
    op.drop_table("digests")

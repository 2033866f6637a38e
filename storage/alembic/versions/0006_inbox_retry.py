"""what finishing an unfinished message after a crash needs, kept in its inbox row

Revision ID: 0006
Revises: 0005
Create Date: hand-written migration 6
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("inbox", sa.Column("text", sa.Text(), nullable=True))
    op.add_column("inbox", sa.Column("origin", sa.Text(), nullable=True))
    op.add_column("inbox", sa.Column("reply_ref", sa.Text(), nullable=True))
    op.add_column("inbox", sa.Column("owner", sa.Text(), nullable=True))
    op.add_column(
        "inbox", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch_op:
        for column in ("attempts", "owner", "reply_ref", "origin", "text"):
            batch_op.drop_column(column)

"""an inbox row is done only once its answer is shown in full

Until then it keeps the stored answer (reply, JSON) for a restart to show again, and every
message of the reply: reply_ref (one id before) lists every chunk's id, support_ref the
support note's, sending the key of a send under way.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = ("support_ref", "sending", "reply")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("inbox", sa.Column(column, sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_column(column)

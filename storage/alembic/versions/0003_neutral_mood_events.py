"""a message shown as neutral keeps its two-way label; /mood counts it apart

Revision ID: 0003
Revises: 0002
Create Date: hand-written migration 3
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # SQLite has no boolean type: a CHECK keeps the column 0 or 1. ALTER TABLE ADD COLUMN
    # takes it inline, so the table is not copied (batch mode would drop a file's unnamed
    # CHECK constraints of the hand-written migrations).
    sqlite = op.get_bind().dialect.name == "sqlite"
    check = [sa.CheckConstraint("neutral IN (0, 1)", name="mood_events_neutral_check")]
    op.add_column(
        "mood_events",
        sa.Column(
            "neutral",
            sa.Boolean(),
            *(check if sqlite else []),
            server_default=sa.false(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("mood_events") as batch_op:
        if op.get_bind().dialect.name == "sqlite":
            batch_op.drop_constraint("mood_events_neutral_check", type_="check")
        batch_op.drop_column("neutral")

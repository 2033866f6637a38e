"""where a chat's catch-up starts, kept apart from the inbox; a link code waits for a confirmation

catch_up_marks: per chat, the newest platform message ever recorded there, its key and when,
nothing else (no text, no user). Not the inbox: /forget deletes a user's inbox rows, and a
catch-up reading from the inbox would then start before the forgotten messages and answer
(and store) them again. Filled from the inbox as it stands.
link_codes.offered_to: the account that entered a code and was asked to confirm the link.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.schema

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LINK_CODES_0004 = sa.Table(
    "link_codes",
    sa.MetaData(),
    sa.Column("code_hash", sa.Text(), nullable=False),
    sa.Column("user_id", ROW_ID, nullable=False),
    sa.Column("created_at", storage.schema.UtcTime(), nullable=False),
    sa.Column("expires_at", storage.schema.UtcTime(), nullable=False),
    sa.Column("used_at", storage.schema.UtcTime(), nullable=True),
    sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name="link_codes_user_id_fkey", ondelete="CASCADE"
    ),
    sa.PrimaryKeyConstraint("code_hash", name="link_codes_pkey"),
    sa.Index("link_codes_user", "user_id"),
)


def upgrade() -> None:
    op.create_table(
        "catch_up_marks",
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("seen_at", storage.schema.UtcTime(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "chat_id", name=op.f("catch_up_marks_pkey")),
    )
    # Per chat, the inbox row with no newer one (a longer id, or a larger one of the same length).
    op.execute(
        """
        INSERT INTO catch_up_marks (platform, chat_id, message_id, seen_at)
        SELECT i.platform, i.chat_id, i.message_id, i.received_at FROM inbox i
        WHERE NOT EXISTS (
            SELECT 1 FROM inbox n
            WHERE n.platform = i.platform AND n.chat_id = i.chat_id
              AND (length(n.message_id) > length(i.message_id)
                   OR (length(n.message_id) = length(i.message_id)
                       AND n.message_id > i.message_id))
        )
        """
    )
    # On SQLite, batch mode copies the table. It copies this definition (link_codes as
    # revision 0004 made it) rather than what reflection finds, which in a table made by the
    # hand-written migrations misses the ON DELETE CASCADE of its unnamed reference.
    with op.batch_alter_table("link_codes", copy_from=_LINK_CODES_0004) as batch_op:
        batch_op.add_column(sa.Column("offered_to", ROW_ID, nullable=True))
        batch_op.create_foreign_key(
            "link_codes_offered_to_fkey", "users", ["offered_to"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("link_codes") as batch_op:
        batch_op.drop_constraint(batch_op.f("link_codes_offered_to_fkey"), type_="foreignkey")
        batch_op.drop_column("offered_to")
    op.drop_table("catch_up_marks")

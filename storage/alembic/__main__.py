"""Alembic's command line for writing revisions from a checkout (docs/development.md):

    python -m storage.alembic revision --autogenerate -m "reply message ids"

writes storage/alembic/versions/0008_reply_message_ids.py: the next number, and op.* calls for
what storage/schema.py defines that the revisions so far do not make. Any Alembic command
works (`check`, `history`, `heads`…); each runs on a scratch in-memory SQLite database that
the revisions bring to head first, so no database and no alembic.ini are needed. The bot
itself never runs this: the store upgrades its database at open (storage/migrations.py).
"""

from __future__ import annotations

import sys

from alembic import command
from alembic.config import CommandLine
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from storage.migrations import alembic_config


def main(argv: list[str] | None = None) -> None:
    cli = CommandLine(prog="python -m storage.alembic")
    options = cli.parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    engine = create_engine("sqlite://", poolclass=StaticPool)
    with engine.begin() as connection:
        config = alembic_config(connection)
        config.cmd_opts = options
        # A written revision is formatted and linted like the rest of the code.
        hooks = {"format": "format", "lint": "check --fix"}
        for name, ruff_command in hooks.items():
            config.set_section_option("post_write_hooks", f"{name}.type", "module")
            config.set_section_option("post_write_hooks", f"{name}.module", "ruff")
            config.set_section_option(
                "post_write_hooks", f"{name}.options", f"{ruff_command} REVISION_SCRIPT_FILENAME"
            )
        config.set_section_option("post_write_hooks", "hooks", "format, lint")
        command.upgrade(config, "head")
        cli.run_cmd(config, options)


if __name__ == "__main__":
    main()

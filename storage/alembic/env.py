"""Alembic's environment: the revisions run on the connection they are given, inside its
transaction. The store gives its own at open (storage/migrations.py); `python -m
storage.alembic` gives a scratch database's. There is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context

from storage.migrations import context_options

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "storage/alembic runs on a connection it is given: the store migrates at open, "
        "and `python -m storage.alembic` writes revisions (docs/development.md)"
    )
context.configure(connection=connection, **context_options(connection.dialect.name))
with context.begin_transaction():
    context.run_migrations()

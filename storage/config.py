"""The store's settings. Every key is documented, with its default, in `.env.example`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from engine.config import ConfigGroup
from storage.target import DatabaseTarget


class StorageConfig(ConfigGroup):
    # A SQLite path or URL, or postgresql://…; empty means the SQLite file DATABASE_PATH.
    # Left out of reprs and error messages: a PostgreSQL URL may carry a password.
    database_url: str = Field("", alias="DATABASE_URL", repr=False)
    database_path: Path = Field(Path("data/bot.db"), alias="DATABASE_PATH")
    # PostgreSQL: connections kept for queries (as many more may hold users' turns).
    pool_size: int = Field(10, ge=1, le=200, alias="DATABASE_POOL_SIZE")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value.strip():
            DatabaseTarget.parse(value)  # its ValueError names the problem, never the value
        return value

    @property
    def target(self) -> DatabaseTarget:
        """DATABASE_URL when set, else the SQLite file DATABASE_PATH."""
        if self.database_url.strip():
            return DatabaseTarget.parse(self.database_url)
        return DatabaseTarget.sqlite(self.database_path)

    @property
    def files_dir(self) -> Path:
        """A folder for the bot's own files (the console's charts): the SQLite file's."""
        target = self.target
        if target.kind == "sqlite" and not target.in_memory:
            return Path(target.location).expanduser().parent
        return Path("data")

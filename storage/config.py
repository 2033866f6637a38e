"""The store's settings. Every key is documented, with its default, in `.env.example`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from engine.config import ConfigGroup
from storage.target import DatabaseTarget


@dataclass(frozen=True)
class PostgresOptions:
    """Timeouts and probes (DATABASE_* settings, documented in .env.example)."""

    connect_timeout_s: float = 10.0
    statement_timeout_s: float = 30.0
    keepalive_idle_s: int = 30
    # How often the presence lock's connection is checked (and the lock re-taken if lost).
    presence_check_s: float = 5.0

    def connect_args(self) -> dict[str, Any]:
        # keepalives: idle seconds, then 5 probes 5 s apart (server settings any user may set).
        settings = {
            "statement_timeout": str(int(self.statement_timeout_s * 1000)),
            "tcp_keepalives_idle": str(self.keepalive_idle_s),
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "5",
        }
        return {
            "timeout": self.connect_timeout_s,
            "command_timeout": self.statement_timeout_s,
            "server_settings": settings,
        }


class StorageConfig(ConfigGroup):
    # A SQLite path or URL, or postgresql://…; empty means the SQLite file DATABASE_PATH.
    # Left out of reprs and error messages: a PostgreSQL URL may carry a password.
    database_url: str = Field("", alias="DATABASE_URL", repr=False)
    database_path: Path = Field(Path("data/bot.db"), alias="DATABASE_PATH")
    # PostgreSQL: connections kept for queries (as many more may hold users' turns).
    pool_size: int = Field(10, ge=1, le=200, alias="DATABASE_POOL_SIZE")
    # PostgreSQL: give up on connecting, and on any one statement, after this long.
    connect_timeout_s: float = Field(10.0, gt=0, le=600, alias="DATABASE_CONNECT_TIMEOUT_S")
    statement_timeout_s: float = Field(30.0, gt=0, le=3600, alias="DATABASE_STATEMENT_TIMEOUT_S")
    # PostgreSQL: the server probes a connection idle this long (a vanished bot host's locks
    # go with its connections once the probes fail).
    keepalive_idle_s: int = Field(30, ge=1, le=7200, alias="DATABASE_KEEPALIVE_IDLE_S")

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
    def postgres(self) -> PostgresOptions:
        return PostgresOptions(
            connect_timeout_s=self.connect_timeout_s,
            statement_timeout_s=self.statement_timeout_s,
            keepalive_idle_s=self.keepalive_idle_s,
        )

    @property
    def files_dir(self) -> Path:
        """A folder for the bot's own files (the console's charts): the SQLite file's."""
        target = self.target
        if target.kind == "sqlite" and not target.in_memory:
            return Path(target.location).expanduser().parent
        return Path("data")

"""The store's settings. Every key is documented, with its default, in `.env.example`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.config import ConfigGroup


class StorageConfig(ConfigGroup):
    database_path: Path = Field(Path("data/bot.db"), alias="DATABASE_PATH")

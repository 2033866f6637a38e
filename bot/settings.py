"""The one settings tree: every group from the environment (and `.env`), checked at start-up.

Each package declares its own group next to the code that uses it (engine/model/config.py,
engine/chat/config.py, storage/config.py, adapters/*/config.py); this module only joins them. Every
key is documented, with its default, in `.env.example` (a test keeps the two in step).
Tokens are left out of reprs, and out of error messages, so logging can never leak them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from adapters.discord.config import DiscordConfig
from adapters.telegram.config import TelegramConfig
from engine.chat.config import ChatConfig
from engine.config import ConfigGroup, SettingsError, clean_env, settings_error
from engine.model.config import ModelConfig, OpenAIConfig, WorkerConfig
from storage.config import StorageConfig

__all__ = ["Settings", "SettingsError", "environment"]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    model: ModelConfig = Field(default_factory=ModelConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = Field("INFO", alias="LOG_LEVEL")
    telegram: TelegramConfig | None = None
    discord: DiscordConfig | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _FlatEnvironment(settings_cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from `env`, or from the process environment over `.env` when None.
        Raises SettingsError naming the first bad key."""
        try:
            return cls() if env is None else cls.model_validate(_groups(env))
        except ValidationError as error:
            raise settings_error(error) from None

    @classmethod
    def groups(cls) -> list[type[ConfigGroup]]:
        return [ModelConfig, WorkerConfig, OpenAIConfig, ChatConfig, StorageConfig,
                TelegramConfig, DiscordConfig]  # fmt: skip

    @classmethod
    def env_keys(cls) -> set[str]:
        """Every environment key the bot reads."""
        return {"LOG_LEVEL"}.union(*(group.env_keys() for group in cls.groups()))


def _groups(env: Mapping[str, str]) -> dict[str, Any]:
    """The flat environment read into each group (each raising SettingsError on a bad key)."""
    values: dict[str, Any] = {
        "model": ModelConfig.from_env(env),
        "worker": WorkerConfig.from_env(env),
        "openai": OpenAIConfig.from_env(env),
        "chat": ChatConfig.from_env(env),
        "storage": StorageConfig.from_env(env),
        "telegram": TelegramConfig.from_env(env),
        "discord": DiscordConfig.from_env(env),
    }
    values.update({key: value for key, value in clean_env(env).items() if key == "LOG_LEVEL"})
    return values


def environment(folder: Path | None = None) -> dict[str, str]:
    """The process environment over the `.env` file of `folder` (the working directory)."""
    source = DotEnvSettingsSource(Settings, env_file=(folder or Path.cwd()) / ".env",
                                  case_sensitive=True)  # fmt: skip
    process = EnvSettingsSource(Settings, case_sensitive=True)
    return {key: value for key, value in
            {**source.env_vars, **process.env_vars}.items() if value is not None}  # fmt: skip


class _FlatEnvironment(PydanticBaseSettingsSource):
    """Our keys are flat (MODEL, TELEGRAM_BOT_TOKEN…) while the tree is grouped, so the whole
    environment is handed to each group, which picks its own keys by alias."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        return _groups(environment())

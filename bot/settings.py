"""One frozen settings object, read from the environment (and `.env`), validated at start-up.

Every key is documented, with its default, in `.env.example`. Tokens are kept out of reprs so
that logging the settings can never leak them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.discord_config import DiscordConfig
from adapters.telegram_config import TelegramConfig
from engine.model_files import default_cache_dir
from engine.runner import GenerationParams
from engine.service import EngineConfig


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the key."""


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{key} must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{key} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{key} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(key, "").strip().lower() or default
    if raw not in choices:
        raise SettingsError(f"{key} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    model: str = "packaged"
    backend: str = "auto"
    llama_context_tokens: int = 8192
    model_dtype: str = "auto"
    model_cache_dir: Path = field(default_factory=default_cache_dir)
    torch_threads: int = 0
    sentiment_method: str = "logits"
    sentiment_max_tokens: int = 256
    history_max_tokens: int = 1024
    queue_size: int = 32
    max_active_replies: int = 8
    request_timeout_s: float = 120.0
    engine: EngineConfig = field(default_factory=EngineConfig)
    database_path: Path = Path("data/bot.db")
    log_level: str = "INFO"
    telegram: TelegramConfig | None = None
    discord: DiscordConfig | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        generation = GenerationParams(
            max_new_tokens=_int(env, "MAX_NEW_TOKENS", 160, 1, 2048),
            temperature=_float(env, "TEMPERATURE", 0.7, 0.0, 2.0),
            top_p=_float(env, "TOP_P", 0.8, 0.0, 1.0),
            top_k=_int(env, "TOP_K", 20, 0, 1000),
            repetition_penalty=_float(env, "REPETITION_PENALTY", 1.05, 1.0, 2.0),
        )
        timezone = env.get("TIMEZONE", "").strip() or "UTC"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"TIMEZONE is not a known time zone: {timezone!r}") from None
        engine = EngineConfig(
            generation=generation,
            history_turns=_int(env, "HISTORY_TURNS", 12, 0, 200),
            max_input_chars=_int(env, "MAX_INPUT_CHARS", 4000, 100, 100_000),
            store_message_text=_bool(env, "STORE_MESSAGE_TEXT", False),
            timezone=timezone,
        )
        cache = env.get("MODEL_CACHE_DIR", "").strip()
        backend = _choice(env, "BACKEND", "auto", ("auto", "transformers", "llama_cpp"))
        sentiment_method = _choice(env, "SENTIMENT_METHOD", "logits", ("logits", "generate"))
        if backend == "llama_cpp" and sentiment_method != "logits":
            raise SettingsError("SENTIMENT_METHOD=generate needs BACKEND=transformers")
        try:
            telegram = TelegramConfig.from_env(env)
            discord = DiscordConfig.from_env(env)
        except ValueError as error:
            raise SettingsError(str(error)) from None
        return cls(
            model=env.get("MODEL", "").strip() or "packaged",
            backend=backend,
            llama_context_tokens=_int(env, "LLAMA_CONTEXT_TOKENS", 8192, 512, 131072),
            model_dtype=_choice(env, "MODEL_DTYPE", "auto", ("auto", "float32", "bfloat16")),
            model_cache_dir=Path(cache).expanduser() if cache else default_cache_dir(),
            torch_threads=_int(env, "TORCH_THREADS", 0, 0, 256),
            sentiment_method=sentiment_method,
            sentiment_max_tokens=_int(env, "SENTIMENT_MAX_TOKENS", 256, 16, 4096),
            history_max_tokens=_int(env, "HISTORY_MAX_TOKENS", 1024, 0, 16384),
            queue_size=_int(env, "QUEUE_SIZE", 32, 1, 10_000),
            max_active_replies=_int(env, "MAX_ACTIVE_REPLIES", 8, 1, 64),
            request_timeout_s=_float(env, "REQUEST_TIMEOUT_S", 120.0, 1.0, 3600.0),
            engine=engine,
            database_path=Path(env.get("DATABASE_PATH", "").strip() or "data/bot.db"),
            log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error"))
            .upper(),
            telegram=telegram,
            discord=discord,
        )

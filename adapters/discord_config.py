"""Discord adapter settings, read from the environment (see DiscordConfig.from_env).

Kept apart from adapters/discord.py so that reading the settings does not import discord.py
and aiohttp (~0.3 s of every start, Discord configured or not).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yarl

TRIGGERS = frozenset({"mention", "reply"})


@dataclass(frozen=True)
class DiscordConfig:
    token: str = field(repr=False)  # never logged
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"
    allowed_user_ids: frozenset[int] = frozenset()  # empty = everyone
    allowed_channel_ids: frozenset[int] = frozenset()  # empty = every server channel
    reply_on_mention: bool = True
    reply_on_reply: bool = True
    edit_interval_s: float = 1.0
    command_guild_id: int | None = None  # sync slash commands to this guild only (instant)
    guild_ready_timeout_s: float = 2.0  # how long READY waits for the GUILD_CREATE burst
    ready_timeout_s: float = 60.0  # start() gives up if the gateway is not READY by then
    shutdown_grace_s: float = 5.0  # stop() lets in-flight replies finish this long

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DiscordConfig | None:
        """None when DISCORD_BOT_TOKEN is unset or empty; ValueError naming the bad key."""
        token = env.get("DISCORD_BOT_TOKEN", "").strip()
        if not token:
            return None
        defaults = cls(token=token)
        triggers = _triggers(env)
        return cls(
            token=token,
            api_base_url=_url(env, "DISCORD_API_BASE_URL", ("http", "https"))
            or defaults.api_base_url,
            gateway_url=_url(env, "DISCORD_GATEWAY_URL", ("ws", "wss")) or defaults.gateway_url,
            allowed_user_ids=_ids(env, "DISCORD_ALLOWED_USER_IDS"),
            allowed_channel_ids=_ids(env, "DISCORD_ALLOWED_CHANNEL_IDS"),
            reply_on_mention="mention" in triggers,
            reply_on_reply="reply" in triggers,
            edit_interval_s=_seconds(env, "DISCORD_EDIT_INTERVAL_S", defaults.edit_interval_s),
            command_guild_id=_one_id(env, "DISCORD_COMMAND_GUILD_ID"),
        )


def _value(env: Mapping[str, str], key: str) -> str | None:
    raw = env.get(key, "").strip()
    return raw or None


def _url(env: Mapping[str, str], key: str, schemes: tuple[str, ...]) -> str | None:
    raw = _value(env, key)
    if raw is None:
        return None
    url = yarl.URL(raw)
    if url.scheme not in schemes or not url.host:
        raise ValueError(f"{key} must be a {' or '.join(schemes)} URL, got {raw!r}")
    return raw


def _ids(env: Mapping[str, str], key: str) -> frozenset[int]:
    raw = _value(env, key) or ""
    ids = set()
    for part in re.split(r"[,\s]+", raw):
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"{key} must be comma-separated Discord ids (numbers), got {part!r}")
        ids.add(int(part))
    return frozenset(ids)


def _one_id(env: Mapping[str, str], key: str) -> int | None:
    ids = _ids(env, key)
    if len(ids) > 1:
        raise ValueError(f"{key} takes a single Discord id")
    return next(iter(ids), None)


def _triggers(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get("DISCORD_TRIGGERS")
    if raw is None:
        return TRIGGERS
    chosen = frozenset(part for part in re.split(r"[,\s]+", raw.strip().lower()) if part)
    if unknown := chosen - TRIGGERS:
        raise ValueError(
            f"DISCORD_TRIGGERS takes {', '.join(sorted(TRIGGERS))} (or nothing for DMs only), "
            f"got {', '.join(sorted(unknown))}"
        )
    return chosen


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = _value(env, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 60:
        raise ValueError(f"{key} must be between 0 and 60 seconds, got {raw!r}")
    return value

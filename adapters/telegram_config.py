"""Telegram adapter settings, read from the environment (see TelegramConfig.from_env)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_TRIGGERS = frozenset({"mention", "reply"})
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class TelegramConfig:
    token: str = field(repr=False)  # never logged
    api_base_url: str = "https://api.telegram.org/bot"
    api_file_url: str = "https://api.telegram.org/file/bot"
    allowed_user_ids: frozenset[int] = frozenset()  # empty = everyone
    group_reply_on_mention: bool = True
    group_reply_on_reply: bool = True
    edit_interval_s: float = 1.0  # private chats
    # Telegram allows a group about 20 messages a minute, edits included.
    group_edit_interval_s: float = 3.0
    poll_timeout_s: float = 10.0  # getUpdates long-poll; stop() does not wait for it
    stop_grace_s: float = 15.0  # in-flight replies get this long to finish on stop()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelegramConfig | None:
        """None when TELEGRAM_BOT_TOKEN is unset or empty; ValueError naming a bad key."""
        token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
        if not token:
            return None
        if not _TOKEN_SHAPE.match(token):
            # The message must not echo the value: it is a secret even when malformed.
            raise ValueError(
                "TELEGRAM_BOT_TOKEN does not look like a bot token "
                "(expected <digits>:<secret>, as given by @BotFather)"
            )
        triggers = _parse_triggers(env.get("TELEGRAM_GROUP_TRIGGERS", "mention,reply"))
        return cls(
            token=token,
            api_base_url=_parse_url(env, "TELEGRAM_API_BASE_URL", cls.api_base_url),
            api_file_url=_parse_url(env, "TELEGRAM_API_FILE_URL", cls.api_file_url),
            allowed_user_ids=_parse_ids(env.get("TELEGRAM_ALLOWED_USER_IDS", "")),
            group_reply_on_mention="mention" in triggers,
            group_reply_on_reply="reply" in triggers,
            edit_interval_s=_parse_seconds(env, "TELEGRAM_EDIT_INTERVAL_S", 1.0, minimum=0.1),
            group_edit_interval_s=_parse_seconds(
                env, "TELEGRAM_GROUP_EDIT_INTERVAL_S", 3.0, minimum=0.1
            ),
            poll_timeout_s=_parse_seconds(env, "TELEGRAM_POLL_TIMEOUT_S", 10.0, minimum=0.0),
            stop_grace_s=_parse_seconds(env, "TELEGRAM_STOP_GRACE_S", 15.0, minimum=0.0),
        )


def _parse_url(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, "").strip()
    if not value:
        return default
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"{key} must be an http(s) URL that the token is appended to, got {value!r}"
        )
    return value


def _parse_ids(raw: str) -> frozenset[int]:
    ids: set[int] = set()
    for part in raw.replace(";", ",").split(","):
        if not part.strip():
            continue
        try:
            ids.add(int(part.strip()))
        except ValueError:
            raise ValueError(
                "TELEGRAM_ALLOWED_USER_IDS must be comma-separated numeric Telegram user ids, "
                f"got {part.strip()!r}"
            ) from None
    return frozenset(ids)


def _parse_triggers(raw: str) -> frozenset[str]:
    words = {w.strip().lower() for w in raw.split(",") if w.strip()} - {"none"}
    unknown = words - _TRIGGERS
    if unknown:
        raise ValueError(
            "TELEGRAM_GROUP_TRIGGERS must list 'mention' and/or 'reply' (or 'none'), "
            f"got {', '.join(sorted(unknown))!r}"
        )
    return frozenset(words)


def _parse_seconds(env: Mapping[str, str], key: str, default: float, minimum: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key} must be a number of seconds, got {raw!r}") from None
    if not value >= minimum:  # also rejects NaN
        raise ValueError(f"{key} must be at least {minimum} seconds, got {raw!r}")
    return value

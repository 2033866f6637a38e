"""Telegram adapter settings (imports no platform library, so reading settings stays cheap).

Every key is documented, with its default, in `.env.example`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from engine.config import ConfigGroup, HttpUrl, IdSet

_TRIGGERS = frozenset({"mention", "reply"})
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
# Telegram's rule for a webhook's secret_token.
# Telegram allows 1-256 of these; a short one is guessable, and the secret is all that stands
# between the webhook and anyone who finds its URL: 32 at least, as for an API key.
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{32,256}$")
_LISTEN_SHAPE = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$"
)


def parse_triggers(raw: str, key: str) -> frozenset[str]:
    """ "mention,reply" → the set; "none" or nothing → empty. Shared with Discord's triggers."""
    words = {word for word in re.split(r"[,\s]+", raw.strip().lower()) if word} - {"none"}
    if unknown := words - _TRIGGERS:
        raise ValueError(
            f"{key} takes mention and/or reply (or none), got {', '.join(sorted(unknown))}"
        )
    return frozenset(words)


class TelegramConfig(ConfigGroup):
    enabled_by: ClassVar[str | None] = "TELEGRAM_BOT_TOKEN"
    derived_keys: ClassVar[frozenset[str]] = frozenset({"TELEGRAM_GROUP_TRIGGERS"})

    token: str = Field(alias="TELEGRAM_BOT_TOKEN", repr=False)  # never logged
    # The token is appended to these (a self-hosted Bot API server, or a test fake).
    api_base_url: HttpUrl = Field("https://api.telegram.org/bot", alias="TELEGRAM_API_BASE_URL")
    api_file_url: HttpUrl = Field(
        "https://api.telegram.org/file/bot", alias="TELEGRAM_API_FILE_URL"
    )
    allowed_user_ids: IdSet = Field(frozenset(), alias="TELEGRAM_ALLOWED_USER_IDS")
    # From TELEGRAM_GROUP_TRIGGERS.
    group_reply_on_mention: bool = True
    group_reply_on_reply: bool = True
    edit_interval_s: float = Field(1.0, ge=0.1, alias="TELEGRAM_EDIT_INTERVAL_S")
    # Telegram allows a group about 20 messages a minute, edits included.
    group_edit_interval_s: float = Field(3.0, ge=0.1, alias="TELEGRAM_GROUP_EDIT_INTERVAL_S")
    poll_timeout_s: float = Field(10.0, ge=0.0, alias="TELEGRAM_POLL_TIMEOUT_S")
    stop_grace_s: float = Field(15.0, ge=0.0, alias="TELEGRAM_STOP_GRACE_S")
    # Webhook mode (replicas behind a load balancer) when set; long polling when empty.
    webhook_url: str = Field("", alias="TELEGRAM_WEBHOOK_URL")
    webhook_listen: str = Field("127.0.0.1:8080", alias="TELEGRAM_WEBHOOK_LISTEN")
    webhook_secret: str = Field("", alias="TELEGRAM_WEBHOOK_SECRET", repr=False)  # never logged

    @property
    def webhook(self) -> bool:
        return bool(self.webhook_url)

    @property
    def listen_address(self) -> tuple[str, int]:
        """TELEGRAM_WEBHOOK_LISTEN as (host, port)."""
        match = _LISTEN_SHAPE.match(self.webhook_listen)
        assert match is not None  # checked when the settings were read
        return match["v6"] or match["host"], int(match["port"])

    @property
    def webhook_path(self) -> str:
        """The path the webhook listens on: the path of TELEGRAM_WEBHOOK_URL, which the load
        balancer passes on as it is."""
        return urlsplit(self.webhook_url).path.strip("/")

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> TelegramConfig:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError(
                "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET: without it anyone who "
                "finds the address could post updates as Telegram"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _triggers(cls, data: Any) -> Any:
        if isinstance(data, dict) and "TELEGRAM_GROUP_TRIGGERS" in data:
            triggers = parse_triggers(data["TELEGRAM_GROUP_TRIGGERS"], "TELEGRAM_GROUP_TRIGGERS")
            data = {
                **data,
                "group_reply_on_mention": "mention" in triggers,
                "group_reply_on_reply": "reply" in triggers,
            }
        return data

    @field_validator("token")
    @classmethod
    def _token_shape(cls, token: str) -> str:
        if not _TOKEN_SHAPE.match(token):
            # The message must not echo the value: it is a secret even when malformed.
            raise ValueError("does not look like a bot token (<digits>:<secret> from @BotFather)")
        return token

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if value and not value.startswith("https://"):
            raise ValueError("must be an https:// URL (Telegram only posts to HTTPS)")
        return value

    @field_validator("webhook_listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        match = _LISTEN_SHAPE.match(value)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError("must be host:port, e.g. 0.0.0.0:8080 or [::]:8080")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: str) -> str:
        if value and not _SECRET_SHAPE.match(value):
            # The message must not echo the value.
            raise ValueError(
                "must be 32-256 characters of A-Z, a-z, 0-9, _ and - "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

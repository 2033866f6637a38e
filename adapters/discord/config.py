"""Discord adapter settings (imports no platform library, so reading settings stays cheap).

Every key is documented, with its default, in `.env.example`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from adapters.telegram.config import parse_triggers
from engine.config import ConfigGroup, HttpUrl, IdSet


class DiscordConfig(ConfigGroup):
    enabled_by: ClassVar[str | None] = "DISCORD_BOT_TOKEN"
    derived_keys: ClassVar[frozenset[str]] = frozenset({"DISCORD_TRIGGERS"})
    blank_is_a_value: ClassVar[frozenset[str]] = frozenset({"DISCORD_TRIGGERS"})  # DMs only

    token: str = Field(alias="DISCORD_BOT_TOKEN", repr=False)  # never logged
    # An http(s) proxy for Discord's REST API and gateway (discord.py's `proxy` option).
    proxy: HttpUrl | None = Field(None, alias="DISCORD_PROXY")
    allowed_user_ids: IdSet = Field(frozenset(), alias="DISCORD_ALLOWED_USER_IDS")
    # Empty = every server channel; a thread inherits its parent channel's permission.
    allowed_channel_ids: IdSet = Field(frozenset(), alias="DISCORD_ALLOWED_CHANNEL_IDS")
    # From DISCORD_TRIGGERS.
    reply_on_mention: bool = True
    reply_on_reply: bool = True
    edit_interval_s: float = Field(1.0, gt=0, le=60, alias="DISCORD_EDIT_INTERVAL_S")
    # Sync slash commands to this guild only (instant; for development).
    command_guild_id: int | None = Field(None, gt=0, alias="DISCORD_COMMAND_GUILD_ID")
    guild_ready_timeout_s: float = 2.0  # how long READY waits for the GUILD_CREATE burst
    ready_timeout_s: float = 60.0  # start() gives up if the gateway is not READY by then
    shutdown_grace_s: float = 5.0  # stop() lets in-flight replies finish this long

    @model_validator(mode="before")
    @classmethod
    def _triggers(cls, data: Any) -> Any:
        if isinstance(data, dict) and "DISCORD_TRIGGERS" in data:
            triggers = parse_triggers(data["DISCORD_TRIGGERS"], "DISCORD_TRIGGERS")
            data = {**data, "reply_on_mention": "mention" in triggers,
                    "reply_on_reply": "reply" in triggers}  # fmt: skip
        return data

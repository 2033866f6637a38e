"""What the cogs and the correction buttons use of the Discord adapter, so that they name this
rather than import the adapter that registers them."""

from __future__ import annotations

from typing import Protocol

from adapters.discord.config import DiscordConfig
from adapters.resume import Resumer
from engine.chat.service import ChatService


class DiscordHost(Protocol):
    service: ChatService
    config: DiscordConfig
    resumer: Resumer

    def track(self) -> bool: ...

    def user_allowed(self, user_id: int) -> bool: ...

"""The weekly digest on Discord: a discord.ext.tasks loop runs it.

discord.py's tasks run at a time of day (DIGEST_TIME, aware of TIMEZONE), every day; the
loop sends only on DIGEST_DAY. `send_now` is the job's body: engine/chat/digest.py's send_digests
over every Discord opt-in in the store, each sent as a direct message (slash command answers
are ephemeral, so the digest goes privately too). A user whose DMs are closed to the bot
(403 Forbidden, "Cannot send messages to this user") is skipped and logged at INFO.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import discord
from discord.ext import tasks

from adapters.discord.scheduled import send_dm, stop_loop
from engine.chat import digest
from engine.chat.findings import WeekSummary
from engine.chat.service import ChatService
from engine.types import DigestSubscription

log = logging.getLogger(__name__)

PLATFORM = "discord"


class DiscordDigest:
    def __init__(self, service: ChatService, client: discord.Client) -> None:
        self.service = service
        self.client = client
        config = service.config
        self.loop: tasks.Loop[Any] = tasks.loop(time=config.digest_at, name="weekly-digest")(
            self._on_time
        )

    def start(self) -> None:
        if not self.loop.is_running():
            self.loop.start()

    async def stop(self) -> None:
        await stop_loop(self.loop)

    async def _on_time(self) -> None:
        config = self.service.config
        if datetime.now(config.tz).weekday() == config.digest_weekday:
            await self.send_now()

    async def send_now(self) -> digest.DigestRun:
        """Send this week's digest to every Discord opt-in (the job's body; tests call it)."""

        async def send(subscription: DigestSubscription, summary: WeekSummary) -> None:
            await send_dm(self.client, subscription.user, summary.text, summary.chart_png)

        return await digest.send_digests(self.service, PLATFORM, send)

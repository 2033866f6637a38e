"""The daily check-in on Discord: a discord.ext.tasks loop runs it.

The loop runs every minute, on the minute: `send_now`, engine/chat/checkin.py's send_checkins
over every Discord opt-in in the store, each question sent as a direct message (the opt-in is
taken in a DM only). A user whose DMs are closed to the bot (403 Forbidden) is skipped and
logged at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import discord
from discord.ext import tasks

from adapters.discord.scheduled import send_dm, stop_loop
from engine.chat import checkin
from engine.chat.scheduled import ScheduledRun
from engine.chat.service import ChatService
from engine.types import CheckinSubscription

log = logging.getLogger(__name__)

PLATFORM = "discord"
EVERY = timedelta(minutes=1)


class DiscordCheckins:
    def __init__(
        self, service: ChatService, client: discord.Client, every: timedelta = EVERY
    ) -> None:
        self.service = service
        self.client = client
        self.every = every.total_seconds()  # tests make it a fraction of a second
        self.loop: tasks.Loop[Any] = tasks.loop(seconds=self.every, name="daily-checkins")(
            self._on_time
        )
        self.loop.before_loop(self._on_the_minute)

    def start(self) -> None:
        if not self.loop.is_running():
            self.loop.start()

    async def stop(self) -> None:
        await stop_loop(self.loop)

    async def _on_the_minute(self) -> None:
        # So that a check-in at 21:00 is asked at 21:00, not at 21:00:59.
        await asyncio.sleep(self.every - time.time() % self.every)

    async def _on_time(self) -> None:
        try:
            await self.send_now()
        except Exception:
            # An error would end the loop: the next minute tries again instead.
            log.exception("discord check-in: the run failed")

    async def send_now(self) -> ScheduledRun:
        """Ask every Discord user whose check-in is due (the loop's body; tests call it)."""

        async def send(subscription: CheckinSubscription, question: str) -> None:
            await send_dm(self.client, subscription.user, question)

        return await checkin.send_checkins(self.service, PLATFORM, send)

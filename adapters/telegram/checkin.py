"""The daily check-in on Telegram: python-telegram-bot's own JobQueue runs it.

`schedule` registers one repeating job (every minute, on the minute) that runs `send_now`:
engine/chat/checkin.py's send_checkins over every Telegram opt-in in the store, so the
opt-ins served are whatever is stored at that moment, by any process, across restarts. Each
question goes to the user's private chat; a user who blocked the bot (403 Forbidden) is
skipped and logged at INFO.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from telegram import Bot
from telegram.ext import ContextTypes, Job, JobQueue

from adapters.telegram.scheduled import send_privately, warn_no_job_queue
from engine.chat import checkin
from engine.chat.scheduled import ScheduledRun
from engine.chat.service import ChatService
from engine.types import CheckinSubscription

PLATFORM = "telegram"
JOB_NAME = "daily-checkins"
EVERY = timedelta(minutes=1)
# APScheduler, under PTB's JobQueue, logs each run at INFO: two lines a minute, every minute.
_SCHEDULER_LOG = "apscheduler.executors.default"


class TelegramCheckins:
    def __init__(self, service: ChatService, every: timedelta = EVERY) -> None:
        self.service = service
        self.every = every  # how often the job looks; tests make it a fraction of a second

    def schedule(self, jobs: JobQueue | None) -> Job | None:
        """Register the repeating job; None when PTB has no JobQueue (APScheduler is missing)."""
        if jobs is None:
            warn_no_job_queue("the daily check-in")
            return None
        quiet = logging.getLogger(_SCHEDULER_LOG)
        if quiet.level < logging.WARNING:  # unset, or set lower
            quiet.setLevel(logging.WARNING)  # its warnings (a run missed) still show
        every = self.every.total_seconds()
        # On the minute, so that a check-in at 21:00 is asked at 21:00, not at 21:00:59.
        first = every - time.time() % every
        return jobs.run_repeating(self._job, interval=self.every, first=first, name=JOB_NAME)

    async def _job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_now(context.bot)

    async def send_now(self, bot: Bot) -> ScheduledRun:
        """Ask every Telegram user whose check-in is due (the job's body; tests call it)."""

        async def send(subscription: CheckinSubscription, question: str) -> None:
            await send_privately(bot, subscription.chat_id, question)

        return await checkin.send_checkins(self.service, PLATFORM, send)

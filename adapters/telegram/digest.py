"""The weekly digest on Telegram: python-telegram-bot's own JobQueue runs it.

`schedule` registers one weekly job (`run_daily` on DIGEST_DAY at DIGEST_TIME, in TIMEZONE);
the job runs `send_now`, which engine/chat/digest.py's send_digests drives over every Telegram
opt-in in the store, so the opt-ins scheduled are whatever is stored at that moment, across
restarts. A user who blocked the bot (403 Forbidden) is skipped and logged at INFO.
"""

from __future__ import annotations

import logging

from telegram import Bot
from telegram.ext import ContextTypes, Job, JobQueue

from adapters.telegram.scheduled import send_privately, warn_no_job_queue
from engine.chat import digest
from engine.chat.findings import WeekSummary
from engine.chat.service import ChatService
from engine.types import DigestSubscription

log = logging.getLogger(__name__)

PLATFORM = "telegram"
JOB_NAME = "weekly-digest"


def ptb_days(weekday: int) -> tuple[int, ...]:
    """datetime.weekday() (Monday 0 … Sunday 6) as PTB's run_daily counts: Sunday 0 … Saturday 6."""
    return ((weekday + 1) % 7,)


class TelegramDigest:
    def __init__(self, service: ChatService) -> None:
        self.service = service

    def schedule(self, jobs: JobQueue | None) -> Job | None:
        """Register the weekly job; None when PTB has no JobQueue (APScheduler is missing)."""
        if jobs is None:
            warn_no_job_queue("the weekly digest")
            return None
        config = self.service.config
        return jobs.run_daily(
            self._job, config.digest_at, days=ptb_days(config.digest_weekday), name=JOB_NAME
        )

    async def _job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.send_now(context.bot)

    async def send_now(self, bot: Bot) -> digest.DigestRun:
        """Send this week's digest to every Telegram opt-in (the job's body; tests call it)."""

        async def send(subscription: DigestSubscription, summary: WeekSummary) -> None:
            await send_privately(bot, subscription.chat_id, summary.text, summary.chart_png)

        return await digest.send_digests(self.service, PLATFORM, send)

"""What the Telegram adapter sends on its own schedule (the weekly digest, the daily check-in),
shared by both: PTB's JobQueue to run the jobs, and a private message to one user whose
refusal (the user blocked the bot, or the chat is gone) becomes RecipientGone, which
engine/chat/scheduled.py logs and skips.
"""

from __future__ import annotations

import logging

from telegram import Bot
from telegram.error import BadRequest, Forbidden

from adapters.telegram.chat import Outbox
from engine.chat.scheduled import RecipientGone

log = logging.getLogger(__name__)


def warn_no_job_queue(what: str) -> None:
    """PTB builds no JobQueue when APScheduler (its job-queue extra) is missing."""
    log.warning("telegram: no JobQueue (install python-telegram-bot[job-queue]): "
                "%s is not sent", what)  # fmt: skip


async def send_privately(bot: Bot, chat_id: str, text: str, photo: bytes | None = None) -> None:
    """`text` (and `photo`) into the user's private chat; RecipientGone when Telegram will
    not deliver there any more."""
    outbox = Outbox(bot, int(chat_id), private=True)
    try:
        await outbox.say(text)
        if photo is not None:
            await outbox.send_photo(photo)
    except Forbidden as error:  # blocked by the user, or removed from the group
        raise RecipientGone(str(error)) from error
    except BadRequest as error:
        if "chat not found" not in error.message.lower():
            raise
        raise RecipientGone(str(error)) from error

"""The weekly digest (/digest on|off): `send_digests` is the weekly job's body, which each
platform's own scheduler runs (adapters/telegram/digest.py: PTB's JobQueue;
adapters/discord/digest.py: discord.ext.tasks). For every opt-in of that platform it claims
this week's send in the store (so of several bot processes exactly one sends it; a failed send
is not retried that week), builds the week's summary (engine/chat/week.py) and hands it to the
adapter's `send`. A user the bot can no longer reach (blocked it, closed their DMs: the adapter
raises RecipientGone) is skipped and logged at INFO (engine/chat/scheduled.py: the same as the
daily check-in's).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from engine.chat.findings import WeekSummary
from engine.chat.scheduled import Outcome, RecipientGone, ScheduledRun, deliver
from engine.chat.week import WeekSource, week
from engine.errors import StorageError
from engine.types import DigestSubscription, UserKey

log = logging.getLogger(__name__)

__all__ = ["DigestRun", "RecipientGone", "send_digests", "set_digest"]

# Of several bot processes running the same weekly job, the first claims the week's send; any
# span well under a week tells "sent this time" from "sent last week".
DIGEST_RESEND_AFTER = timedelta(hours=12)


DigestSend = Callable[[DigestSubscription, WeekSummary], Awaitable[None]]
DigestRun = ScheduledRun  # what one run of the weekly job did


async def set_digest(service: WeekSource, user: UserKey, chat_id: str, on: bool) -> bool:
    """/digest on|off: the opt-in, kept in the store (so it survives restarts)."""
    return await service.store.set_digest(user, chat_id if on else None, service.now())


async def send_digests(service: WeekSource, platform: str, send: DigestSend) -> DigestRun:
    """Send this week's digest to everyone on `platform` who opted in. One user's failure
    never stops the others; the store's claim makes one process of several send each."""
    try:
        subscriptions = await service.store.digest_subscriptions(platform)
    except StorageError as error:
        log.error("%s digest: could not read the opt-ins: %s", platform, error)
        return DigestRun()

    async def send_one(subscription: DigestSubscription) -> Outcome:
        now = service.now()
        if not await service.store.claim_digest(subscription.user, now - DIGEST_RESEND_AFTER, now):
            return "already_sent"
        summary = await week(service, subscription.user, subscription.chat_id, digest=True)
        await send(subscription, summary)
        return "sent"

    return await deliver(platform, "digest", subscriptions, lambda s: s.user, send_one, log)

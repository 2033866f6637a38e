"""The weekly digest (/digest on|off): `send_digests` is the weekly job's body, which each
platform's own scheduler runs (adapters/telegram/digest.py: PTB's JobQueue;
adapters/discord/digest.py: discord.ext.tasks). For every opt-in of that platform it claims
this week's send in the store (so of several bot processes exactly one sends it; a failed send
is not retried that week), builds the week's summary (engine/chat/week.py) and hands it to the
adapter's `send`. A user the bot can no longer reach (blocked it, closed their DMs: the adapter
raises RecipientGone) is skipped and logged at INFO.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from engine.chat.findings import WeekSummary
from engine.chat.week import WeekSource, week
from engine.errors import StorageError
from engine.types import DigestSubscription, UserKey

log = logging.getLogger(__name__)

# Of several bot processes running the same weekly job, the first claims the week's send; any
# span well under a week tells "sent this time" from "sent last week".
DIGEST_RESEND_AFTER = timedelta(hours=12)


class RecipientGone(Exception):
    """The platform will not deliver to this user (they blocked the bot, closed their DMs)."""


DigestSend = Callable[[DigestSubscription, WeekSummary], Awaitable[None]]


@dataclass
class DigestRun:
    """What one run of the weekly job did: for its log line, and for the tests."""

    sent: list[UserKey] = field(default_factory=list)
    unreachable: list[UserKey] = field(default_factory=list)
    already_sent: list[UserKey] = field(default_factory=list)
    failed: list[UserKey] = field(default_factory=list)


async def set_digest(service: WeekSource, user: UserKey, chat_id: str, on: bool) -> bool:
    """/digest on|off: the opt-in, kept in the store (so it survives restarts)."""
    return await service.store.set_digest(user, chat_id if on else None, service.now())


async def send_digests(service: WeekSource, platform: str, send: DigestSend) -> DigestRun:
    """Send this week's digest to everyone on `platform` who opted in. One user's failure
    never stops the others; the store's claim makes one process of several send each."""
    run = DigestRun()
    try:
        subscriptions = await service.store.digest_subscriptions(platform)
    except StorageError as error:
        log.error("%s digest: could not read the opt-ins: %s", platform, error)
        return run
    for subscription in subscriptions:
        user = subscription.user
        try:
            now = service.now()
            if not await service.store.claim_digest(user, now - DIGEST_RESEND_AFTER, now):
                run.already_sent.append(user)
                continue
            # In line with the user's messages, as /mood week is; the bot's own job is
            # never refused, it waits its turn.
            async with service.turn(user, capped=False):
                summary = await week(service, user, subscription.chat_id, digest=True)
            await send(subscription, summary)
        except RecipientGone as gone:
            log.info("%s digest: user %s cannot be reached (%s): skipped",
                     platform, user.user_id, gone)  # fmt: skip
            run.unreachable.append(user)
        except Exception:
            log.exception("%s digest: sending to user %s failed", platform, user.user_id)
            run.failed.append(user)
        else:
            run.sent.append(user)
    counts = len(run.sent), len(run.unreachable), len(run.already_sent), len(run.failed)
    log.info("%s digest: %d sent, %d unreachable, %d sent already, %d failed", platform, *counts)
    return run

"""What the bot sends on its own, at a time, rather than as an answer: the weekly digest
(engine/chat/digest.py) and the daily check-in (engine/chat/checkin.py).

Both go to every opted-in user of a platform in turn, the same way: `deliver` runs one user's
send after the other, each behind the store's claim (so of several bot processes exactly one
sends it), and one user's failure never stops the others. A user the platform will not
deliver to any more (they blocked the bot, closed their DMs: the adapter raises
RecipientGone) is skipped and logged at INFO; any other failure is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from engine.types import UserKey


class RecipientGone(Exception):
    """The platform will not deliver to this user (they blocked the bot, closed their DMs)."""


# What one user's send did: sent; claimed by another process (or an earlier run) already;
# or left out on purpose (a check-in on a day the user already wrote).
Outcome = Literal["sent", "already_sent", "skipped"]


@dataclass
class ScheduledRun:
    """What one run of a scheduled job did: for its log line, and for the tests."""

    sent: list[UserKey] = field(default_factory=list)
    unreachable: list[UserKey] = field(default_factory=list)
    already_sent: list[UserKey] = field(default_factory=list)
    failed: list[UserKey] = field(default_factory=list)
    skipped: list[UserKey] = field(default_factory=list)


Item = TypeVar("Item")


async def deliver(
    platform: str,
    what: str,
    items: Sequence[Item],
    user_of: Callable[[Item], UserKey],
    send_one: Callable[[Item], Awaitable[Outcome]],
    logger: logging.Logger,
    *,
    log_empty: bool = True,
) -> ScheduledRun:
    """Run `send_one` for each item (one user's opt-in), in order, and log what happened
    to `logger` (the feature's own) under `what` ("digest", "check-in"). `log_empty=False`
    keeps a run with nothing to do out of the log (a job that looks every minute)."""
    run = ScheduledRun()
    for item in items:
        user = user_of(item)
        try:
            outcome = await send_one(item)
        except RecipientGone as gone:
            logger.info("%s %s: user %s cannot be reached (%s): skipped",
                     platform, what, user.user_id, gone)  # fmt: skip
            run.unreachable.append(user)
        except Exception:
            logger.exception("%s %s: sending to user %s failed", platform, what, user.user_id)
            run.failed.append(user)
        else:
            {"sent": run.sent, "already_sent": run.already_sent, "skipped": run.skipped}[
                outcome
            ].append(user)
    if items or log_empty:
        counts = len(run.sent), len(run.unreachable), len(run.already_sent), len(run.failed)
        skipped = f", {len(run.skipped)} skipped" if run.skipped else ""
        logger.info("%s %s: %d sent, %d unreachable, %d sent already, %d failed%s",
                 platform, what, *counts, skipped)  # fmt: skip
    return run

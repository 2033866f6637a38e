"""`python -m tests.scripted_bot …`: the real bot process (settings, store, adapters, worker,
signals) on the scripted model instead of the real one, so that a test can run several bot
processes at once on two cores. Takes the same arguments and settings as `python -m bot`.

SCRIPTED_DELAY_S: seconds per decoded word (default 0). SCRIPTED_TAG_DELAY_S: seconds each label
takes (default 0; a process to kill before its label is out); each label pass logs
"scripted: labelling" as it starts, so a test knows a handler is in the model.
PARENT_SSL_CERT_FILE: the CA bundle of the test's TLS proxy, for a bot that talks to the Discord
fake. SCRIPTED_REPLY=history: each reply says how many earlier turns its prompt held ("seen 4
turns"), so a test can read from the database whether every message saw all of the user's
messages before it. SCRIPTED_WEBHOOK_FD: an inherited listening socket the Telegram webhook serves
on (tests/webhook_socket.py).
SCRIPTED_DIGEST_AFTER_S: the weekly digest is due that many seconds after the Telegram adapter
schedules it (its DIGEST_DAY and DIGEST_TIME, set then), so a test need not guess how long the
process takes to start; the time is logged ("scripted: the digest is due at <ISO time>").
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

# Importing the tests package made this process a loopback CA of its own; a test that runs
# this bot against its Discord fake passes its CA instead (before aiohttp reads the bundle).
if os.environ.get("PARENT_SSL_CERT_FILE"):
    os.environ["SSL_CERT_FILE"] = os.environ["PARENT_SSL_CERT_FILE"]

from bot.__main__ import main  # imported after the CA is chosen
from engine.types import ReplyRequest, Sentiment
from tests.scripted import ScriptedReply, ScriptedRunner


class HistoryRunner(ScriptedRunner):
    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        print(f"scripted: labelling {len(texts)} text(s)", file=sys.stderr, flush=True)
        return super().tag(texts)

    def start_reply(self, request: ReplyRequest) -> ScriptedReply:
        if os.environ.get("SCRIPTED_REPLY") == "history":
            self.reply_text = f"seen {len(request.history)} turns"
        return super().start_reply(request)


def runner() -> HistoryRunner:
    return HistoryRunner(
        delay_s=float(os.environ.get("SCRIPTED_DELAY_S") or 0),
        tag_delay_s=float(os.environ.get("SCRIPTED_TAG_DELAY_S") or 0),
    )


def digest_due_after(seconds: float) -> None:
    from datetime import datetime, timedelta

    from adapters.telegram.digest import TelegramDigest
    from engine.chat.config import WEEKDAYS

    schedule = TelegramDigest.schedule

    def schedule_soon(self: TelegramDigest, jobs: Any) -> Any:
        config = self.service.config
        due = datetime.now(config.tz) + timedelta(seconds=seconds)
        self.service.config = config.model_copy(
            update={"digest_day": WEEKDAYS[due.weekday()], "digest_time": f"{due:%H:%M:%S}"}
        )
        print(f"scripted: the digest is due at {due.replace(microsecond=0).isoformat()}",
              file=sys.stderr, flush=True)  # fmt: skip
        return schedule(self, jobs)

    TelegramDigest.schedule = schedule_soon  # type: ignore[method-assign]


if __name__ == "__main__":
    if after := os.environ.get("SCRIPTED_DIGEST_AFTER_S"):
        digest_due_after(float(after))
    if fd := os.environ.get("SCRIPTED_WEBHOOK_FD"):
        from tests.webhook_socket import serve_webhooks_on  # imports telegram: only if asked

        serve_webhooks_on(socket.socket(fileno=int(fd)))
    sys.exit(main(runner_factory=runner))

"""The weekly digest in real bot processes on the scripted model (tests/scripted_bot.py),
against the Telegram fake: /digest on in one process, the process stopped, a new one started
whose JobQueue fires 3 s after it scheduled the digest; the opt-ins stored by the first are sent,
and a user who blocked the bot meanwhile is skipped without an error."""

from __future__ import annotations

import asyncio
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.test_journal_e2e import START_S, scripted_env
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.support import bot_process

USER, BLOCKER = 6161, 6262
DUE = re.compile(r"scripted: the digest is due at (\S+)")


async def answered(api: FakeTelegramAPI, user: int, text: str, fragment: str) -> None:
    api.private_text(user, text)

    def seen() -> bool:
        return any(fragment in shown for shown in api.bot_texts(user))

    await api.wait_for(seen, START_S, what=f"the answer to {text!r}")


async def test_digest_opt_in_survives_a_restart_and_is_sent_on_time(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        base = {"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN, "TELEGRAM_API_BASE_URL": api.base_url,
                "TELEGRAM_API_FILE_URL": api.file_url}  # fmt: skip
        first_out, first_err = tmp_path / "out1.txt", tmp_path / "err1.txt"
        async with bot_process(tmp_path, scripted_env(db, **base), first_out, first_err,
                               "tests.scripted_bot") as first:  # fmt: skip
            for user in (USER, BLOCKER):
                await answered(api, user, "what a great day", "reply to")
                await answered(api, user, "/digest on", "/digest off")
            first.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(first.wait(), 60) == 0

        api.blocked_by.add(BLOCKER)
        # Due 3 s after the second process schedules it (tests/scripted_bot.py), in UTC
        # whatever the machine's TIMEZONE: no guess at how long the process takes to start.
        when = {"SCRIPTED_DIGEST_AFTER_S": "3", "TIMEZONE": "UTC"}
        env = scripted_env(db, **base, **when, LOG_LEVEL="INFO")
        out, err = tmp_path / "out2.txt", tmp_path / "err2.txt"
        async with bot_process(tmp_path, env, out, err, "tests.scripted_bot") as second:
            due_line = await api.wait_for(lambda: DUE.search(err.read_text()), START_S,
                                          what="the digest scheduled")  # fmt: skip
            assert due_line is not None
            due = datetime.fromisoformat(due_line[1])
            digest = await api.wait_for(
                lambda: next((t for t in api.bot_texts(USER) if "weekly mood digest" in t), None),
                START_S,
                what="the digest",
            )
            sent_at = datetime.now(UTC)
            await api.wait_for(lambda: "digest: 1 sent, 1 unreachable" in err.read_text(),
                               START_S, what="the run's log line")  # fmt: skip
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 60) == 0
    assert digest is not None
    assert "😄 1" in digest
    assert sent_at >= due  # sent by the scheduler at its time, not at start-up
    photos = [c.params["chat_id"] for c in api.calls_to("sendPhoto", ok_only=True)]
    assert photos == [USER]
    log = err.read_text(errors="replace")
    assert f"user {BLOCKER} cannot be reached" in log
    assert "Traceback" not in log
    assert " ERROR " not in log

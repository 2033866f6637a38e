"""`python -m bot` with a Telegram token, end to end: a subprocess on the real packaged model
polls the loopback fake Bot API, answers one message, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from engine.chat import texts
from engine.types import Sentiment, UserKey
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.support import bot_process, final_reply

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123:TEST"
USER = 4242
FIRST_RUN_TIMEOUT_S = 1200.0  # the first run joins the packaged model; a guard only


async def test_python_m_bot_answers_on_telegram_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    async with FakeTelegramAPI(TOKEN) as api:
        env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": api.base_url,
            "TELEGRAM_API_FILE_URL": api.file_url,
            "DATABASE_PATH": str(db),
            "MAX_NEW_TOKENS": "60",
            "REQUEST_TIMEOUT_S": "900",  # a loaded machine is slow; the deadline is not tested here
            "LOG_LEVEL": "debug",  # the token must stay out of even the most verbose logs
            "PYTHONPATH": str(ROOT),
        }
        # MODEL unset: the default tier, as a new user runs it.
        for key in (
            "DISCORD_BOT_TOKEN",
            "TELEGRAM_ALLOWED_USER_IDS",
            "TELEGRAM_GROUP_TRIGGERS",
            "MODEL",
        ):
            env.pop(key, None)
        async with bot_process(tmp_path, env, stdout_path, stderr_path) as process:
            api.private_text(USER, "今天的实验终于成功了，太棒了！")
            shown = await _final_reply(api, db, process)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=60)
    stdout = stdout_path.read_text(errors="replace")
    stderr = stderr_path.read_text(errors="replace")

    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    leaks = [line for line in (stdout + stderr).splitlines() if TOKEN.lower() in line.lower()]
    assert leaks == []
    label, _, reply = shown.partition("\n\n")
    # An unmistakably happy message: the default tier labels it positive, and the label line
    # says so (its score is the stored one, which final_reply compared).
    positive = texts.label_line(Sentiment("positive", 1.0), with_score=False)
    assert label.startswith(f"{positive} ("), label  # positive, not shown as neutral
    assert reply.strip()
    assert api.calls_to("setMyCommands")
    assert api.calls_to("sendChatAction")


async def _final_reply(api: FakeTelegramAPI, db: Path, process: asyncio.subprocess.Process) -> str:
    user = UserKey("telegram", str(USER))
    return await final_reply(lambda: api.bot_texts(USER), db, process, user, str(USER),
                             FIRST_RUN_TIMEOUT_S)  # fmt: skip

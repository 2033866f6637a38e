"""`python -m bot` with a Discord token, end to end: a subprocess on the real packaged model
connects to the loopback fake gateway, answers one DM, and exits cleanly on SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from engine.chat import texts
from engine.types import Sentiment, UserKey
from tests.fakes.discord_api import FakeDiscord, user_payload
from tests.support import bot_process, final_reply

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fake-token"
USER_ID, DM_CHANNEL = 4242, 5151
STARTUP_TIMEOUT_S = 300.0  # the first run converts the packaged model into the cache
REPLY_TIMEOUT_S = 1200.0  # a guard only: within REQUEST_TIMEOUT_S the reply comes


async def test_python_m_bot_answers_a_discord_dm_and_stops_on_sigint(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    fake = FakeDiscord(token=TOKEN)
    await fake.start()
    env = {
        **os.environ,
        "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_PROXY": fake.proxy_url,
        "DATABASE_PATH": str(db),
        "MAX_NEW_TOKENS": "60",
        "REQUEST_TIMEOUT_S": "900",  # a loaded machine is slow; the deadline is not tested here
        "LOG_LEVEL": "debug",  # the token must stay out of even the most verbose logs
        "PYTHONPATH": str(ROOT),
    }
    # MODEL unset: the default tier, as a new user runs it.
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_ALLOWED_USER_IDS", "DISCORD_TRIGGERS", "MODEL"):
        env.pop(key, None)
    try:
        async with bot_process(tmp_path, env, stdout_path, stderr_path) as process:
            await fake.wait_for(lambda: fake.identifies, timeout=STARTUP_TIMEOUT_S)
            author = user_payload(USER_ID, "alice")
            text = "今天的实验终于成功了，太棒了！"
            await fake.dispatch(
                "MESSAGE_CREATE",
                fake.message(channel_id=DM_CHANNEL, author=author, content=text),
            )
            shown = await _final_reply(fake, db, process)
            process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        await fake.close()
    stdout = stdout_path.read_text(errors="replace")
    stderr = stderr_path.read_text(errors="replace")

    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    leaks = [line for line in (stdout + stderr).splitlines() if TOKEN in line]
    assert leaks == []
    label, _, reply = shown.partition("\n\n")
    # An unmistakably happy message: the default tier labels it positive, and the label line
    # says so (its score is the stored one, which final_reply compared).
    positive = texts.label_line(Sentiment("positive", 1.0), with_score=False)
    assert label.startswith(f"{positive} ("), label  # positive, not shown as neutral
    assert reply.strip()
    assert fake.calls_to("POST /channels/{channel_id}/typing")
    assert {c["name"] for c in fake.commands[None]} >= {"mood", "reset", "forget", "help"}


async def _final_reply(fake: FakeDiscord, db: Path, process: asyncio.subprocess.Process) -> str:
    def shown() -> list[str]:
        return [m["content"] for m in fake.channel_messages(DM_CHANNEL)]

    user = UserKey("discord", str(USER_ID))
    return await final_reply(shown, db, process, user, str(DM_CHANNEL), REPLY_TIMEOUT_S)

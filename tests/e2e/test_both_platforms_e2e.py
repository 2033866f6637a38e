"""`python -m bot` with a Telegram and a Discord token, end to end: one subprocess on the real
packaged model (the default tier, as a new user runs it) polls the loopback fake Bot API and
connects to the loopback fake gateway, answers one message on each, keeps both tokens out of
its debug logs, and exits cleanly on SIGINT.

One process for both platforms: each start loads the model, the costliest part of these tests.
A platform alone in a process (and SIGTERM) is run by the scripted-model e2e tests."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from engine.chat import texts
from engine.types import Label, Sentiment, UserKey
from tests.fakes.discord_api import FakeDiscord, user_payload
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.support import bot_process, final_reply

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
TELEGRAM_TOKEN = "123:TEST"
DISCORD_TOKEN = "fake-token"
TELEGRAM_USER = 4242
DISCORD_USER, DM_CHANNEL = 4242, 5151
STARTUP_TIMEOUT_S = 300.0  # the first run converts the packaged model into the cache
REPLY_TIMEOUT_S = 1200.0  # a guard only: within REQUEST_TIMEOUT_S the reply comes


async def test_telegram_and_discord_in_one_process_on_the_default_tier(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    discord = FakeDiscord(token=DISCORD_TOKEN)
    await discord.start()
    try:
        async with FakeTelegramAPI(TELEGRAM_TOKEN) as telegram:
            env = {
                **os.environ,
                "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
                "TELEGRAM_API_BASE_URL": telegram.base_url,
                "TELEGRAM_API_FILE_URL": telegram.file_url,
                "DISCORD_BOT_TOKEN": DISCORD_TOKEN,
                "DISCORD_PROXY": discord.proxy_url,
                "DATABASE_PATH": str(db),
                "MAX_NEW_TOKENS": "24",  # a reply, not its length, is tested
                "REQUEST_TIMEOUT_S": "900",  # load is slow; the deadline is not tested here
                "LOG_LEVEL": "debug",  # the tokens must stay out of even the most verbose logs
                "PYTHONPATH": str(ROOT),
            }
            # MODEL unset: the default tier, as a new user runs it.
            for key in ("TELEGRAM_ALLOWED_USER_IDS", "TELEGRAM_GROUP_TRIGGERS",
                        "DISCORD_ALLOWED_USER_IDS", "DISCORD_TRIGGERS", "MODEL"):  # fmt: skip
                env.pop(key, None)
            async with bot_process(tmp_path, env, stdout_path, stderr_path) as process:
                await discord.wait_for(lambda: discord.identifies, timeout=STARTUP_TIMEOUT_S)
                # Both messages arrive together: the one model serves both platforms.
                telegram.private_text(TELEGRAM_USER, "今天的实验终于成功了，太棒了！")
                author = user_payload(DISCORD_USER, "alice")
                await discord.dispatch(
                    "MESSAGE_CREATE",
                    discord.message(
                        channel_id=DM_CHANNEL,
                        author=author,
                        content="This is the worst day of my life.",
                    ),
                )
                shown_telegram, shown_discord = await asyncio.gather(
                    telegram_final_reply(telegram, db, process),
                    discord_final_reply(discord, db, process),
                )
                process.send_signal(signal.SIGINT)
                code = await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        await discord.close()

    stdout = stdout_path.read_text(errors="replace")
    stderr = stderr_path.read_text(errors="replace")
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    for token in (TELEGRAM_TOKEN, DISCORD_TOKEN):
        leaks = [line for line in (stdout + stderr).splitlines() if token.lower() in line.lower()]
        assert leaks == [], token
    assert stderr.count("model ready") == 1  # one model for both adapters
    assert "telegram adapter running" in stderr
    assert "discord adapter running" in stderr
    # Two unmistakable messages: each platform shows its own message's label, not the other's,
    # and the label line says so (its score is the stored one, which final_reply compared).
    expected: list[tuple[str, Label]] = [(shown_telegram, "positive"), (shown_discord, "negative")]
    for shown, tone in expected:
        label, _, reply = shown.partition("\n\n")
        line = texts.label_line(Sentiment(tone, 1.0), with_score=False)
        assert label.startswith(f"{line} ("), (tone, label)  # not shown as neutral
        assert reply.strip()
    assert telegram.calls_to("setMyCommands")
    assert telegram.calls_to("sendChatAction")
    assert discord.calls_to("POST /channels/{channel_id}/typing")
    assert {c["name"] for c in discord.commands[None]} >= {"mood", "reset", "forget", "help"}


async def telegram_final_reply(
    api: FakeTelegramAPI, db: Path, process: asyncio.subprocess.Process
) -> str:
    user = UserKey("telegram", str(TELEGRAM_USER))
    return await final_reply(lambda: api.bot_texts(TELEGRAM_USER), db, process, user,
                             str(TELEGRAM_USER), REPLY_TIMEOUT_S)  # fmt: skip


async def discord_final_reply(
    fake: FakeDiscord, db: Path, process: asyncio.subprocess.Process
) -> str:
    def shown() -> list[str]:
        return [m["content"] for m in fake.channel_messages(DM_CHANNEL)]

    user = UserKey("discord", str(DISCORD_USER))
    return await final_reply(shown, db, process, user, str(DM_CHANNEL), REPLY_TIMEOUT_S)

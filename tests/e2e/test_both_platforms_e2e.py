"""Telegram and Discord together in one `python -m bot` process: one model, one database."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from engine.chat import texts
from engine.model.model_files import LIGHT_MODEL
from engine.types import Label, Sentiment
from tests.e2e.test_discord_e2e import DM_CHANNEL
from tests.e2e.test_discord_e2e import TOKEN as DISCORD_TOKEN
from tests.e2e.test_discord_e2e import USER_ID as DISCORD_USER
from tests.e2e.test_discord_e2e import _final_reply as discord_final_reply
from tests.e2e.test_telegram_e2e import TOKEN as TELEGRAM_TOKEN
from tests.e2e.test_telegram_e2e import USER as TELEGRAM_USER
from tests.e2e.test_telegram_e2e import _final_reply as telegram_final_reply
from tests.fakes.discord_api import FakeDiscord, user_payload
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.support import bot_process

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]


async def test_telegram_and_discord_share_one_process(tmp_path: Path) -> None:
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
                "MAX_NEW_TOKENS": "40",
                "REQUEST_TIMEOUT_S": "900",  # load is slow; the deadline is not tested here
                "MODEL": LIGHT_MODEL,  # Telegram and Discord e2e alone run the default
                "PYTHONPATH": str(ROOT),
            }
            for key in ("TELEGRAM_ALLOWED_USER_IDS", "DISCORD_ALLOWED_USER_IDS"):
                env.pop(key, None)
            async with bot_process(tmp_path, env, stdout_path, stderr_path) as process:
                await discord.wait_for(lambda: discord.identifies, timeout=300)
                # Both messages arrive together: the one model serves both platforms.
                telegram.private_text(TELEGRAM_USER, "I finally passed my driving test!")
                author = user_payload(DISCORD_USER, "alice")
                await discord.dispatch(
                    "MESSAGE_CREATE",
                    discord.message(
                        channel_id=DM_CHANNEL, author=author, content="今天好累，什么都不顺。"
                    ),
                )
                shown_telegram, shown_discord = await asyncio.gather(
                    telegram_final_reply(telegram, db, process),
                    discord_final_reply(discord, db, process),
                )
                process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        await discord.close()

    stderr = stderr_path.read_text(errors="replace")
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.count("model ready") == 1  # one model for both adapters
    assert "telegram adapter running" in stderr
    assert "discord adapter running" in stderr
    # Two unmistakable messages: each platform shows its own message's label, not the other's.
    expected: list[tuple[str, Label]] = [(shown_telegram, "positive"), (shown_discord, "negative")]
    for shown, tone in expected:
        label, _, reply = shown.partition("\n\n")
        line = texts.label_line(Sentiment(tone, 1.0), with_score=False)
        assert label.startswith(f"{line} ("), (tone, label)
        assert reply.strip()

"""`python -m bot` with a Telegram token, end to end: a subprocess on the real packaged model
polls the loopback fake Bot API, answers one message, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import texts
from engine.types import Sentiment, UserKey
from storage import SqliteMoodStore
from tests.fakes.telegram_api import FakeTelegramAPI

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123:TEST"
USER = 4242
FIRST_RUN_TIMEOUT_S = 300.0  # the first run converts the packaged model into the cache


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
            "LOG_LEVEL": "debug",  # the token must stay out of even the most verbose logs
            "PYTHONPATH": str(ROOT),
        }
        for key in ("DISCORD_BOT_TOKEN", "TELEGRAM_ALLOWED_USER_IDS", "TELEGRAM_GROUP_TRIGGERS"):
            env.pop(key, None)
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            # Files, not pipes: debug logging would fill a pipe nobody reads until the end.
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot",
                cwd=tmp_path,  # no .env from the repo can leak in
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            )  # fmt: skip
            try:
                api.private_text(USER, "今天的实验终于成功了，太棒了！")
                shown = await _final_reply(api, db, process)
                process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), timeout=60)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    stdout = stdout_path.read_text(errors="replace")
    stderr = stderr_path.read_text(errors="replace")

    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    leaks = [line for line in (stdout + stderr).splitlines() if TOKEN.lower() in line.lower()]
    assert leaks == []
    label, _, reply = shown.partition("\n\n")
    assert label.startswith(("😄 情感判断: ", "😔 情感判断: "))
    assert reply.strip()
    assert api.calls_to("setMyCommands") and api.calls_to("sendChatAction")


async def _final_reply(api: FakeTelegramAPI, db: Path, process: asyncio.subprocess.Process) -> str:
    """Wait until the chat shows exactly the stored reply under the stored label.

    The engine stores the exchange before it reports the reply done, and the renderer's last
    edit follows; so once the chat matches the database, the reply is final.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FIRST_RUN_TIMEOUT_S
    user = UserKey("telegram", str(USER))
    while loop.time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"python -m bot exited early with {process.returncode}")
        shown = api.bot_texts(USER)
        if shown and db.exists():
            store = await SqliteMoodStore.open(db)
            try:
                events = await store.mood_events(user, datetime(2000, 1, 1, tzinfo=UTC))
                turns = await store.recent_turns(user, str(USER), 2)
            finally:
                await store.close()
            if events and turns:
                sentiment = Sentiment(events[0].label, events[0].p_positive)
                expected = f"{texts.label_line(sentiment)}\n\n{turns[-1].content}"
                if shown == [expected]:
                    return expected
        await asyncio.sleep(0.5)
    raise AssertionError(f"no final reply in time; the chat shows {api.bot_texts(USER)!r}")

"""`python -m bot` with a Discord token, end to end: a subprocess on the real packaged model
connects to the loopback fake gateway, answers one DM, and exits cleanly on SIGINT."""

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
from tests.fakes.discord_api import FakeDiscord, user_payload

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "fake-token"
USER_ID, DM_CHANNEL = 4242, 5151
STARTUP_TIMEOUT_S = 300.0  # the first run converts the packaged model into the cache
REPLY_TIMEOUT_S = 180.0


async def test_python_m_bot_answers_a_discord_dm_and_stops_on_sigint(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    fake = FakeDiscord(token=TOKEN)
    await fake.start()
    env = {
        **os.environ,
        "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_API_BASE_URL": fake.api_base_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DATABASE_PATH": str(db),
        "MAX_NEW_TOKENS": "60",
        "LOG_LEVEL": "debug",  # the token must stay out of even the most verbose logs
        "PYTHONPATH": str(ROOT),
    }
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_ALLOWED_USER_IDS", "DISCORD_TRIGGERS"):
        env.pop(key, None)
    try:
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            # Files, not pipes: debug logging would fill a pipe nobody reads until the end.
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot",
                cwd=tmp_path,  # no .env from the repo can leak in
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            )  # fmt: skip
            try:
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
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        await fake.close()
    stdout = stdout_path.read_text(errors="replace")
    stderr = stderr_path.read_text(errors="replace")

    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    leaks = [line for line in (stdout + stderr).splitlines() if TOKEN in line]
    assert leaks == []
    label, _, reply = shown.partition("\n\n")
    assert label.startswith(("😄 情感判断: ", "😔 情感判断: "))
    assert reply.strip()
    assert fake.calls_to("POST /channels/{channel_id}/typing")
    assert {c["name"] for c in fake.commands[None]} >= {"mood", "reset", "forget", "help"}


async def _final_reply(fake: FakeDiscord, db: Path, process: asyncio.subprocess.Process) -> str:
    """Wait until the DM shows exactly the stored reply under the stored label.

    The engine stores the exchange before it reports the reply done, and the renderer's last
    edit follows; so once the DM matches the database, the reply is final.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPLY_TIMEOUT_S
    user = UserKey("discord", str(USER_ID))
    shown: list[str] = []
    while loop.time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"python -m bot exited early with {process.returncode}")
        shown = [m["content"] for m in fake.channel_messages(DM_CHANNEL)]
        if shown and db.exists():
            store = await SqliteMoodStore.open(db)
            try:
                events = await store.mood_events(user, datetime(2000, 1, 1, tzinfo=UTC))
                turns = await store.recent_turns(user, str(DM_CHANNEL), 2)
            finally:
                await store.close()
            if events and turns:
                sentiment = Sentiment(events[0].label, events[0].p_positive)
                expected = f"{texts.label_line(sentiment)}\n\n{turns[-1].content}"
                if shown == [expected]:
                    return expected
        await asyncio.sleep(0.5)
    raise AssertionError(f"no final reply in time; the DM shows {shown!r}")

"""Several bot processes on one PostgreSQL database (the scale-out setup), each a real
`python -m bot` process on the scripted model (tests/scripted_bot.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from core.types import UserKey
from storage.store import SqlMoodStore
from tests.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[2]


def scripted_bot_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT), **extra}
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "DATABASE_PATH"):
        env.pop(key, None)
    return env


async def console_bot(cwd: Path, env: dict[str, str], lines: list[str]) -> list[dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.scripted_bot", "chat", "--jsonl", "--user", "alice",
        cwd=cwd, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate("\n".join(lines).encode() + b"\n"), 120)
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_two_processes_answer_one_users_messages_one_at_a_time(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    url = postgres.new_database()
    # Each reply takes ~0.5 s and says how many earlier turns it saw. Both processes get
    # three messages of the same user at once; had two of them run side by side, both would
    # have seen the same history, and two replies would say the same number.
    env = scripted_bot_env(url, SCRIPTED_REPLY="history", SCRIPTED_DELAY_S="0.15",
                           HISTORY_TURNS="50")  # fmt: skip
    first, second = await asyncio.gather(
        console_bot(tmp_path, env, ["a1", "a2", "a3"]),
        console_bot(tmp_path, env, ["b1", "b2", "b3"]),
    )
    assert [record.get("error") for record in first + second] == [None] * 6

    store = await SqlMoodStore.open(url)
    try:
        turns = await store.recent_turns(UserKey("console", "alice"), "console", 100)
    finally:
        await store.close()
    replies = [int(t.content.split()[1]) for t in turns if t.role == "assistant"]
    assert replies == [0, 2, 4, 6, 8, 10]  # stored in order, each after the one before
    asked = [t.content for t in turns if t.role == "user"]
    assert [m for m in asked if m.startswith("a")] == ["a1", "a2", "a3"]  # each process's
    assert [m for m in asked if m.startswith("b")] == ["b1", "b2", "b3"]  # own order kept

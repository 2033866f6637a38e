"""Several bot processes on one PostgreSQL database (the scale-out setup), each a real
`python -m bot` process on the scripted model (tests/scripted_bot.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from engine.types import UserKey
from storage.store import SqlMoodStore
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI, private_chat, user_json
from tests.postgres import PostgresCluster
from tests.support import bot_process, stored_mood_events
from tests.webhook_socket import listening_socket

ROOT = Path(__file__).resolve().parents[2]


def scripted_bot_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "DATABASE_PATH"):
        env.pop(key, None)
    return {**env, **extra}


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
    # REPLY_TONE_AT=system: the history holds only the stored turns (no tone notes) to count.
    env = scripted_bot_env(url, SCRIPTED_REPLY="history", SCRIPTED_DELAY_S="0.15",
                           HISTORY_TURNS="50", REPLY_TONE_AT="system")  # fmt: skip
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


# --- Telegram webhook replicas behind a (simulated) load balancer -------------------------


SECRET = "replica-secret-" * 3


@contextlib.asynccontextmanager
async def webhook_replicas(
    tmp_path: Path, api: FakeTelegramAPI, database_url: str, count: int, **extra: str
) -> AsyncIterator[list[str]]:
    """`count` bot processes in webhook mode on one database; yields their webhook addresses.
    Each serves on a socket bound here and inherited (tests/webhook_socket.py)."""
    async with contextlib.AsyncExitStack() as stack:
        socks = [stack.enter_context(listening_socket()) for _ in range(count)]
        ports = [sock.getsockname()[1] for sock in socks]
        for n, (sock, port) in enumerate(zip(socks, ports, strict=True)):
            env = scripted_bot_env(
                database_url,
                TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN,
                TELEGRAM_API_BASE_URL=api.base_url,
                TELEGRAM_API_FILE_URL=api.file_url,
                TELEGRAM_WEBHOOK_URL="https://bot.example.test/telegram",
                TELEGRAM_WEBHOOK_LISTEN=f"127.0.0.1:{port}",
                TELEGRAM_WEBHOOK_SECRET=SECRET,
                TELEGRAM_EDIT_INTERVAL_S="0.1",
                SCRIPTED_WEBHOOK_FD=str(sock.fileno()),
                **extra,
            )
            out, err = tmp_path / f"replica{n}.out", tmp_path / f"replica{n}.err"
            await stack.enter_async_context(
                bot_process(tmp_path, env, out, err, "tests.scripted_bot", [sock.fileno()])
            )
        hooks = [f"http://127.0.0.1:{port}/telegram" for port in ports]
        await api.wait_for(lambda: len(api.calls_to("setWebhook")) == count, 60, "replicas up")
        for port in ports:
            await _listening(port)
        yield hooks


async def _listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nothing listens on {port}")


async def post_update(url: str, update: dict[str, Any]) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=update, headers=headers) as response,
    ):
        return response.status


async def test_an_update_posted_to_two_replicas_is_answered_once(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    url = postgres.new_database()
    user = 4242
    async with (
        FakeTelegramAPI(DEFAULT_TOKEN) as api,
        webhook_replicas(tmp_path, api, url, 2, SCRIPTED_DELAY_S="0.05") as hooks,
    ):
        update = api.message_update(private_chat(user), user_json(user), "I am so happy")
        statuses = await asyncio.gather(*(post_update(hook, update) for hook in hooks))
        assert statuses == [200, 200]
        await api.wait_for(
            lambda: api.bot_texts(user) and "cheerful reply" in api.bot_texts(user)[0], 30
        )
        # A later message of the same user, through the other replica, comes after it.
        later = api.message_update(private_chat(user), user_json(user), "and then?")
        assert await post_update(hooks[1], later) == 200
        await api.wait_for(lambda: len(api.bot_texts(user)) == 2, 30)
        await api.wait_for(lambda: "and then?" in api.bot_texts(user)[1], 30)

        store = await SqlMoodStore.open(url)
        try:
            events = await stored_mood_events(store, UserKey("telegram", str(user)), 2)
        finally:
            await store.close()
    assert len(events) == 2
    assert len(api.calls_to("sendMessage")) == 2  # one label message per answered message

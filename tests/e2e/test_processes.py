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
import asyncpg

from engine.chat.texts import cut_off_copy
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
    tmp_path: Path,
    api: FakeTelegramAPI,
    database_url: str,
    count: int,
    processes: list[asyncio.subprocess.Process] | None = None,
    **extra: str,
) -> AsyncIterator[list[str]]:
    """`count` bot processes in webhook mode on one database; yields their webhook addresses
    (and appends the processes to `processes`). Each serves on a socket bound here and
    inherited (tests/webhook_socket.py)."""
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
            process = await stack.enter_async_context(
                bot_process(tmp_path, env, out, err, "tests.scripted_bot", [sock.fileno()])
            )
            if processes is not None:
                processes.append(process)
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


async def test_a_replica_killed_holding_several_users_messages_keeps_each_users_order(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    # Six users send three messages each in quick succession through a round-robin balancer
    # in front of two replicas; one replica is killed with SIGKILL at the first streamed
    # edit, holding messages of several users. Each user's messages must still be answered,
    # once and completely, in the order they were sent, in the chat and in the stored
    # conversation (the survivor takes the dead one's earlier messages over first).
    url = postgres.new_database()
    users = [5100 + n for n in range(6)]
    texts = {
        user: [f"I am happy about thing {n} of user {user}" for n in range(3)] for user in users
    }
    processes: list[asyncio.subprocess.Process] = []
    async with (
        FakeTelegramAPI(DEFAULT_TOKEN) as api,
        webhook_replicas(tmp_path, api, url, 2, processes, SCRIPTED_DELAY_S="0.05") as hooks,
    ):
        sent = 0
        for user in users:  # user by user, so that each user's messages alternate replicas
            for text in texts[user]:
                update = api.message_update(private_chat(user), user_json(user), text)
                assert await post_update(hooks[sent % 2], update) == 200
                sent += 1
        await api.wait_for(lambda: api.calls_to("editMessageText"), 60, "a streamed edit")
        victim = processes[0]
        victim.kill()
        await victim.wait()
        held = await held_by_process(url, victim.pid)
        assert len({user for user, _ in held}) >= 2, held  # several users' messages

        def answered(user: int) -> list[str]:
            return [t for t in api.bot_texts(user) if t.endswith(tuple(texts[user]))]

        await api.wait_for(
            lambda: all(len(answered(user)) == 3 for user in users), 120, "every answer"
        )
        store = await SqlMoodStore.open(url)
        try:
            for user in users:
                key = UserKey("telegram", str(user))
                assert len(await stored_mood_events(store, key, 3)) == 3
                turns = await store.export_turns(key)
                assert [t.content for t in turns if t.role == "user"] == texts[user]
        finally:
            await store.close()
    for user in users:
        shown = api.bot_texts(user)
        answers = [s for s in shown if s.endswith(tuple(texts[user]))]
        assert len(answers) == 3, shown  # one answer each, no duplicates
        # In the chat, in the order sent: each answer answers the next message.
        assert [next(t for t in texts[user] if s.endswith(t)) for s in answers] == texts[user]
        assert all(f"reply to: {t}" in s for s, t in zip(answers, texts[user], strict=True))
        # A kill between Telegram making a label message and the bot recording its id leaves
        # that label behind (Telegram cannot give it back): acceptable only when the answer
        # that follows it says so; otherwise the chat holds exactly the three answers.
        for n, message in enumerate(shown):
            if message in answers:
                continue
            assert "\n\n" not in message, shown  # a lone label, never a cut-off reply
            assert owns_up(next(s for s in shown[n + 1 :] if s in answers), texts[user]), shown
        owned_up = [s for s in answers if owns_up(s, texts[user])]
        assert len(shown) - len(answers) <= len(owned_up), shown


def owns_up(answer: str, asked: list[str]) -> bool:
    """Whether `answer` says a cut-off copy may show, in the language of its message."""
    return cut_off_copy(next(t for t in asked if answer.endswith(t))) in answer


async def held_by_process(url: str, pid: int | None) -> list[tuple[str, str]]:
    """The (user, message) pairs still 'received' under the process `pid`'s owner id."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT u.platform_user_id, i.message_id FROM inbox i JOIN users u ON u.id = i.user_id"
            " WHERE i.state = 'received' AND i.owner LIKE $1",
            f"%-{pid}-%",
        )
    finally:
        await conn.close()
    return [(row[0], row[1]) for row in rows]

"""Crash-safe delivery (#18), end to end: a bot process killed with SIGKILL while a reply
streams (or, on Telegram, just after its update was confirmed, before the label), then a new
process on the same database, on the loopback fakes of Telegram and Discord. The new process
completes the frozen label message (or, with none sent, answers afresh): one label message, a
complete answer, one mood event, the inbox row done with its text dropped; and the same
message delivered once more changes nothing. Real `python -m bot` processes on the scripted
model (tests/scripted_bot.py), decoding slowly enough to be killed mid-reply."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from engine.chat import texts
from engine.types import UserKey
from storage.store import SqlMoodStore
from tests.e2e.test_processes import scripted_bot_env
from tests.fakes.discord_api import FakeDiscord, user_payload
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.postgres import PostgresCluster, find_bindir, postgres_cluster
from tests.scripted import scripted_sentiment
from tests.support import EPOCH, bot_process, final_reply

USER = 4242
DM_CHANNEL = 5151
DISCORD_TOKEN = "fake-token"
# Sad, 20 words: the scripted reply "A comforting reply to: <text>" has 24, decoded at
# SCRIPTED_DELAY_S each, so there are seconds to kill the process in.
TEXT = "today was awful and nothing went right at work or at home so I feel tired and alone now"
EXPECTED = f"{texts.label_line(scripted_sentiment(TEXT))}\n\nA comforting reply to: {TEXT}"
SLOW = {"SCRIPTED_DELAY_S": "0.3"}


async def inbox_rows(db: str) -> list[tuple[object, ...]]:
    sql = "SELECT state, text, reply_ref FROM inbox"
    if not db.startswith("postgresql"):
        with sqlite3.connect(db) as conn:
            return [tuple(r) for r in conn.execute(sql)]
    conn = await asyncpg.connect(db)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite path, or a PostgreSQL URL (where a process's death drops its owner lock)."""
    if request.param == "sqlite":
        return str(tmp_path / "bot.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


async def stored_as_done(db: str, timeout_s: float = 30) -> None:
    """Wait until the inbox row is done: the exchange is stored (the chat may show the whole
    reply a moment before)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while [row[0] for row in await inbox_rows(db)] != ["done"]:
        assert loop.time() < deadline, f"not stored in time: {await inbox_rows(db)}"
        await asyncio.sleep(0.2)


def url_of(database: str) -> str:
    return database if database.startswith("postgresql") else f"sqlite:///{database}"


def half_reply(shown: Callable[[], list[str]]) -> Callable[[], bool]:
    """The label message is out and a few words of the reply show in it: mid-stream."""

    def streaming() -> bool:
        messages = shown()
        body = messages[0].partition("\n\n")[2] if messages else ""
        return len(body.split()) >= 3

    return streaming


async def mood_event_count(db: str | Path, user: UserKey) -> int:
    store = await SqlMoodStore.open(db)
    try:
        return len(await store.mood_events(user, EPOCH))
    finally:
        await store.close()


def telegram_env(db: str, api: FakeTelegramAPI, **extra: str) -> dict[str, str]:
    """The scripted bot on this database, polling the fake Telegram."""
    return scripted_bot_env(url_of(db), TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN,
                            TELEGRAM_API_BASE_URL=api.base_url,
                            TELEGRAM_API_FILE_URL=api.file_url,
                            TELEGRAM_EDIT_INTERVAL_S="0.1", **extra)  # fmt: skip


def skipped_copies(err: Path, platform: str, chat: int) -> int:
    """How often the process logged a message in the chat as seen before and skipped: the
    copy's handling is over (nothing is sent for it) once its line is there."""
    return err.read_text(errors="replace").count(f"in {platform} chat {chat} was seen before")


async def killed(process: asyncio.subprocess.Process) -> None:
    process.kill()  # SIGKILL: nothing of the process runs after this
    await process.wait()


async def stopped(process: asyncio.subprocess.Process, err: Path) -> None:
    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), timeout=60)
    stderr = err.read_text(errors="replace")
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


async def test_telegram_a_reply_killed_mid_stream_is_finished_once_after_a_restart(
    tmp_path: Path, database: str
) -> None:
    db = database
    user = UserKey("telegram", str(USER))
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        env = telegram_env(db, api, **SLOW)
        shown = lambda: api.bot_texts(USER)  # noqa: E731
        out, err = tmp_path / "first.out", tmp_path / "first.err"
        async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as first:
            api.private_text(USER, TEXT)
            update_id = int(api.delivered[-1]["update_id"])
            await api.wait_for(half_reply(shown), 60, "the reply streaming")
            await killed(first)
        frozen = shown()
        assert len(frozen) == 1
        assert frozen[0] != EXPECTED
        label_message = api.bot_messages(USER)[0]["message_id"]
        # Recorded before work started, with what a retry needs; nothing stored yet.
        assert await inbox_rows(db) == [("received", TEXT, str(label_message))]
        assert await mood_event_count(db, user) == 0
        # Telegram will not send it again: the next poll confirmed it before the kill.
        gets = api.calls_to("getUpdates")
        assert any(int(c.params.get("offset") or 0) > update_id for c in gets)

        out, err = tmp_path / "second.out", tmp_path / "second.err"
        async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as second:
            final = await final_reply(shown, db, second, user, str(USER), 60)
            sends = len(api.calls_to("sendMessage"))
            # The same update once more (as after a crash before its confirmation).
            skips = skipped_copies(err, "telegram", USER)
            api.redeliver(update_id)
            await api.wait_for(lambda: skipped_copies(err, "telegram", USER) > skips, 30,
                               "the copy skipped")  # fmt: skip
            await stopped(second, err)

    assert final == EXPECTED  # the frozen message, completed in place
    assert shown() == [EXPECTED]  # exactly one label message
    assert api.bot_messages(USER)[0]["message_id"] == label_message
    assert len(api.calls_to("sendMessage")) == sends == 1
    assert await mood_event_count(db, user) == 1
    assert await inbox_rows(db) == [("done", None, str(label_message))]


async def test_telegram_a_message_killed_after_its_confirm_before_its_label_is_answered_once(
    tmp_path: Path, database: str
) -> None:
    # The window python-telegram-bot left open: the next getUpdates tells Telegram the update
    # arrived, and the process dies before anything was shown. Recorded before that confirm,
    # the message is answered by the next process (once, however often it comes again).
    db = database
    user = UserKey("telegram", str(USER))
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        env = telegram_env(db, api)
        shown = lambda: api.bot_texts(USER)  # noqa: E731
        out, err = tmp_path / "first.out", tmp_path / "first.err"
        stuck = {**env, "SCRIPTED_TAG_DELAY_S": "120"}  # the label never comes
        async with bot_process(tmp_path, stuck, out, err, module="tests.scripted_bot") as first:
            await api.wait_for(lambda: api.calls_to("getUpdates"), 60, "the first polling")
            api.private_text(USER, TEXT)
            update_id = int(api.delivered[-1]["update_id"])
            await api.wait_for(lambda: update_id in api.confirmed, 60, "the update confirmed")
            await api.wait_for(lambda: "scripted: labelling" in err.read_text(), 60,
                               "the handler in the model")  # fmt: skip
            await killed(first)
        assert api.calls_to("sendMessage") == []  # nothing was shown
        assert await inbox_rows(db) == [("received", TEXT, None)]

        out, err = tmp_path / "second.out", tmp_path / "second.err"
        late = f"{texts.RETRY_NOTE}\n{EXPECTED}"
        async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as second:
            await api.wait_for(lambda: shown() == [late], 60, "the late answer")
            await stored_as_done(db)
            skips = skipped_copies(err, "telegram", USER)
            api.redeliver(update_id)  # Telegram would not, but a copy must change nothing
            await api.wait_for(lambda: skipped_copies(err, "telegram", USER) > skips, 30,
                               "the copy skipped")  # fmt: skip
            await stopped(second, err)

    assert shown() == [late]
    [sent] = api.calls_to("sendMessage")
    quoted = sent.params["reply_parameters"]["message_id"]
    assert quoted == api.delivered[-1]["message"]["message_id"]  # the message it answers late
    assert await mood_event_count(db, user) == 1
    assert [row[:2] for row in await inbox_rows(db)] == [("done", None)]


def discord_bot_env(db: Path, fake: FakeDiscord, **extra: str) -> dict[str, str]:
    """The scripted bot on Discord's fake (through its TLS proxy), on the SQLite file `db`."""
    return scripted_bot_env(
        f"sqlite:///{db}",
        DISCORD_BOT_TOKEN=DISCORD_TOKEN,
        DISCORD_PROXY=fake.proxy_url,
        PARENT_SSL_CERT_FILE=os.environ["SSL_CERT_FILE"],  # the fake's TLS proxy's CA
        DISCORD_EDIT_INTERVAL_S="0.1",
        **extra,
    )


def dm_texts(fake: FakeDiscord) -> list[str]:
    """What the user's DM channel shows, oldest first."""
    return [m["content"] for m in fake.channel_messages(DM_CHANNEL)]


async def test_discord_a_reply_killed_mid_stream_is_finished_once_after_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "bot.db"
    user = UserKey("discord", str(USER))
    fake = FakeDiscord(token=DISCORD_TOKEN)
    await fake.start()
    env = discord_bot_env(db, fake, **SLOW)

    def shown() -> list[str]:
        return dm_texts(fake)

    posts = "POST /channels/{channel_id}/messages"
    try:
        out, err = tmp_path / "first.out", tmp_path / "first.err"
        async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as first:
            await fake.wait_for(lambda: fake.identifies, 60, "the first process online")
            message = fake.message(
                channel_id=DM_CHANNEL, author=user_payload(USER, "alice"), content=TEXT
            )
            await fake.dispatch("MESSAGE_CREATE", message)
            await fake.wait_for(half_reply(shown), 60, "the reply streaming")
            await killed(first)
        frozen = shown()
        assert len(frozen) == 1
        assert frozen[0] != EXPECTED
        label_message = fake.channel_messages(DM_CHANNEL)[0]["id"]
        assert await inbox_rows(str(db)) == [("received", TEXT, label_message)]
        assert await mood_event_count(db, user) == 0

        out, err = tmp_path / "second.out", tmp_path / "second.err"
        async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as second:
            await fake.wait_for(lambda: len(fake.identifies) == 2, 60, "the second online")
            final = await final_reply(shown, db, second, user, str(DM_CHANNEL), 60)
            # Dispatched once more: a second delivery of the message is handled once.
            skips = skipped_copies(err, "discord", DM_CHANNEL)
            await fake.dispatch("MESSAGE_CREATE", message)
            await fake.wait_for(lambda: skipped_copies(err, "discord", DM_CHANNEL) > skips, 30,
                                "the copy skipped")  # fmt: skip
            await stopped(second, err)
    finally:
        await fake.close()

    assert final == EXPECTED
    assert shown() == [EXPECTED]
    assert len(fake.calls_to(posts)) == 1  # the label message, sent once, then only edited
    assert await mood_event_count(db, user) == 1
    assert await inbox_rows(str(db)) == [("done", None, label_message)]


async def test_telegram_postgresql_stopped_mid_reply_then_restarted_loses_nothing(
    tmp_path: Path,
) -> None:
    # The database goes away while a reply streams: the user is told the journal is
    # unavailable; once the server is back, the same (live) process answers the message
    # after all, completing its message in place, stored once; and the user's next message
    # comes after it.
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    user = UserKey("telegram", str(USER))
    with postgres_cluster() as cluster:
        db = cluster.new_database()
        async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
            env = telegram_env(db, api, **SLOW, RESUME_INTERVAL_S="1",
                               DATABASE_STATEMENT_TIMEOUT_S="2",
                               DATABASE_CONNECT_TIMEOUT_S="2")  # fmt: skip
            shown = lambda: api.bot_texts(USER)  # noqa: E731
            out, err = tmp_path / "bot.out", tmp_path / "bot.err"
            async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as bot:
                api.private_text(USER, TEXT)
                await api.wait_for(half_reply(shown), 60, "the reply streaming")
                cluster.shut_down()
                await api.wait_for(
                    lambda: any(texts.STORAGE_ERROR in s for s in shown()), 60, "the error"
                )
                cluster.start_again()
                final = await final_reply(shown, db, bot, user, str(USER), 60)
                await stored_as_done(db)
                api.private_text(USER, "and now I feel better")
                await api.wait_for(lambda: len(shown()) == 2 and "better" in shown()[1], 60)
                await stored_as_done_all(db, 2)
                await stopped(bot, err)
            assert final.endswith(f"A comforting reply to: {TEXT}")
            assert len(shown()) == 2  # one message per message sent: completed in place
            assert await mood_event_count(db, user) == 2
            store = await SqlMoodStore.open(db)
            try:
                turns = await store.export_turns(user)
            finally:
                await store.close()
            assert [t.content for t in turns if t.role == "user"] == [TEXT, "and now I feel better"]


async def stored_as_done_all(db: str, count: int, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while [row[0] for row in await inbox_rows(db)] != ["done"] * count:
        assert loop.time() < deadline, f"not stored in time: {await inbox_rows(db)}"
        await asyncio.sleep(0.2)

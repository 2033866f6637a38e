"""Crash-safe delivery of the answer itself, end to end: a Telegram bot process killed with
SIGKILL at a known step of showing its reply (the fake Telegram holds that call unanswered),
then a new process on the same database. Whatever the step — the label message on its way,
a long reply's second message mid-stream, the final edit after the last token — the chat
ends with exactly one complete answer, equal to the stored reply, and one mood event, and
the inbox row done. Real `python -m bot` processes on the scripted model."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import asyncpg

from adapters.streaming import split_text
from engine.chat import texts
from engine.types import UserKey
from storage.store import SqlMoodStore
from tests.e2e.test_processes import scripted_bot_env
from tests.e2e.test_recovery_e2e import (
    DISCORD_TOKEN,
    DM_CHANNEL,
    EXPECTED,
    TEXT,
    USER,
    database,  # noqa: F401 - the fixture: SQLite, PostgreSQL
    discord_bot_env,
    dm_texts,
    inbox_rows,
    killed,
    mood_event_count,
    stopped,
    stored_as_done,
    url_of,
)
from tests.fakes.discord_api import FakeDiscord, user_payload
from tests.fakes.telegram_api import DEFAULT_TOKEN, MAX_TEXT, ApiCall, FakeTelegramAPI
from tests.scripted import scripted_sentiment
from tests.support import bot_process

TG_USER = UserKey("telegram", str(USER))
# A reply of ~6,600 characters: the scripted model echoes the message, so it overflows into
# a second Telegram message two thirds of the way through.
LONG_TEXT = " ".join(f"sad{i}" for i in range(1100))
LONG_EXPECTED = (
    f"{texts.label_line(scripted_sentiment(LONG_TEXT))}\n\nA comforting reply to: {LONG_TEXT}"
)


def env_for(db: Path | str, api: FakeTelegramAPI, **extra: str) -> dict[str, str]:
    return scripted_bot_env(url_of(str(db)), TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN,
                            TELEGRAM_API_BASE_URL=api.base_url,
                            TELEGRAM_API_FILE_URL=api.file_url, **extra)  # fmt: skip


async def killed_when_held(
    tmp_path: Path, env: dict[str, str], api: FakeTelegramAPI, text: str, wait_s: int, what: str
) -> None:
    """A bot process gets `text` and is killed (SIGKILL) once the fake holds a call."""
    out, err = tmp_path / "first.out", tmp_path / "first.err"
    async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as first:
        api.private_text(USER, text)
        await api.wait_for(lambda: api.held, wait_s, what)
        await killed(first)


async def restarted_until(
    tmp_path: Path,
    env: dict[str, str],
    api: FakeTelegramAPI,
    db: Path | str,
    shown: Callable[[], bool],
    wait_s: int,
    what: str,
) -> str:
    """A second bot process runs until `shown` and the inbox is done, then stops; its log."""
    out, err = tmp_path / "second.out", tmp_path / "second.err"
    async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as second:
        await api.wait_for(shown, wait_s, what)
        await stored_as_done(str(db))
        await stopped(second, err)
    return err.read_text(errors="replace")


async def test_telegram_killed_after_the_last_token_before_the_final_edit(
    tmp_path: Path,
    database: str,  # noqa: F811
) -> None:
    # The old window: the row was done with the exchange while the final edit was still to
    # come, so a kill there left the label alone in the chat for good.
    db = database
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        # Intermediate frames are throttled away: the one edit is the final one, which
        # comes after the exchange is stored.
        env = env_for(db, api, TELEGRAM_EDIT_INTERVAL_S="60")
        shown = lambda: api.bot_texts(USER)  # noqa: E731
        api.hold = lambda call: call.method == "editMessageText"
        await killed_when_held(tmp_path, env, api, TEXT, 60, "the final edit")
        assert api.held[0].params["text"] == EXPECTED
        label = texts.label_line(scripted_sentiment(TEXT))
        assert shown() == [label]  # the answer never reached the chat
        label_message = str(api.bot_messages(USER)[0]["message_id"])
        assert await mood_event_count(db, TG_USER) == 1  # stored: the last token was out
        assert await inbox_rows(str(db)) == [("received", TEXT, label_message)]

        api.hold = None
        log = await restarted_until(
            tmp_path, env, api, db, lambda: shown() == [EXPECTED], 60, "the stored answer shown"
        )

    assert shown() == [EXPECTED]  # the label message, completed in place
    assert len(api.calls_to("sendMessage")) == 1
    assert await mood_event_count(db, TG_USER) == 1
    assert await inbox_rows(str(db)) == [("done", None, label_message)]
    assert "showing its stored answer" in log  # from the store, not from the model again


async def test_telegram_long_reply_killed_mid_stream_in_its_second_message(
    tmp_path: Path,
) -> None:
    # Every message of the reply is recorded with its send: the restart edits both in place
    # (it used to know only the first, and post the rest anew beside the frozen second).
    db = tmp_path / "bot.db"
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        env = env_for(db, api, TELEGRAM_EDIT_INTERVAL_S="0.1", SCRIPTED_DELAY_S="0.002",
                      MAX_INPUT_CHARS="9000")  # fmt: skip
        shown = lambda: api.bot_texts(USER)  # noqa: E731

        def second_message_edit(call: ApiCall) -> bool:
            messages = api.bot_messages(USER)
            return (call.method == "editMessageText" and len(messages) == 2
                    and call.params.get("message_id") == messages[1]["message_id"])  # fmt: skip

        api.hold = second_message_edit
        await killed_when_held(tmp_path, env, api, LONG_TEXT, 90, "an edit of the second message")
        frozen = shown()
        assert len(frozen) == 2
        assert "\n".join(frozen) != LONG_EXPECTED  # cut off mid-stream
        ids = " ".join(str(m["message_id"]) for m in api.bot_messages(USER))
        assert await inbox_rows(str(db)) == [("received", LONG_TEXT, ids)]
        assert await mood_event_count(db, TG_USER) == 0

        api.hold = None
        expected = split_text(LONG_EXPECTED, MAX_TEXT)
        await restarted_until(
            tmp_path, env, api, db, lambda: shown() == expected, 90, "the whole answer"
        )

    assert len(expected) == 2
    assert shown() == expected  # the same two messages, completed in place
    assert len(api.calls_to("sendMessage")) == 2  # none posted anew
    assert await mood_event_count(db, TG_USER) == 1
    assert await inbox_rows(str(db)) == [("done", None, ids)]


async def test_telegram_killed_while_its_label_message_is_on_its_way(tmp_path: Path) -> None:
    # Telegram never got the label (held before it took effect): the restart answers afresh,
    # marked as a retry. The send had been recorded as under way, and the bot cannot tell
    # whether Telegram made it (no idempotent send, no way to list a chat): the answer says
    # that a cut-off copy may show (here none does).
    db = tmp_path / "bot.db"
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        env = env_for(db, api, TELEGRAM_EDIT_INTERVAL_S="0.1")
        shown = lambda: api.bot_texts(USER)  # noqa: E731
        api.hold = lambda call: call.method == "sendMessage"
        await killed_when_held(tmp_path, env, api, TEXT, 60, "the label message")
        assert shown() == []
        assert await inbox_rows(str(db)) == [("received", TEXT, None)]
        assert await mood_event_count(db, TG_USER) == 0

        api.hold = None
        late = f"{texts.RETRY_NOTE}\n{texts.cut_off_copy(TEXT)}\n{EXPECTED}"
        await restarted_until(
            tmp_path, env, api, db, lambda: shown() == [late], 60, "the late answer"
        )

    assert shown() == [late]
    assert await mood_event_count(db, TG_USER) == 1
    assert [row[:2] for row in await inbox_rows(str(db))] == [("done", None)]


async def test_telegram_killed_after_the_label_was_created_but_before_its_answer(
    tmp_path: Path,
    database: str,  # noqa: F811
) -> None:
    # Telegram created the label message, and the process died before it learnt its id: that
    # message cannot be found again (no idempotent send, no way to list a chat's messages),
    # and probing ids with edits or deletes is not safe. The send was recorded as under way,
    # so the restart's complete answer says a cut-off copy may show above it.
    db = database
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        env = env_for(db, api, TELEGRAM_EDIT_INTERVAL_S="0.1")
        shown = lambda: api.bot_texts(USER)  # noqa: E731
        api.hold = lambda call: call.method == "sendMessage"
        api.hold_applied = True
        await killed_when_held(tmp_path, env, api, TEXT, 60, "the label message made")
        label = texts.label_line(scripted_sentiment(TEXT))
        assert shown() == [label]  # made, its id never known to the bot
        assert await inbox_rows(str(db)) == [("received", TEXT, None)]
        assert await sending_of(db) is not None  # the send was recorded before it went out

        api.hold = None
        late = f"{texts.RETRY_NOTE}\n{texts.cut_off_copy(TEXT)}\n{EXPECTED}"
        await restarted_until(
            tmp_path, env, api, db, lambda: shown() == [label, late], 60, "the late answer"
        )

    assert shown() == [label, late]  # the orphan, and one complete answer that owns up to it
    assert await mood_event_count(db, TG_USER) == 1
    assert [row[:2] for row in await inbox_rows(str(db))] == [("done", None)]
    assert await sending_of(db) is None
    store = await SqlMoodStore.open(url_of(str(db)))
    try:
        turns = await store.export_turns(TG_USER)
    finally:
        await store.close()
    assert [t.content for t in turns] == [TEXT, EXPECTED.split("\n\n", 1)[1]]  # as shown


async def sending_of(db: str) -> str | None:
    """The inbox row's send under way (its key), if one is recorded."""
    sql = "SELECT sending FROM inbox"
    if not db.startswith("postgresql"):
        with sqlite3.connect(db) as conn:
            return conn.execute(sql).fetchone()[0]
    conn = await asyncpg.connect(db)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_discord_killed_after_the_label_was_created_but_before_its_answer(
    tmp_path: Path,
) -> None:
    # Discord created the label message, and the process died before it learnt its id. The
    # send's nonce was recorded first: the restart repeats the send under it, Discord hands
    # back the message it made, and that one message is completed (none posted beside it).
    db = tmp_path / "bot.db"
    user = UserKey("discord", str(USER))
    fake = FakeDiscord(token=DISCORD_TOKEN)
    await fake.start()
    env = discord_bot_env(db, fake)

    def shown() -> list[str]:
        return dm_texts(fake)

    posts = "POST /channels/{channel_id}/messages"
    fake.hold = lambda call: call.route == posts
    fake.hold_applied = True
    try:
        out, err = tmp_path / "first.out", tmp_path / "first.err"
        async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as first:
            await fake.wait_for(lambda: fake.identifies, 60, "the first process online")
            message = fake.message(
                channel_id=DM_CHANNEL, author=user_payload(USER, "alice"), content=TEXT
            )
            await fake.dispatch("MESSAGE_CREATE", message)
            await fake.wait_for(lambda: fake.held, 60, "the label message sent")
            await killed(first)
        label = texts.label_line(scripted_sentiment(TEXT))
        assert shown() == [label]  # created, its id never known to the bot
        assert await inbox_rows(str(db)) == [("received", TEXT, None)]

        fake.hold = None
        late = f"{texts.RETRY_NOTE}\n{EXPECTED}"
        out, err = tmp_path / "second.out", tmp_path / "second.err"
        async with bot_process(tmp_path, env, out, err, module="tests.scripted_bot") as second:
            await fake.wait_for(lambda: len(fake.identifies) == 2, 60, "the second online")
            await fake.wait_for(lambda: shown() == [late], 60, "the late answer")
            await stored_as_done(str(db))
            await stopped(second, err)
    finally:
        await fake.close()

    assert shown() == [late]  # one message: the label Discord had made, completed
    nonces = {call.json["nonce"] for call in fake.calls_to(posts)}
    assert len(fake.calls_to(posts)) == 2
    assert len(nonces) == 1  # the restart repeated the recorded send
    assert await mood_event_count(db, user) == 1
    assert [row[:2] for row in await inbox_rows(str(db))] == [("done", None)]


async def test_telegram_killed_while_a_timeout_note_is_on_its_way(tmp_path: Path) -> None:
    # The label timed out, and the process died sending the timeout note. A failure note is
    # the message's answer, done only once shown (it used to be done before): the restart
    # answers the message, once.
    db = tmp_path / "bot.db"
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        env = env_for(db, api, TELEGRAM_EDIT_INTERVAL_S="0.1")
        shown = lambda: api.bot_texts(USER)  # noqa: E731
        api.hold = lambda call: call.method == "sendMessage"
        slow = {**env, "SCRIPTED_TAG_DELAY_S": "3", "REQUEST_TIMEOUT_S": "1"}
        out, err = tmp_path / "first.out", tmp_path / "first.err"
        async with bot_process(tmp_path, slow, out, err, module="tests.scripted_bot") as first:
            api.private_text(USER, TEXT)
            await api.wait_for(lambda: api.held, 60, "the timeout note")
            await killed(first)
        assert api.held[0].params["text"] == texts.TIMEOUT
        assert shown() == []
        assert [row[:2] for row in await inbox_rows(str(db))] == [("received", TEXT)]

        api.hold = None
        late = f"{texts.RETRY_NOTE}\n{texts.cut_off_copy(TEXT)}\n{EXPECTED}"
        await restarted_until(
            tmp_path, env, api, db, lambda: shown() == [late], 60, "the late answer"
        )

    assert shown() == [late]
    assert await mood_event_count(db, TG_USER) == 1
    assert [row[:2] for row in await inbox_rows(str(db))] == [("done", None)]

"""The Telegram adapter end to end: real python-telegram-bot client ↔ loopback fake Bot API,
scripted engine, real SQLite store. No network."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from telegram import Bot

from adapters.streaming import Transient
from adapters.telegram.adapter import TelegramAdapter, TelegramAuthError, TelegramConfig
from adapters.telegram.chat import Outbox, TelegramSink
from engine.chat import safety, texts
from engine.types import DigestSubscription, IncomingMessage, Sentiment, UserKey
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine
from tests.fakes.base import GUARD_S
from tests.fakes.telegram_api import (
    DEFAULT_TOKEN,
    GROUP_ID,
    ApiCall,
    FakeTelegramAPI,
    group_chat,
    private_chat,
    user_json,
)
from tests.support import link_accounts, stored_mood_events

USER, OTHER = 111, 222
HANG = 30.0  # only a guard against hanging forever; no test waits this long
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
POSITIVE = texts.label_line(Sentiment("positive", 0.9))
NEGATIVE = texts.label_line(Sentiment("negative", 0.1))

LINK_CODE = re.compile(r"/link [A-Z2-9]{8}\b")

MakeAdapter = Callable[..., Awaitable[TelegramAdapter]]


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI(DEFAULT_TOKEN) as fake:
        yield fake


@pytest.fixture
async def make_adapter(
    scripted_engine: ScriptedEngine, api: FakeTelegramAPI
) -> AsyncIterator[MakeAdapter]:
    started: list[TelegramAdapter] = []

    async def make(**overrides: Any) -> TelegramAdapter:
        # Faster than the settings allow, so the tests run quickly: built without validation.
        config = TelegramConfig.model_construct(
            token=DEFAULT_TOKEN,
            api_base_url=api.base_url,
            api_file_url=api.file_url,
            edit_interval_s=0.05,
            group_edit_interval_s=0.05,
            poll_timeout_s=10.0,  # long on purpose: teardown must not wait for it
        )
        adapter = TelegramAdapter(scripted_engine.service, config.model_copy(update=overrides))
        started.append(adapter)
        await adapter.start()
        return adapter

    yield make
    for adapter in started:
        await adapter.stop()


@pytest.fixture
async def bot(make_adapter: MakeAdapter) -> TelegramAdapter:
    return await make_adapter()


def key(user_id: int) -> UserKey:
    return UserKey("telegram", str(user_id))


async def mood_events(engine: ScriptedEngine, user_id: int, at_least: int = 0) -> list[Any]:
    return await stored_mood_events(engine.store, key(user_id), at_least)


def tagged_texts(engine: ScriptedEngine) -> list[str]:
    return [text for batch in engine.runner.tag_calls for text in batch]


async def wait_text(
    api: FakeTelegramAPI, chat_id: int, fragment: str, timeout: float = GUARD_S
) -> str:
    """Wait until one of the bot's messages in the chat contains `fragment`; return it."""

    def found() -> str | None:
        return next((t for t in api.bot_texts(chat_id) if fragment in t), None)

    shown = await api.wait_for(found, timeout, what=f"{fragment!r} in chat {chat_id}")
    assert shown is not None
    return shown


def sent_in_reply_to(api: FakeTelegramAPI, message_id: int) -> list[ApiCall]:
    return [
        c
        for c in api.calls_to("sendMessage")
        if (c.params.get("reply_parameters") or {}).get("message_id") == message_id
    ]


# --- private chats ------------------------------------------------------------------------


async def test_private_message_label_first_then_streamed_reply_and_stored(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.private_text(USER, "I am so happy today")
    reply = "A cheerful reply to: I am so happy today"
    final = await wait_text(api, USER, reply)

    assert final == f"{POSITIVE}\n\n{reply}"
    first = api.calls_to("sendMessage")[0]
    assert first.params["text"] == POSITIVE  # the label goes out before any reply text
    assert "parse_mode" not in first.params  # plain text: model output can't break parsing
    assert "reply_parameters" not in first.params  # no quoting in private chats
    assert len(api.calls_to("sendMessage")) == 1  # the reply grew by editing that message
    assert api.calls_to("editMessageText", ok_only=True)[-1].params["text"] == final
    assert api.calls_to("sendChatAction")[0].params == {"chat_id": USER, "action": "typing"}
    events = await mood_events(scripted_engine, USER, at_least=1)
    assert [(e.label, e.chat_id) for e in events] == [("positive", str(USER))]


async def test_the_same_update_delivered_twice_is_answered_once(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="engine.chat.service")
    api.private_text(USER, "I am so happy today")
    api.redeliver(api.delivered[-1]["update_id"])  # both copies come in one getUpdates
    await make_adapter()
    await wait_text(api, USER, "A cheerful reply")
    await api.wait_for(lambda: "was seen before" in caplog.text, what="the copy skipped")

    assert len(api.calls_to("sendMessage")) == 1
    assert len(await mood_events(scripted_engine, USER, at_least=1)) == 1
    assert len(tagged_texts(scripted_engine)) == 1


async def test_an_update_redelivered_after_a_crash_is_not_answered_again(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="engine.chat.service")
    first = await make_adapter()
    api.private_text(USER, "I am so happy today")
    await wait_text(api, USER, "A cheerful reply")
    await stored_mood_events(scripted_engine.store, key(USER), at_least=1)
    await first.stop()
    # The process died before Telegram heard that the update arrived: it comes again, to
    # the process that starts next (same database).
    api.redeliver(api.delivered[-1]["update_id"])
    await make_adapter()
    await api.wait_for(lambda: "was seen before" in caplog.text, what="the copy skipped")

    assert len(api.calls_to("sendMessage")) == 1
    assert len(await mood_events(scripted_engine, USER)) == 1


async def test_edits_are_throttled_while_streaming(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    # An interval far longer than the reply: every intermediate frame falls inside it, so
    # the 30 deltas make no edit but the forced final one (unthrottled: about 30 edits).
    await make_adapter(edit_interval_s=3600.0)
    words = [f"word{i}" for i in range(30)]
    scripted_engine.runner.reply_text = " ".join(words)
    api.private_text(USER, "tell me something")
    final = await wait_text(api, USER, words[-1])

    [edit] = api.calls_to("editMessageText")
    assert edit.params["text"] == final == f"{NEGATIVE}\n\n{' '.join(words)}"


async def test_groups_use_the_stricter_edit_interval(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    await make_adapter(edit_interval_s=0.05, group_edit_interval_s=30.0)
    scripted_engine.runner.reply_text = " ".join(f"word{i}" for i in range(12))
    scripted_engine.runner.delay_s = 0.03  # ~0.36 s: several private-chat intervals
    api.group_text(USER, "@testbot talk to me")
    await wait_text(api, GROUP_ID, "word11")
    assert len(api.calls_to("editMessageText")) == 1  # only the forced final edit


# PTB's own RetryAfter constructor trips its retry_after deprecation warning.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
@pytest.mark.parametrize("method", ["editMessageText", "sendMessage"])
async def test_flood_control_is_waited_out_and_no_text_is_lost(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, method: str
) -> None:
    # A long interval leaves exactly one edit (the forced final one), so the 429 hits it.
    await make_adapter(edit_interval_s=30.0)
    api.fail_next(method, 429, retry_after=1)
    api.private_text(USER, "great news everyone")
    final = await wait_text(api, USER, "A cheerful reply to: great news everyone", timeout=8)

    assert final.startswith(POSITIVE)
    calls = api.calls_to(method)
    assert calls[0].status == 429
    assert calls[1].status == 200
    assert calls[1].at - calls[0].at >= 0.95  # retried only after retry_after


async def test_reply_longer_than_4096_is_split(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    words = [f"w{i:05d}" for i in range(1500)]  # 10.5k characters
    scripted_engine.runner.reply_text = " ".join(words)
    api.private_text(USER, "write a lot")
    await wait_text(api, USER, words[-1], timeout=10)

    shown = api.bot_texts(USER)
    assert len(shown) == 3
    assert all(len(text) <= 4096 for text in shown)
    assert shown[0].startswith(NEGATIVE)
    assert [w for w in "\n".join(shown).split() if w.startswith("w0")] == words
    assert all(call.status == 200 for call in api.calls)  # Telegram never refused a length


async def test_one_users_long_reply_does_not_block_another_user(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    scripted_engine.runner.reply_text = " ".join(["slow"] * 40)
    scripted_engine.runner.delay_s = 0.03
    api.private_text(USER, "first")
    await wait_text(api, USER, NEGATIVE)
    api.private_text(OTHER, "second")
    await wait_text(api, OTHER, NEGATIVE)
    # OTHER was labelled while USER's reply was still streaming.
    assert api.bot_texts(USER)[0].count("slow") < 40


async def test_stickers_and_photos_get_a_note_in_private(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.sticker(private_chat(USER), USER)
    api.photo(private_chat(OTHER), OTHER, caption="look at this")
    await wait_text(api, USER, texts.NOT_TEXT)
    await wait_text(api, OTHER, texts.NOT_TEXT)
    assert tagged_texts(scripted_engine) == []


async def test_edits_channel_posts_and_bots_are_ignored_without_error(
    bot: TelegramAdapter,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    original = api.private_text(USER, "hello")
    await wait_text(api, USER, "reply to: hello")
    sent_before = len(api.calls_to("sendMessage"))

    api.edited_text(USER, original, "hello, edited")
    api.channel_post("channel news")
    api.private_text(OTHER, "I am a bot", is_bot=True)
    other_bot = {"id": 77, "is_bot": True, "first_name": "B"}
    bot_in_group = api.push_message(group_chat(), other_bot, text="@testbot hi from a bot")
    api.private_text(USER, "sentinel")  # answered only after the others were dispatched
    await wait_text(api, USER, "reply to: sentinel")

    assert len(api.calls_to("sendMessage")) == sent_before + 1  # the sentinel's label only
    assert tagged_texts(scripted_engine) == ["hello", "sentinel"]
    assert sent_in_reply_to(api, bot_in_group["message_id"]) == []
    assert api.bot_texts(OTHER) == []
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []


# --- recorded before Telegram forgets them (#18) -------------------------------------------


def slow_inbox(engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch, delay_s: float) -> None:
    """A busy database: each inbox write takes `delay_s` longer. Long enough that a handler
    recording the message after the update is confirmed would do so visibly late."""
    claim = engine.store.claim_message

    async def slow_claim(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(delay_s)
        return await claim(*args, **kwargs)

    monkeypatch.setattr(engine.store, "claim_message", slow_claim)


def held_labels(engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The model labels nothing until the returned event is set (it waits in the worker's
    thread, as a slow model would): the messages stay 'received' meanwhile."""
    release = threading.Event()
    tag = engine.runner.tag

    def held_tag(texts: Any) -> list[Sentiment]:
        release.wait(30)
        return tag(texts)

    monkeypatch.setattr(engine.runner, "tag", held_tag)
    return release


def inbox_rows(engine: ScriptedEngine) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(chat id, message id) -> (state, text), read as another process would."""
    with sqlite3.connect(engine.db_path) as conn:
        rows = conn.execute("SELECT chat_id, message_id, state, text FROM inbox").fetchall()
    return {(chat, message): (state, text) for chat, message, state, text in rows}


async def test_a_message_is_in_the_inbox_before_its_update_is_confirmed(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow_inbox(scripted_engine, monkeypatch, 0.3)
    labels = held_labels(scripted_engine, monkeypatch)
    # What the inbox held for each update at the moment a getUpdates confirmed it.
    at_confirm: dict[int, tuple[str, str | None] | None] = {}

    def look(update_ids: list[int]) -> None:
        rows = inbox_rows(scripted_engine)
        for update in api.delivered:
            if update["update_id"] in update_ids:
                message = update["message"]
                where = (str(message["chat"]["id"]), str(message["message_id"]))
                at_confirm[update["update_id"]] = rows.get(where)

    api.on_confirm = look
    await make_adapter()
    private = api.private_text(USER, "I am so happy today")
    group = api.group_text(OTHER, "@testbot I feel sad")
    ids = [int(u["update_id"]) for u in api.delivered]
    await api.wait_for(lambda: set(ids) <= set(api.confirmed), what="both confirmed")
    labels.set()
    await wait_text(api, USER, "A cheerful reply")
    await wait_text(api, GROUP_ID, "A comforting reply")

    # Recorded with the text a restart would answer (the group's without the mention),
    # before Telegram was told the update had arrived; the reply came after.
    assert at_confirm == {
        ids[0]: ("received", "I am so happy today"),
        ids[1]: ("received", "I feel sad"),
    }
    # Done once the final edit is on Telegram, a moment after the chat shows it.
    done = lambda: all(row[0] == "done" for row in inbox_rows(scripted_engine).values())  # noqa: E731
    await api.wait_for(done, what="both done")
    assert inbox_rows(scripted_engine) == {
        (str(USER), str(private["message_id"])): ("done", None),
        (str(GROUP_ID), str(group["message_id"])): ("done", None),
    }
    assert len(api.calls_to("sendMessage")) == 2  # each answered once
    assert sorted(tagged_texts(scripted_engine)) == ["I am so happy today", "I feel sad"]


async def test_a_failure_to_record_on_arrival_does_not_stop_polling(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Anything raised inside PTB's polling loop would end it: no update would come again.
    service = scripted_engine.service
    receive = service.receive
    failures = [RuntimeError("unexpected")]

    async def flaky_receive(messages: Any) -> int:
        if failures:
            raise failures.pop()
        return await receive(messages)

    monkeypatch.setattr(service, "receive", flaky_receive)
    await make_adapter()
    api.private_text(USER, "I am so happy today")
    await wait_text(api, USER, "reply to: I am so happy today")  # recorded by the handler
    api.private_text(USER, "and still polling")
    await wait_text(api, USER, "reply to: and still polling")

    assert "could not record update" in caplog.text
    # Done once the final edit is on Telegram, a moment after the chat shows it.
    states = lambda: [state for state, _ in inbox_rows(scripted_engine).values()]  # noqa: E731
    await api.wait_for(lambda: states() == ["done", "done"], what="both done")


async def test_only_messages_the_bot_answers_are_recorded_on_arrival(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    original = api.private_text(USER, "hello")
    await wait_text(api, USER, "reply to: hello")
    api.edited_text(USER, original, "hello, edited")
    api.channel_post("channel news")
    api.group_text(OTHER, "chatter nobody addressed to the bot")
    api.sticker(api.delivered[0]["message"]["chat"], USER)
    api.private_text(USER, "/help")
    await wait_text(api, USER, "/mood")
    api.private_text(USER, "sentinel")
    await wait_text(api, USER, "reply to: sentinel")

    # Notes, commands and silence leave no inbox row that a restart would try to answer.
    # (An answer is done once its final edit is on Telegram, a moment after it shows.)
    states = lambda: [state for state, _ in inbox_rows(scripted_engine).values()]  # noqa: E731
    await api.wait_for(lambda: "received" not in states(), what="the answers done")
    assert states() == ["done", "done"]
    assert tagged_texts(scripted_engine) == ["hello", "sentinel"]


# --- commands -----------------------------------------------------------------------------


async def answer_to(api: FakeTelegramAPI, chat_id: int, text: str, user: int = USER) -> str:
    """Send `text` from `user` into a private chat (or the group) and return the bot's next
    message there, exactly."""
    before = len(api.bot_texts(chat_id))
    if chat_id == GROUP_ID:
        api.group_text(user, text)
    else:
        api.private_text(user, text)
    await api.wait_for(lambda: len(api.bot_texts(chat_id)) > before, what=f"the answer to {text}")
    return api.bot_texts(chat_id)[before]


async def test_commands_are_registered(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    expected = [{"command": name, "description": about} for name, about in texts.COMMANDS.items()]
    assert api.calls_to("setMyCommands")[0].params["commands"] == expected
    # Every advertised command has a handler that answers it: a new user's answer to each.
    empty_mood = (await scripted_engine.service.mood(key(USER), 7)).text
    answers = {
        "start": texts.start_text(12),
        "help": texts.help_text(),
        "mood": empty_mood,
        "reset": texts.RESET_DONE,
        "forget": texts.FORGET_ASK,
        "digest": texts.DIGEST_USAGE,
        "checkin": texts.CHECKIN_USAGE,
        "wrong": texts.wrong_usage(None),
        "unlink": texts.UNLINK_NONE,
        "export": texts.export_done(0, 0, 0),
    }
    for name in texts.COMMANDS:
        answer = await answer_to(api, USER, f"/{name}")
        if name == "link":  # a fresh random code
            assert LINK_CODE.search(answer), answer
        else:
            assert answer == answers.pop(name), name
    assert answers == {}


async def test_start_help_and_unknown_command(bot: TelegramAdapter, api: FakeTelegramAPI) -> None:
    api.private_text(USER, "/start")
    await wait_text(api, USER, texts.start_text(12))
    api.private_text(USER, "/help")
    await wait_text(api, USER, texts.help_text())
    api.private_text(USER, "/frobnicate now")
    await wait_text(api, USER, texts.UNKNOWN_COMMAND)
    # Each answered once, in full, in order (wait_text only looks for its text somewhere).
    assert api.bot_texts(USER) == [texts.start_text(12), texts.help_text(), texts.UNKNOWN_COMMAND]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_command_answers_wait_out_flood_control(
    bot: TelegramAdapter, api: FakeTelegramAPI
) -> None:
    api.fail_next("sendMessage", 429, retry_after=1)
    api.private_text(USER, "/help")
    await wait_text(api, USER, texts.help_text())
    assert [c.status for c in api.calls_to("sendMessage")] == [429, 200]


async def test_mood_sends_summary_and_png_chart(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.private_text(USER, "I love this")
    await wait_text(api, USER, "reply to: I love this")
    api.private_text(USER, "/mood 30")
    photo = await api.wait_for(lambda: api.calls_to("sendPhoto"), timeout=30, what="sendPhoto")

    report = await scripted_engine.service.mood(key(USER), 30)
    assert report.positive == 1
    assert report.text in api.bot_texts(USER)
    assert photo[0].params["chat_id"] == USER
    assert photo[0].files["photo"].startswith(b"\x89PNG\r\n\x1a\n")


async def test_mood_with_bad_days_explains_and_without_data_sends_no_chart(
    bot: TelegramAdapter, api: FakeTelegramAPI
) -> None:
    api.private_text(USER, "/mood lots")
    await wait_text(api, USER, texts.bad_days("lots"))
    assert await answer_to(api, USER, "/mood") == (await bot.service.mood(key(USER), 7)).text
    await bot.stop()  # waits for the command's handler to end: whatever it sent is sent
    assert api.calls_to("sendPhoto") == []


async def test_reset_clears_this_chats_memory_but_keeps_mood(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.private_text(USER, "good morning")
    await wait_text(api, USER, "reply to: good morning")
    assert await scripted_engine.store.recent_turns(key(USER), str(USER), 10)
    api.private_text(USER, "/reset")
    await wait_text(api, USER, texts.RESET_DONE)
    assert await scripted_engine.store.recent_turns(key(USER), str(USER), 10) == []
    assert len(await mood_events(scripted_engine, USER, at_least=1)) == 1


async def test_a_typed_wrong_corrects_the_latest_label(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.private_text(USER, "I am so happy today")
    await wait_text(api, USER, "reply to: I am so happy today")
    assert await answer_to(api, USER, "/wrong") == texts.wrong_usage("positive")
    assert await answer_to(api, USER, "/wrong bogus") == texts.wrong_usage("positive")
    [event] = await mood_events(scripted_engine, USER, at_least=1)
    assert event.corrected is None  # a bad argument changes nothing

    done = await answer_to(api, USER, "/wrong negative")
    assert done == texts.correction_done("positive", "negative")
    [event] = await mood_events(scripted_engine, USER, at_least=1)
    assert event.corrected == "negative"
    report = await scripted_engine.service.mood(key(USER), 7)
    assert (report.positive, report.negative) == (0, 1)


async def test_unlink_separates_the_linked_accounts(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    store = scripted_engine.store
    elsewhere = UserKey("console", "local")
    await link_accounts(store, key(USER), elsewhere)
    assert await store.linked_accounts(key(USER)) == [elsewhere]

    assert await answer_to(api, USER, "/unlink") == texts.UNLINK_DONE
    assert await store.linked_accounts(key(USER)) == []
    assert await store.linked_accounts(elsewhere) == []
    assert await answer_to(api, USER, "/unlink") == texts.UNLINK_NONE


async def test_digest_on_then_off_in_a_private_chat(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    store = scripted_engine.store
    config = scripted_engine.service.config
    on = texts.digest_on(config.digest_weekday, config.digest_at, config.timezone, True)
    assert await answer_to(api, USER, "/digest on") == on
    assert await store.digest_subscriptions("telegram") == [
        DigestSubscription(key(USER), str(USER))
    ]

    assert await answer_to(api, USER, "/digest off") == texts.DIGEST_OFF
    assert await store.digest_subscriptions("telegram") == []
    assert await answer_to(api, USER, "/digest off") == texts.DIGEST_WAS_OFF


async def test_forget_asks_only_the_owner_can_confirm_and_cancel_keeps_data(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.private_text(USER, "a great day")
    await wait_text(api, USER, "reply to: a great day")
    assert await mood_events(scripted_engine, USER)

    # In a group, everyone sees the buttons.
    api.group_text(USER, "/forget")
    await wait_text(api, GROUP_ID, texts.FORGET_ASK)
    prompt = api.bot_messages(GROUP_ID)[-1]
    buttons = prompt["reply_markup"]["inline_keyboard"][0]
    yes, no = (button["callback_data"] for button in buttons)

    api.press_button(OTHER, prompt, yes)
    refusal = await api.wait_for(lambda: api.calls_to("answerCallbackQuery"))
    assert refusal[0].params["text"] == texts.FORGET_NOT_YOURS
    assert refusal[0].params["show_alert"] is True
    assert await mood_events(scripted_engine, USER)  # nothing deleted
    assert api.bot_messages(GROUP_ID)[-1]["text"] == texts.FORGET_ASK

    api.press_button(USER, prompt, no)
    await wait_text(api, GROUP_ID, texts.FORGET_CANCELLED)
    assert await mood_events(scripted_engine, USER)
    assert "reply_markup" not in api.bot_messages(GROUP_ID)[-1]  # buttons removed

    api.group_text(USER, "/forget")
    await api.wait_for(lambda: api.bot_texts(GROUP_ID).count(texts.FORGET_ASK) == 1)
    prompt = api.bot_messages(GROUP_ID)[-1]
    api.press_button(USER, prompt, yes)
    await wait_text(api, GROUP_ID, "已删除")
    await api.wait_for(lambda: len(api.calls_to("answerCallbackQuery")) == 3)

    assert await mood_events(scripted_engine, USER) == []
    assert await scripted_engine.store.recent_turns(key(USER), str(USER), 10) == []


# --- groups -------------------------------------------------------------------------------


async def test_personal_commands_in_a_group_point_to_a_private_chat(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.private_text(USER, "a great day")
    await wait_text(api, USER, "reply to: a great day")
    for asked, command in enumerate(("/mood", "/mood why", "/mood week"), start=1):
        api.group_text(USER, command)

        def refused(times: int = asked) -> bool:
            return api.bot_texts(GROUP_ID).count(texts.MOOD_PRIVATE_ONLY) == times

        await api.wait_for(refused)
    api.group_text(USER, "/digest on")
    await wait_text(api, GROUP_ID, texts.DIGEST_PRIVATE_ONLY)
    shown = "\n".join(api.bot_texts(GROUP_ID))
    assert "reply to" not in shown  # nothing of theirs
    assert "a great day" not in shown
    assert [c for c in api.calls_to("sendPhoto") if c.params["chat_id"] == GROUP_ID] == []
    assert await scripted_engine.store.digest_subscriptions("telegram") == []
    api.private_text(USER, "/mood")  # the same command in the private chat answers it
    report = await scripted_engine.service.mood(key(USER), 7)
    await api.wait_for(lambda: report.text in api.bot_texts(USER), what="the private /mood")


async def test_group_chatter_is_ignored_mentions_are_answered_as_replies(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    chatter = api.group_text(OTHER, "anyone up for lunch? great weather")
    mention = api.group_text(USER, "@testbot how are you")
    await wait_text(api, GROUP_ID, "reply to: how are you")

    answer = sent_in_reply_to(api, mention["message_id"])
    assert len(answer) == 1
    assert answer[0].params["chat_id"] == GROUP_ID
    assert sent_in_reply_to(api, chatter["message_id"]) == []
    assert tagged_texts(scripted_engine) == ["how are you"]  # mention stripped
    assert await mood_events(scripted_engine, OTHER) == []


async def test_bare_mention_and_forum_topics(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    bare = api.group_text(USER, "@testbot")
    await api.wait_for(lambda: sent_in_reply_to(api, bare["message_id"]))
    assert sent_in_reply_to(api, bare["message_id"])[0].params["text"] == texts.EMPTY_MESSAGE

    topic: dict[str, Any] = {"message_thread_id": 7, "is_topic_message": True}
    api.push_message(group_chat(), user_json(USER), text="@testbot in a topic", **topic)
    await wait_text(api, GROUP_ID, "reply to: in a topic")
    assert api.calls_to("sendMessage")[-1].params["message_thread_id"] == 7
    assert api.calls_to("sendChatAction")[-1].params["message_thread_id"] == 7
    assert tagged_texts(scripted_engine) == ["in a topic"]


async def test_group_reply_to_the_bot_is_answered_reply_to_others_is_not(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.group_text(USER, "@testbot hi")
    await wait_text(api, GROUP_ID, "reply to: hi")
    bot_message = api.bot_messages(GROUP_ID)[0]["message_id"]

    someone = api.group_text(OTHER, "just chatting")
    to_someone = api.group_text(USER, "I agree with you", reply_to=someone["message_id"])
    to_bot = api.group_text(USER, "thanks, that helps", reply_to=bot_message)
    await wait_text(api, GROUP_ID, "reply to: thanks, that helps")

    assert len(sent_in_reply_to(api, to_bot["message_id"])) == 1
    assert sent_in_reply_to(api, to_someone["message_id"]) == []
    assert tagged_texts(scripted_engine) == ["hi", "thanks, that helps"]


async def test_group_triggers_are_configurable(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    await make_adapter(group_reply_on_mention=False)
    ignored = api.group_text(USER, "@testbot are you there")
    api.private_text(USER, "sentinel")
    await wait_text(api, USER, "reply to: sentinel")
    assert sent_in_reply_to(api, ignored["message_id"]) == []
    assert tagged_texts(scripted_engine) == ["sentinel"]


async def test_group_non_text_and_commands_only_when_addressed(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.group_text(USER, "@testbot hello")
    await wait_text(api, GROUP_ID, "reply to: hello")
    bot_message = api.bot_messages(GROUP_ID)[0]["message_id"]

    stray_sticker = api.sticker(group_chat(), OTHER)
    stray_command = api.group_text(OTHER, "/weather")
    other_bots_command = api.group_text(OTHER, "/frobnicate@otherbot")
    sticker_to_bot = api.sticker(group_chat(), USER, reply_to=bot_message)
    command_to_bot = api.group_text(USER, "/frobnicate@testbot")
    await api.wait_for(lambda: sent_in_reply_to(api, command_to_bot["message_id"]))
    await api.wait_for(lambda: sent_in_reply_to(api, sticker_to_bot["message_id"]))

    assert sent_in_reply_to(api, sticker_to_bot["message_id"])[0].params["text"] == texts.NOT_TEXT
    assert sent_in_reply_to(api, command_to_bot["message_id"])[0].params["text"] == (
        texts.UNKNOWN_COMMAND
    )
    for stray in (stray_sticker, stray_command, other_bots_command):
        assert sent_in_reply_to(api, stray["message_id"]) == []


# --- access and lifecycle -----------------------------------------------------------------


async def test_allow_list_refuses_others_and_stores_nothing(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    await make_adapter(allowed_user_ids=frozenset({USER}))
    api.private_text(OTHER, "I am so happy")
    api.private_text(OTHER + 1, "/mood")
    await wait_text(api, OTHER, texts.NOT_ALLOWED)
    await wait_text(api, OTHER + 1, texts.NOT_ALLOWED)
    api.private_text(USER, "I am allowed")
    await wait_text(api, USER, "reply to: I am allowed")

    assert tagged_texts(scripted_engine) == ["I am allowed"]
    assert await mood_events(scripted_engine, OTHER) == []
    assert api.bot_texts(OTHER) == [texts.NOT_ALLOWED]


async def stopped(adapter: TelegramAdapter) -> bool:
    """Whether adapter.stop() returned before the guard (asyncio.wait: a timeout must not
    cancel the stop it measures)."""
    stopping = asyncio.create_task(adapter.stop())
    done, _ = await asyncio.wait({stopping}, timeout=HANG)
    return stopping in done


async def test_stop_does_not_wait_out_a_long_poll_and_is_idempotent(
    make_adapter: MakeAdapter, api: FakeTelegramAPI
) -> None:
    adapter = await make_adapter(poll_timeout_s=3600.0)  # the server would hold it an hour
    # Wait until a long poll is actually parked on the server.
    await api.wait_for(lambda: [c for c in api.calls_to("getUpdates") if c.params.get("timeout")])
    assert await stopped(adapter)
    assert await stopped(adapter)  # a second stop is a no-op


async def test_stop_lets_an_inflight_reply_finish(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    adapter = await make_adapter(stop_grace_s=3600.0)
    hold = scripted_engine.runner.hold = threading.Event()
    scripted_engine.runner.reply_text = "first and then the rest"
    api.private_text(USER, "go on")
    await wait_text(api, USER, NEGATIVE)
    stopping = asyncio.create_task(adapter.stop())
    try:
        # Once stop() takes no more work, the held reply may go on: it is waited for.
        await api.wait_for(lambda: adapter._inflight.closed, what="stop() to begin")
    finally:
        hold.set()
    done, _ = await asyncio.wait({stopping}, timeout=HANG)
    assert stopping in done
    assert api.bot_texts(USER) == [f"{NEGATIVE}\n\nfirst and then the rest"]


async def test_stop_cuts_a_reply_that_outlives_the_grace_period(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    adapter = await make_adapter(stop_grace_s=0.3)
    hold = scripted_engine.runner.hold = threading.Event()  # the rest waits until after stop
    scripted_engine.runner.reply_text = "first and then the words nobody will see"
    api.private_text(USER, "go on")
    await wait_text(api, USER, NEGATIVE)
    try:
        assert await stopped(adapter)  # bounded by the grace period, not by the reply
    finally:
        hold.set()
    reply = scripted_engine.runner.replies[-1]
    assert await asyncio.to_thread(reply.closed_signal.wait, HANG)  # the model stopped too
    assert "nobody" not in " ".join(api.bot_texts(USER))


async def test_bad_token_fails_start_without_leaking_it(
    scripted_engine: ScriptedEngine, api: FakeTelegramAPI
) -> None:
    config = TelegramConfig(token="123:WRONGSECRET", api_base_url=api.base_url)
    adapter = TelegramAdapter(scripted_engine.service, config)
    with pytest.raises(TelegramAuthError) as raised:
        await adapter.start()
    assert "WRONGSECRET" not in str(raised.value)
    assert raised.value.__suppress_context__  # the PTB error holding the token is not shown
    await adapter.stop()  # safe after a failed start


async def test_token_never_reaches_logs(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # An error whose text holds the token, as PTB's InvalidToken does: the traceback the
    # error handler logs must come out redacted too.
    api.fail_next("sendMessage", 400, description=f"Bad Request: token {DEFAULT_TOKEN}")
    await make_adapter()
    api.private_text(USER, "hello")
    errors = await api.wait_for(
        lambda: [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    )
    api.private_text(USER, "hello again")
    await wait_text(api, USER, "reply to: hello again")

    assert "Set Bot API URL" in caplog.text  # PTB did log its (token-bearing) URL…
    assert DEFAULT_TOKEN not in caplog.text  # …but redacted
    assert "<token>" in (errors[0].exc_text or "")


async def test_sink_ignores_not_modified_and_replaces_a_deleted_message(
    api: FakeTelegramAPI,
) -> None:
    async with Bot(DEFAULT_TOKEN, base_url=api.base_url) as client:
        sink = TelegramSink(Outbox(client, private_chat(USER)["id"], private=True))
        posted = await sink.send("hello")
        await sink.edit(posted, "hello")  # Telegram: 400 "message is not modified"
        assert api.calls_to("editMessageText")[-1].status == 400

        api.fail_next("editMessageText", 400, description="Bad Request: message to edit not found")
        await sink.edit(posted, "hello again")
        assert api.bot_texts(USER) == ["hello", "hello again"]
        await sink.edit(posted, "and again")  # the handle now points at the new message
        assert api.bot_texts(USER) == ["hello", "and again"]


async def test_sink_maps_faults_and_deletes_a_message_no_longer_needed(
    api: FakeTelegramAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async with Bot(DEFAULT_TOKEN, base_url=api.base_url) as client:
        sink = TelegramSink(Outbox(client, private_chat(USER)["id"], private=True))
        posted = await sink.send("hello")
        api.fail_next("editMessageText", 502, description="Bad Gateway")
        with pytest.raises(Transient):
            await sink.edit(posted, "hello again")
        api.drop_next("sendMessage")
        with pytest.raises(Transient):
            await sink.send("dropped")
        await sink.delete(posted)
        assert api.bot_texts(USER) == []
        await sink.delete(posted)  # already gone: logged, not raised
        assert "could not delete" in caplog.text


# --- configuration ------------------------------------------------------------------------


def test_config_from_env() -> None:
    assert TelegramConfig.from_env({}) is None
    assert TelegramConfig.from_env({"TELEGRAM_BOT_TOKEN": "  "}) is None
    config = TelegramConfig.from_env(
        {
            "TELEGRAM_BOT_TOKEN": "42:SECRET-token_x",
            "TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081/bot",
            "TELEGRAM_ALLOWED_USER_IDS": "1, 2,3",
            "TELEGRAM_GROUP_TRIGGERS": "reply",
            "TELEGRAM_EDIT_INTERVAL_S": "1.5",
        }
    )
    assert config is not None
    assert config.api_base_url == "http://127.0.0.1:8081/bot"
    assert config.api_file_url == "https://api.telegram.org/file/bot"
    assert config.allowed_user_ids == frozenset({1, 2, 3})
    assert (config.group_reply_on_mention, config.group_reply_on_reply) == (False, True)
    assert config.edit_interval_s == 1.5
    assert "SECRET" not in repr(config)
    assert not config.webhook


def test_webhook_config() -> None:
    config = TelegramConfig.from_env(
        {
            "TELEGRAM_BOT_TOKEN": "42:abc",
            "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hooks/telegram",
            "TELEGRAM_WEBHOOK_LISTEN": "[::]:8443",
            "TELEGRAM_WEBHOOK_SECRET": "SECRET-hook_1" * 3,
        }
    )
    assert config is not None
    assert config.webhook
    assert config.listen_address == ("::", 8443)
    assert config.webhook_path == "hooks/telegram"
    assert "SECRET" not in repr(config)
    with pytest.raises(ValueError, match="needs TELEGRAM_WEBHOOK_SECRET"):
        TelegramConfig.from_env(
            {"TELEGRAM_BOT_TOKEN": "42:abc", "TELEGRAM_WEBHOOK_URL": "https://x.example/h"}
        )


@pytest.mark.parametrize(
    ("key_name", "value"),
    [
        ("TELEGRAM_BOT_TOKEN", "not a token SECRET"),
        ("TELEGRAM_API_BASE_URL", "api.telegram.org/bot"),
        ("TELEGRAM_ALLOWED_USER_IDS", "12,alice"),
        ("TELEGRAM_GROUP_TRIGGERS", "mention,always"),
        ("TELEGRAM_EDIT_INTERVAL_S", "fast"),
        ("TELEGRAM_POLL_TIMEOUT_S", "-1"),
        ("TELEGRAM_WEBHOOK_URL", "http://bot.example.com/hook"),
        ("TELEGRAM_WEBHOOK_LISTEN", "8080"),
        ("TELEGRAM_WEBHOOK_LISTEN", "0.0.0.0:99999"),
        ("TELEGRAM_WEBHOOK_SECRET", "has spaces SECRET"),
        ("TELEGRAM_WEBHOOK_SECRET", "x"),  # a secret that short is guessed
        ("TELEGRAM_WEBHOOK_SECRET", "SECRET-" + "a" * 24),  # 31 characters
    ],
)
def test_config_errors_name_the_key(key_name: str, value: str) -> None:
    env = {"TELEGRAM_BOT_TOKEN": "42:abc", key_name: value}
    with pytest.raises(ValueError, match=key_name) as raised:
        TelegramConfig.from_env(env)
    assert "SECRET" not in str(raised.value).replace(key_name, "")


async def test_message_text_never_reaches_the_logs_at_info(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "zebra-umbrella-4711"
    caplog.set_level(logging.INFO)  # what the bot runs at: DEBUG (PTB's updates) is off
    # The paths that do log: a failed send (logged with its traceback) and a failed reply.
    api.fail_next("sendMessage", 400, description="Bad Request: chat not found")
    await make_adapter()
    api.private_text(USER, f"{secret} I am so happy")
    await api.wait_for(lambda: [r for r in caplog.records if r.levelno >= logging.ERROR])
    api.private_text(USER, f"{secret} one more happy line")
    await wait_text(api, USER, f"reply to: {secret} one more")
    scripted_engine.runner.fail_reply_at = 1
    api.private_text(USER, f"{secret} and a third")
    await wait_text(api, USER, texts.MODEL_ERROR)

    assert "reply generation failed" in caplog.text  # the failures were logged…
    logged = [caplog.text, *(r.getMessage() + (r.exc_text or "") for r in caplog.records)]
    assert not any(secret in text for text in logged)  # …without the user's words


async def test_the_application_keeps_no_id_of_everyone_who_wrote(
    make_adapter: MakeAdapter, api: FakeTelegramAPI
) -> None:
    adapter = await make_adapter()
    writers = range(USER, USER + 5)
    for user in writers:
        api.private_text(user, "hello there")
        await wait_text(api, user, "reply to: hello there")
    app = adapter._app
    assert app is not None
    # PTB notes each update's ids for a persistence to save; the bot has none, so nothing
    # may pile up (these held every id that ever wrote).
    assert app._user_ids_to_be_updated_in_persistence == set()
    assert app._chat_ids_to_be_updated_in_persistence == set()
    assert (len(app.user_data), len(app.chat_data)) == (0, 0)


# --- after a restart ----------------------------------------------------------------------


async def test_a_message_left_unanswered_by_a_dead_process_is_answered_at_start(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    # A group message in a forum topic, recorded by a process that died before it had sent
    # anything (no reply message to complete): the next start answers it, in the same topic,
    # quoting it, and saying that the answer comes late.
    update = api.message_update(group_chat(), user_json(USER), "@testbot I feel sad")
    message_id = int(update["message"]["message_id"])
    dead = await SqlMoodStore.open(scripted_engine.db_path)
    incoming = IncomingMessage("telegram", str(USER), str(GROUP_ID), "I feel sad",
                               str(message_id), '{"private": false, "thread": 77}')  # fmt: skip
    assert await dead.claim_message(incoming.key, key(USER), datetime.now(UTC), incoming)  # type: ignore[arg-type]
    await dead.close()

    await make_adapter()
    final = await wait_text(api, GROUP_ID, "A comforting reply to: I feel sad")

    assert final == f"{texts.RETRY_NOTE}\n{NEGATIVE}\n\nA comforting reply to: I feel sad"
    [sent] = sent_in_reply_to(api, message_id)
    assert sent.params["message_thread_id"] == 77
    assert len(await mood_events(scripted_engine, USER, at_least=1)) == 1
    assert await scripted_engine.service.unfinished("telegram") == []


async def test_a_running_bot_finishes_what_another_process_left_later(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another bot process on the database dies after this one started: the next sweep
    # (RESUME_INTERVAL_S) answers its message, once, however many sweeps follow.
    service = scripted_engine.service
    service.config = service.config.model_copy(update={"resume_interval_s": 0.05})
    sweeps = 0
    unfinished = service.unfinished

    async def counted(platform: str) -> Any:
        nonlocal sweeps
        sweeps += 1
        return await unfinished(platform)

    monkeypatch.setattr(service, "unfinished", counted)
    await make_adapter()
    message = api.message_update(private_chat(USER), user_json(USER), "I am so happy")["message"]
    dead = await SqlMoodStore.open(scripted_engine.db_path)
    incoming = IncomingMessage("telegram", str(USER), str(USER), "I am so happy",
                               str(message["message_id"]), '{"private": true}')  # fmt: skip
    assert await dead.claim_message(incoming.key, key(USER), datetime.now(UTC), incoming)  # type: ignore[arg-type]
    await dead.close()

    final = await wait_text(api, USER, "A cheerful reply to: I am so happy")
    answered_at = sweeps
    await api.wait_for(lambda: sweeps >= answered_at + 3, what="three more sweeps")
    assert final == f"{texts.RETRY_NOTE}\n{POSITIVE}\n\nA cheerful reply to: I am so happy"
    assert len(api.calls_to("sendMessage")) == 1
    assert len(await mood_events(scripted_engine, USER, at_least=1)) == 1


# --- the support note (engine/chat/safety.py) -----------------------------------------------------

CRISIS = "I don't want to be alive anymore."


async def test_a_crisis_message_in_private_gets_the_reply_then_the_note_as_its_own_message(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.private_text(USER, CRISIS)
    note = await wait_text(api, USER, "findahelpline.com")
    assert note == safety.support_note("words", CRISIS)
    sent = [c.params["text"] for c in api.calls_to("sendMessage")]
    assert sent == [NEGATIVE, note]  # the label (grown into the reply by edits), then the note
    reply = api.bot_texts(USER)[0]
    # The scripted reply ("A comforting reply to: …") has no word of care: the template.
    assert reply == f"{NEGATIVE}\n\n{safety.CARING_REPLY['en']}"
    assert [n.trigger for n in await scripted_engine.store.support_notes(key(USER), EPOCH)] == [
        "words"
    ]


async def test_no_note_in_a_group(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.group_text(USER, f"@testbot {CRISIS}")
    await wait_text(api, GROUP_ID, safety.CARING_REPLY["en"])
    api.group_text(OTHER, "@testbot sentinel")
    await wait_text(api, GROUP_ID, "reply to: sentinel")
    assert not any("findahelpline" in text for text in api.bot_texts(GROUP_ID))
    assert await scripted_engine.store.support_notes(key(USER), EPOCH) == []


async def test_a_crisis_message_answered_after_a_restart_keeps_its_private_note(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    # The store rebuilds the message without knowing the chat is private; the origin says so.
    message = api.message_update(private_chat(USER), user_json(USER), CRISIS)["message"]
    dead = await SqlMoodStore.open(scripted_engine.db_path)
    incoming = IncomingMessage("telegram", str(USER), str(USER), CRISIS,
                               str(message["message_id"]), '{"private": true}')  # fmt: skip
    assert await dead.claim_message(incoming.key, key(USER), datetime.now(UTC), incoming)  # type: ignore[arg-type]
    await dead.close()

    await make_adapter()
    assert await wait_text(api, USER, "findahelpline.com") == safety.support_note("words", CRISIS)

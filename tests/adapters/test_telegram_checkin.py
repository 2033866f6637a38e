"""The daily check-in on the Telegram fake: real python-telegram-bot, its JobQueue firing every
fraction of a second instead of every minute, and the chat service's clock set to the minute
of the check-in (so nothing waits for real minutes)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.checkin import JOB_NAME
from engine.chat import texts
from engine.chat.service import ChatService
from tests.adapters.test_telegram import USER, api, key, wait_text  # noqa: F401 - fixtures
from tests.adapters.test_telegram_insight import telegram_config
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine
from tests.fakes.telegram_api import GROUP_ID, FakeTelegramAPI

BLOCKER = 333
# Fri 2024-11-22 20:59 in Berlin (UTC+1): a minute before the check-in asked for below.
BEFORE = datetime(2024, 11, 22, 19, 59, tzinfo=UTC)
NINE = BEFORE + timedelta(minutes=1)


class Clock(datetime):
    at = BEFORE

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Clock:
        return cls.at  # type: ignore[return-value]


@pytest.fixture
async def adapter(
    scripted_engine: ScriptedEngine,
    api: FakeTelegramAPI,  # noqa: F811
) -> AsyncIterator[TelegramAdapter]:
    Clock.at = BEFORE
    chat = SYSTEM_LAYOUT.model_copy(update={"timezone": "Europe/Berlin"})
    service = ChatService(scripted_engine.worker, scripted_engine.store, chat, clock=Clock)
    started = TelegramAdapter(service, telegram_config(api))
    started.checkins.every = timedelta(seconds=0.1)
    await started.start()
    yield started
    await started.stop()


async def test_the_job_asks_in_the_private_chat_and_the_answer_is_labelled(
    adapter: TelegramAdapter,
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert adapter._app is not None
    assert adapter._app.job_queue is not None
    [job] = adapter._app.job_queue.get_jobs_by_name(JOB_NAME)
    assert job.next_t is not None
    api.private_text(USER, "I love this song")
    await wait_text(api, USER, "reply to: I love this song")
    api.private_text(USER, "/checkin 21:00")
    await wait_text(api, USER, "from today, every day at 21:00 (Europe/Berlin)")
    asked_before = len(api.bot_texts(USER))

    # Another day; no message yet that day. The job fires on its own within 0.1 s.
    Clock.at = NINE + timedelta(days=1)
    question = await api.wait_for(
        lambda: next((t for t in api.bot_texts(USER)[asked_before:]
                      if t in texts.CHECKIN_QUESTIONS["en"]), None),
        what="the check-in question",
    )  # fmt: skip
    api.private_text(USER, "a good day, thanks")
    await wait_text(api, USER, "reply to: a good day, thanks")
    assert scripted_engine.runner.reply_calls[-1].history[-1].content == question
    events = await scripted_engine.store.mood_events(key(USER), NINE)
    assert [e.label for e in events] == ["positive"]
    # The job runs every minute: the scheduler does not log each run at INFO.
    assert not [r for r in caplog.records if r.name.startswith("apscheduler")]
    # Once a day: the same minute again asks nothing.
    assert (await adapter.checkins.send_now(adapter._app.bot)).sent == []
    assert [t for t in api.bot_texts(USER) if t in texts.CHECKIN_QUESTIONS["en"]] == [question]


async def test_a_user_who_blocked_the_bot_is_skipped_and_logged(
    adapter: TelegramAdapter,
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for user in (USER, BLOCKER):
        api.private_text(user, "/checkin 21:00")
        await wait_text(api, user, "every day at 21:00")
    api.blocked_by.add(BLOCKER)
    caplog.set_level(logging.INFO, logger="engine.chat.checkin")
    Clock.at = NINE  # the job, firing on its own, finds both due
    await api.wait_for(
        lambda: [t for t in api.bot_texts(USER) if t in texts.CHECKIN_QUESTIONS["zh"]],
        what="the question to the user who did not block the bot",
    )
    refused = await api.wait_for(
        lambda: [c for c in api.calls_to("sendMessage") if c.params["chat_id"] == BLOCKER
                 and c.status == 403],
        what="the refused send",
    )  # fmt: skip
    assert len(refused) == 1
    gone = await api.wait_for(
        lambda: [r for r in caplog.records if f"user {BLOCKER} cannot be reached" in r.getMessage()]
    )
    assert [r.levelno for r in gone] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await scripted_engine.store.recent_turns(key(BLOCKER), str(BLOCKER), 10) == []


async def test_checkin_in_a_group_points_to_the_private_chat(
    adapter: TelegramAdapter,
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    api.group_text(USER, "/checkin 21:00")
    await wait_text(api, GROUP_ID, texts.CHECKIN_PRIVATE_ONLY)
    assert await scripted_engine.store.checkin_subscriptions("telegram") == []
    menu = api.calls_to("setMyCommands")[0].params["commands"]
    assert {"command": "checkin", "description": texts.COMMANDS["checkin"]} in menu

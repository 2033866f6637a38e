"""The daily check-in on the Discord fake: real discord.py, the slash command's options, and its
discord.ext.tasks loop running every fraction of a second instead of every minute, with the
chat service's clock set to the minute of the check-in (so nothing waits for real minutes)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.checkin import DiscordCheckins
from engine.chat import texts
from engine.chat.service import ChatService
from tests.adapters.test_discord import (  # noqa: F401 - fixtures
    ALICE,
    ALICE_ID,
    BOB,
    BOB_ID,
    CHANNEL,
    DM_OF,
    EDIT_ORIGINAL,
    GUILD,
    MESSAGES,
    config,
    dm,
    expected_reply,
    fake,
    scripted_runner,
    slash,
    wait_for_call,
    wait_for_message,
)
from tests.adapters.test_discord_insight import command, key
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine
from tests.fakes.discord_api import JSON, FakeDiscord

# Fri 2024-11-22 20:59 in Shanghai (UTC+8): a minute before the check-in asked for below.
BEFORE = datetime(2024, 11, 22, 12, 59, tzinfo=UTC)
NINE = BEFORE + timedelta(minutes=1)
QUESTIONS = {*texts.CHECKIN_QUESTIONS["zh"], *texts.CHECKIN_QUESTIONS["en"]}


class Clock(datetime):
    at = BEFORE

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Clock:
        return cls.at  # type: ignore[return-value]


def options(**values: str) -> list[JSON]:
    return [{"name": name, "type": 3, "value": value} for name, value in values.items()]


@pytest.fixture
async def bot(
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> AsyncIterator[DiscordAdapter]:
    Clock.at = BEFORE
    chat = SYSTEM_LAYOUT.model_copy(update={"timezone": "Asia/Shanghai"})
    service = ChatService(scripted_engine.worker, scripted_engine.store, chat, clock=Clock)
    started = DiscordAdapter(service, config(fake))
    await started.start()
    try:
        assert started.checkins is not None
        assert started.checkins.loop.is_running()  # the one-minute loop of a real start
        # The same loop, looking every 0.1 s instead of every minute.
        await started.checkins.stop()
        assert not started.checkins.loop.is_running()  # stopped: ended, not only asked to end
        assert started.client is not None
        started.checkins = DiscordCheckins(service, started.client, timedelta(seconds=0.1))
        started.checkins.start()
        yield started
    finally:
        await started.stop()
    assert not started.checkins.loop.is_running()


def questions_to(fake: FakeDiscord, user_id: int) -> list[str]:  # noqa: F811
    return [
        str(call.json["content"])
        for call in fake.calls_to(MESSAGES)
        if call.status == 200
        and fake.dm_recipients.get(int(call.params["channel_id"])) == user_id
        and call.json["content"] in QUESTIONS
    ]


async def test_the_slash_command_takes_a_time_and_a_zone_in_a_dm_only(
    bot: DiscordAdapter,
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    published = {c["name"]: c for c in fake.commands[None]}
    assert published["checkin"]["description"] == texts.COMMANDS["checkin"]
    assert [o["name"] for o in published["checkin"]["options"]] == ["time", "timezone"]
    assert not any(o.get("required") for o in published["checkin"]["options"])

    asked = slash(fake, ALICE, "checkin", options(time="21:00"), guild_id=GUILD, channel_id=CHANNEL)
    await fake.dispatch("INTERACTION_CREATE", asked)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, asked["token"])
    assert answer.json["content"] == texts.CHECKIN_PRIVATE_ONLY  # every day, to the channel
    assert await scripted_engine.store.checkin_subscriptions("discord") == []

    answer = await command(fake, ALICE, "checkin", options(time="21:30", timezone="europe/berlin"))
    assert "every day at 21:30 (Europe/Berlin)" in answer
    [stored] = await scripted_engine.store.checkin_subscriptions("discord")
    assert (stored.user, stored.chat_id, stored.timezone) == (
        key(ALICE_ID),
        str(DM_OF[ALICE_ID]),
        "Europe/Berlin",
    )
    assert await command(fake, ALICE, "checkin", []) == texts.checkin_status(
        stored.at, "Europe/Berlin"
    )
    assert await command(fake, ALICE, "checkin", options(time="off")) == texts.CHECKIN_OFF


async def test_the_loop_asks_by_dm_and_closed_dms_are_skipped_and_logged(
    bot: DiscordAdapter,
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "I love this song"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("I love this song"))
    for user in (ALICE, BOB):
        answer = await command(fake, user, "checkin", options(time="21:00"))
        assert "from today, every day at 21:00 (Asia/Shanghai)" in answer
    fake.closed_dms.add(BOB_ID)
    caplog.set_level(logging.INFO, logger="engine.chat.checkin")
    # The next day (she wrote today), nothing written yet: the loop, on its own, finds both due.
    Clock.at = NINE + timedelta(days=1)

    [question] = await fake.wait_for(lambda: questions_to(fake, ALICE_ID), what="the question")
    assert question in texts.CHECKIN_QUESTIONS["en"]  # her language
    gone = await fake.wait_for(
        lambda: [r for r in caplog.records if f"user {BOB_ID} cannot be reached" in r.getMessage()]
    )
    assert [r.levelno for r in gone] == [logging.INFO]
    refused = [c for c in fake.calls_to(MESSAGES) if c.status == 403]
    assert [fake.dm_recipients[int(c.params["channel_id"])] for c in refused] == [BOB_ID]

    # Her answer is an ordinary message, read with the question before it.
    Clock.at = NINE + timedelta(days=1, minutes=3)
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "a good day, thanks"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("a good day, thanks"))
    assert scripted_engine.runner.reply_calls[-1].history[-1].content == question
    assert questions_to(fake, ALICE_ID) == [question]  # once that day
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

"""/mood why, /mood week and the weekly digest on the Discord fake (real discord.py, its
tasks loop included)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, tzinfo
from typing import Any

import discord
import pytest

from adapters.discord import digest as digest_module
from adapters.discord.adapter import DiscordAdapter
from adapters.discord.digest import DiscordDigest
from engine.chat import texts
from engine.chat.config import WEEKDAYS
from engine.chat.service import ChatService
from engine.types import UserKey
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
    AdapterFactory,
    adapter,
    config,
    dm,
    expected_reply,
    fake,
    make_adapter,
    scripted_runner,
    slash,
    wait_for_call,
    wait_for_message,
)
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine, restarted_service
from tests.fakes.discord_api import JSON, FakeDiscord, user_payload

CAROL_ID = 503
CAROL = user_payload(CAROL_ID, "carol")
MIXED = "I lost my keys, but the party was great!"


def key(user_id: int) -> UserKey:
    return UserKey("discord", str(user_id))


def option(name: str, value: Any) -> list[JSON]:
    return [{"name": name, "type": 3, "value": value}]


async def command(fake: FakeDiscord, user: JSON, name: str, options: list[JSON]) -> str:  # noqa: F811
    interaction = slash(fake, user, name, options)
    await fake.dispatch("INTERACTION_CREATE", interaction)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, interaction["token"])
    return str(answer.json["content"])


async def test_the_new_commands_are_published_with_their_choices(
    adapter: DiscordAdapter,  # noqa: F811
    fake: FakeDiscord,  # noqa: F811
) -> None:
    published = {c["name"]: c for c in fake.commands[None]}
    view = next(o for o in published["mood"]["options"] if o["name"] == "view")
    assert [c["value"] for c in view["choices"]] == ["why", "week", "report"]
    state = published["digest"]["options"][0]
    assert [c["value"] for c in state["choices"]] == ["on", "off"]
    assert published["digest"]["description"] == texts.COMMANDS["digest"]


async def test_why_explains_the_latest_message_or_says_the_text_is_gone(
    adapter: DiscordAdapter,  # noqa: F811
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, MIXED))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply(MIXED))
    answer = await command(fake, ALICE, "mood", option("view", "why"))
    assert answer.startswith("🔎 Why “positive”? (p positive 0.90)")
    assert "“but the party was great!” pulled the score towards positive (0.90 → 0.10" in answer

    scripted_engine.service.recent.forget(key(ALICE_ID))  # as after 30 minutes, or a restart
    assert await command(fake, ALICE, "mood", option("view", "why")) == texts.why_no_text(30)


async def test_the_digest_is_taken_in_a_dm_only_and_mood_stays_ephemeral_in_a_channel(
    adapter: DiscordAdapter,  # noqa: F811
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "a great day"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("a great day"))
    asked = slash(fake, ALICE, "digest", option("state", "on"), guild_id=GUILD, channel_id=CHANNEL)
    await fake.dispatch("INTERACTION_CREATE", asked)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, asked["token"])
    assert answer.json["content"] == texts.DIGEST_PRIVATE_ONLY  # weekly, to all the channel
    assert await scripted_engine.store.digest_subscriptions("discord") == []
    mood = slash(fake, ALICE, "mood", guild_id=GUILD, channel_id=CHANNEL)  # ephemeral: hers only
    await fake.dispatch("INTERACTION_CREATE", mood)
    shown = await wait_for_call(fake, EDIT_ORIGINAL, mood["token"])
    assert shown.json["content"] == (await scripted_engine.service.mood(key(ALICE_ID), 7)).text
    assert "/digest off" in await command(fake, ALICE, "digest", option("state", "on"))  # in DM
    [taken] = await scripted_engine.store.digest_subscriptions("discord")
    assert taken.chat_id == str(DM_OF[ALICE_ID])


async def test_digest_off_removes_the_opt_in(
    adapter: DiscordAdapter,  # noqa: F811
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    store = scripted_engine.store
    await command(fake, ALICE, "digest", option("state", "on"))
    await command(fake, BOB, "digest", option("state", "on"))
    assert len(await store.digest_subscriptions("discord")) == 2

    assert await command(fake, ALICE, "digest", option("state", "off")) == texts.DIGEST_OFF
    [kept] = await store.digest_subscriptions("discord")
    assert kept.user == key(BOB_ID)  # only the caller's own opt-in goes
    assert await command(fake, ALICE, "digest", option("state", "off")) == texts.DIGEST_WAS_OFF


async def test_week_answers_with_the_models_text_and_a_chart(
    adapter: DiscordAdapter,  # noqa: F811
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "a great day"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("a great day"))
    scripted_engine.runner.reply_text = "A bright week. Keep it up."
    interaction = slash(fake, ALICE, "mood", option("view", "week"))
    await fake.dispatch("INTERACTION_CREATE", interaction)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, interaction["token"])
    assert answer.json["content"].startswith(
        "📅 Your week\n\nIn the last 7 days you sent 1 message (1 positive), 100% "
        "positive. A bright week.\n\n😄 1"
    )
    [chart] = answer.files
    assert chart.data.startswith(b"\x89PNG")


async def test_the_digest_loop_runs_at_the_local_time(
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
) -> None:
    chat = SYSTEM_LAYOUT.model_copy(update={"timezone": "Asia/Shanghai", "digest_time": "08:30"})
    service = ChatService(scripted_engine.worker, scripted_engine.store, chat)
    bot = DiscordAdapter(service, config(fake))
    await bot.start()
    try:
        assert bot.digest is not None
        loop = bot.digest.loop
        assert loop.is_running()
        assert loop.time is not None
        [at] = loop.time
        assert (at.hour, at.minute, str(at.tzinfo)) == (8, 30, "Asia/Shanghai")
        upcoming = await fake.wait_for(lambda: loop.next_iteration, what="the first wait")
        assert upcoming is not None
        assert upcoming > datetime.now(upcoming.tzinfo)
    finally:
        await bot.stop()
    assert not bot.digest.loop.is_running()


async def test_digest_opt_in_survives_a_restart_and_closed_dms_are_skipped(
    make_adapter: AdapterFactory,  # noqa: F811
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await make_adapter()
    DM_OF[CAROL_ID] = 8803
    try:
        for user in (ALICE, BOB, CAROL):
            await fake.dispatch("MESSAGE_CREATE", dm(fake, user, "a great day"))
            await wait_for_message(fake, DM_OF[int(user["id"])], expected_reply("a great day"))
            answer = await command(fake, user, "digest", option("state", "on"))
            assert "every Sunday at 20:00 (UTC)" in answer
    finally:
        del DM_OF[CAROL_ID]
    await first.stop()

    async with restarted_service(scripted_engine) as service:
        restarted = DiscordAdapter(service, config(fake))
        await restarted.start()
        try:
            assert restarted.digest is not None
            fake.closed_dms.add(BOB_ID)
            caplog.set_level(logging.INFO, logger="engine.chat.digest")
            run = await restarted.digest.send_now()
        finally:
            await restarted.stop()
    assert run.sent == [key(ALICE_ID), key(CAROL_ID)]
    assert run.unreachable == [key(BOB_ID)]
    assert run.failed == []
    delivered = {
        fake.dm_recipients[int(call.params["channel_id"])]: call
        for call in fake.calls_to(MESSAGES)
        if int(call.params["channel_id"]) in fake.dm_recipients
    }
    assert set(delivered) == {ALICE_ID, BOB_ID, CAROL_ID}
    assert delivered[BOB_ID].status == 403
    for user_id in (ALICE_ID, CAROL_ID):
        sent = delivered[user_id]
        assert sent.status == 200
        assert sent.json["content"].startswith("📬 Your weekly mood digest")
        assert [f.filename for f in sent.files] == ["mood.png"]
    gone = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.INFO]


@pytest.mark.parametrize("today", [True, False])
async def test_the_daily_loop_sends_only_on_the_digest_day(
    fake: FakeDiscord,  # noqa: F811
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
    today: bool,
) -> None:
    # The loop's clock is pinned: a real one could pass midnight between here and _on_time.
    now = datetime(2026, 3, 4, 23, 59, 59, 999999, tzinfo=UTC)  # a Wednesday, a blink to go

    class PinnedClock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> PinnedClock:
            return cls.fromtimestamp(now.timestamp(), tz)

    monkeypatch.setattr(digest_module, "datetime", PinnedClock)
    day = WEEKDAYS[2 if today else 5]
    chat = SYSTEM_LAYOUT.model_copy(update={"digest_day": day, "timezone": "UTC"})
    digest = DiscordDigest(ChatService(scripted_engine.worker, scripted_engine.store, chat),
                           discord.Client(intents=discord.Intents.none()))  # fmt: skip
    runs: list[str] = []

    async def send_now() -> None:
        runs.append(day)

    monkeypatch.setattr(digest, "send_now", send_now)
    await digest._on_time()
    assert runs == ([day] if today else [])

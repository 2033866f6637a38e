"""One timeline across platforms, in-process: the Telegram and the Discord adapter on one
scripted engine and one store, each against its fake. /link on Telegram, the code entered on
Discord; /mood on either shows both; /unlink separates; /forget on Telegram, once confirmed,
deletes both accounts' data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.discord.adapter import DiscordAdapter
from adapters.telegram.adapter import TelegramAdapter, TelegramConfig
from engine.chat import texts
from engine.types import UserKey
from tests.adapters import test_discord
from tests.adapters.test_discord import (
    ALICE,
    ALICE_ID,
    BOB,
    BOB_ID,
    DM_OF,
    EDIT_ORIGINAL,
    dm,
    expected_reply,
    slash,
    wait_for_call,
    wait_for_message,
)
from tests.adapters.test_telegram import wait_text
from tests.conftest import ScriptedEngine
from tests.fakes.discord_api import JSON, FakeDiscord
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI

TG_USER = 111
TG = UserKey("telegram", str(TG_USER))
DC = UserKey("discord", str(ALICE_ID))
CODE = re.compile(r"/link ([A-Z2-9]{8})")

fake = test_discord.fake  # the Discord fake; the Telegram one is made below


@pytest.fixture
async def both(
    scripted_engine: ScriptedEngine, fake: FakeDiscord
) -> AsyncIterator[tuple[FakeTelegramAPI, FakeDiscord]]:
    async with FakeTelegramAPI(DEFAULT_TOKEN) as api:
        config = TelegramConfig.model_construct(
            token=DEFAULT_TOKEN,
            api_base_url=api.base_url,
            api_file_url=api.file_url,
            edit_interval_s=0.05,
            group_edit_interval_s=0.05,
            poll_timeout_s=10.0,
        )
        telegram = TelegramAdapter(scripted_engine.service, config)
        discord = DiscordAdapter(scripted_engine.service, test_discord.config(fake))
        await telegram.start()
        await discord.start()
        try:
            yield api, fake
        finally:
            await discord.stop()
            await telegram.stop()


async def discord_command(fake: FakeDiscord, name: str, user: JSON = ALICE, **options: Any) -> str:
    # Option types: 5 a boolean, 3 a string.
    given = [{"name": k, "type": 5 if isinstance(v, bool) else 3, "value": v}
             for k, v in options.items()]  # fmt: skip
    interaction = slash(fake, user, name, given)
    await fake.dispatch("INTERACTION_CREATE", interaction)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, interaction["token"])
    return str(answer.json["content"])


async def telegram_command(api: FakeTelegramAPI, text: str, fragment: str) -> str:
    before = len(api.bot_texts(TG_USER))
    api.private_text(TG_USER, text)
    await api.wait_for(lambda: len(api.bot_texts(TG_USER)) > before, what=text)
    newest = api.bot_texts(TG_USER)[before]
    assert fragment in newest, newest
    return newest


async def test_link_on_telegram_enter_on_discord_one_history_unlink_forget_both(
    both: tuple[FakeTelegramAPI, FakeDiscord], scripted_engine: ScriptedEngine
) -> None:
    api, fake = both
    api.private_text(TG_USER, "I am so happy today")
    await wait_text(api, TG_USER, "reply to: I am so happy today")
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "everything went wrong"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("everything went wrong"))

    issued = await telegram_command(api, "/link", "/link ")
    match = CODE.search(issued)
    assert match is not None
    code = match.group(1)

    assert await discord_command(fake, "link", code="WRONG234") == texts.LINK_INVALID
    # Entering the code links nothing yet: it says what linking means and asks to confirm.
    asked = await discord_command(fake, "link", code=code)
    assert asked == texts.link_confirm_ask(f"telegram {TG_USER}", 10)
    assert await scripted_engine.store.linked_accounts(DC) == []
    assert (await scripted_engine.service.mood(DC, 7)).total == 1
    linked = await discord_command(fake, "link", confirm=True)
    assert linked == texts.linked_text([f"telegram {TG_USER}"])
    for user in (TG, DC):
        report = await scripted_engine.service.mood(user, 7)
        assert (report.positive, report.negative) == (1, 1)
    shown = await discord_command(fake, "mood")
    assert "正面 1" in shown
    assert "负面 1" in shown
    # The code was used: entering it again does nothing.
    assert await discord_command(fake, "link", code=code) == texts.LINK_EXPIRED

    assert await discord_command(fake, "unlink") == texts.UNLINK_DONE
    assert (await scripted_engine.service.mood(TG, 7)).total == 1
    assert (await scripted_engine.service.mood(DC, 7)).total == 1

    code = CODE.findall(await telegram_command(api, "/link", "/link "))[0]
    assert (await discord_command(fake, "link", code=code)).startswith("这个关联码属于")
    assert (await discord_command(fake, "link", code=code, confirm=True)).startswith("已关联")
    await telegram_command(api, "/forget", texts.FORGET_ASK_LINKED)
    prompt = api.bot_messages(TG_USER)[-1]
    yes = prompt["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    api.press_button(TG_USER, prompt, yes)
    await wait_text(api, TG_USER, "已删除")
    for user in (TG, DC):
        assert (await scripted_engine.service.mood(user, 7)).total == 0


async def test_a_code_entered_on_telegram_asks_first_then_links_on_link_confirm(
    both: tuple[FakeTelegramAPI, FakeDiscord], scripted_engine: ScriptedEngine
) -> None:
    api, fake = both
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "everything went wrong"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("everything went wrong"))
    code = CODE.findall(await discord_command(fake, "link"))[0]

    asked = await telegram_command(api, f"/link {code}", "/link confirm")
    assert asked == texts.link_confirm_ask(f"discord {ALICE_ID}", 10)
    assert await scripted_engine.store.linked_accounts(TG) == []
    assert (await scripted_engine.service.mood(TG, 7)).total == 0
    linked = await telegram_command(api, "/link confirm", "已关联")
    assert linked == texts.linked_text([f"discord {ALICE_ID}"])
    assert await scripted_engine.store.linked_accounts(TG) == [DC]
    assert (await scripted_engine.service.mood(TG, 7)).total == 1


async def test_a_code_from_the_same_platform_is_refused_on_both(
    both: tuple[FakeTelegramAPI, FakeDiscord], scripted_engine: ScriptedEngine
) -> None:
    api, fake = both
    # Bob's secret on Discord, and his code: Alice must not get his history by entering it.
    await fake.dispatch("MESSAGE_CREATE", dm(fake, BOB, "my private worry"))
    await wait_for_message(fake, DM_OF[BOB_ID], expected_reply("my private worry"))
    code = CODE.findall(await discord_command(fake, "link", user=BOB))[0]
    assert await discord_command(fake, "link", code=code) == texts.LINK_SAME_PLATFORM
    refused = await discord_command(fake, "link", code=code, confirm=True)
    assert refused == texts.LINK_NOTHING_TO_CONFIRM
    assert await scripted_engine.store.linked_accounts(DC) == []
    assert (await scripted_engine.service.mood(DC, 7)).total == 0

    other_tg = TG_USER + 1
    before = len(api.bot_texts(other_tg))
    api.private_text(other_tg, "/link")
    await api.wait_for(lambda: len(api.bot_texts(other_tg)) > before)
    code = CODE.findall(api.bot_texts(other_tg)[before])[0]
    assert await telegram_command(api, f"/link {code}", "") == texts.LINK_SAME_PLATFORM
    assert await scripted_engine.store.linked_accounts(TG) == []

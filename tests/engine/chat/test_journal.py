"""engine.chat.journal through engine.chat.commands: corrections, linked accounts and the export, on
the
scripted model and a real SQLite store."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from engine.chat import texts
from engine.chat.commands import Caller, Commands
from engine.chat.journal import (
    EPOCH,
    LINK_TTL,
    MAX_LINK_FAILURES,
    fix_data,
    hash_code,
    offered_corrections,
    parse_fix_data,
)
from engine.chat.service import ChatService
from engine.types import IncomingMessage, UserKey
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine

TG = UserKey("telegram", "42")
DC = UserKey("discord", "777")
IN_TG = Caller(TG, "42")
IN_DC = Caller(DC, "dm-1")
CODE = re.compile(r"/link ([A-Z2-9]{8})")


async def chat(
    engine: ScriptedEngine, caller: Caller, text: str, message_id: str | None = None
) -> None:
    user = caller.user
    incoming = IncomingMessage(user.platform, user.user_id, caller.chat_id, text, message_id)
    async for _ in engine.service.handle(incoming):
        pass


def code_of(text: str) -> str:
    match = CODE.search(text)
    assert match is not None, text
    return match.group(1)


def test_buttons_offer_the_other_side_and_neutral_and_fit_telegram() -> None:
    assert offered_corrections("positive") == ("negative", "neutral")
    assert offered_corrections("negative") == ("positive", "neutral")
    assert offered_corrections("neutral") == ("positive", "negative")
    discord_id = "1234567890123456789"
    for label, data in Commands.correction_buttons(discord_id, "positive"):
        assert len(data.encode()) <= 64
        assert parse_fix_data(data) is not None
        assert label
    assert parse_fix_data(fix_data("17", "neutral")) == ("17", "neutral")
    assert parse_fix_data("mood:fix:17:happy") is None
    assert parse_fix_data("forget:yes:17") is None


async def test_a_pressed_correction_is_counted_by_mood_once(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    await chat(scripted_engine, IN_TG, "I am so happy today", "501")
    before = await scripted_engine.service.mood(TG, 7)
    assert (before.positive, before.negative) == (1, 0)

    pressed = await commands.press_correction(IN_TG, fix_data("501", "negative"))
    assert pressed.text == texts.correction_done("positive", "negative")
    assert pressed.label_line == texts.corrected_line("positive", "negative")
    after = await scripted_engine.service.mood(TG, 7)
    assert (after.positive, after.negative) == (0, 1)
    assert "✎" in after.text  # the latest entries mark the correction

    again = await commands.press_correction(IN_TG, fix_data("501", "neutral"))
    assert again == type(again)(texts.CORRECTION_ALREADY)  # says why, changes nothing
    assert (await scripted_engine.service.mood(TG, 7)).negative == 1


async def test_someone_elses_press_is_refused_with_why(scripted_engine: ScriptedEngine) -> None:
    commands = Commands(scripted_engine.service)
    await chat(scripted_engine, Caller(TG, "group-1"), "what a great day", "9")
    intruder = Caller(UserKey("telegram", "43"), "group-1")
    refused = await commands.press_correction(intruder, fix_data("9", "negative"))
    assert refused.text == texts.CORRECTION_NOT_YOURS
    assert refused.label_line is None
    assert (await scripted_engine.service.mood(TG, 7)).positive == 1


async def test_wrong_corrects_the_latest_label(scripted_engine: ScriptedEngine) -> None:
    console = Caller(UserKey("console", "local"), "console")
    commands = Commands(scripted_engine.service)
    assert (await commands.run("wrong", console, "negative")).text == texts.CORRECTION_NOTHING
    await chat(scripted_engine, console, "I am so happy today")
    usage = await commands.run("wrong", console)
    assert usage.text == texts.wrong_usage("positive")
    assert (await commands.run("wrong", console, "positive")).text == texts.correction_same(
        "positive"
    )
    done = await commands.run("wrong", console, "中性")
    assert done.text == texts.correction_done("positive", "neutral")
    report = await scripted_engine.service.mood(console.user, 7)
    assert (report.positive, report.neutral) == (0, 1)
    assert (await commands.run("wrong", console, "negative")).text == texts.CORRECTION_ALREADY


async def test_link_shares_one_history_and_unlink_separates(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    await chat(scripted_engine, IN_TG, "I am so happy today", "1")
    await chat(scripted_engine, IN_DC, "everything went wrong", "2")
    issued = await commands.run("link", IN_TG)
    code = code_of(issued.text)
    assert code not in json.dumps(await scripted_engine.store.export_turns(TG), default=str)

    assert (await commands.run("link", IN_TG, code)).text == texts.LINK_OWN_CODE
    assert (await commands.run("link", IN_DC, "confirm")).text == texts.LINK_NOTHING_TO_CONFIRM
    ask = await commands.run("link", IN_DC, code.lower())  # case does not matter
    assert ask.text == texts.link_confirm_ask("telegram 42", 10)
    assert await scripted_engine.store.linked_accounts(DC) == []  # nothing yet
    assert (await scripted_engine.service.mood(DC, 7)).total == 1
    linked = await commands.run("link", IN_DC, "confirm")
    assert linked.text == texts.linked_text(["telegram 42"])
    for user in (TG, DC):
        report = await scripted_engine.service.mood(user, 7)
        assert (report.positive, report.negative) == (1, 1)
    # Single use.
    again = await commands.run("link", Caller(UserKey("console", "x"), "console"), code)
    assert again.text == texts.LINK_EXPIRED

    assert (await commands.run("unlink", IN_DC)).text == texts.UNLINK_DONE
    assert (await commands.run("unlink", IN_DC)).text == texts.UNLINK_NONE
    assert (await scripted_engine.service.mood(TG, 7)).total == 1


async def test_a_code_from_the_same_platform_is_refused(scripted_engine: ScriptedEngine) -> None:
    commands = Commands(scripted_engine.service)
    other = Caller(UserKey("telegram", "43"), "43")
    await chat(scripted_engine, other, "a private worry", "9")
    code = code_of((await commands.run("link", other)).text)
    assert (await commands.run("link", IN_TG, code)).text == texts.LINK_SAME_PLATFORM
    assert (await commands.run("link", IN_TG, f"{code} confirm")).text == (
        texts.LINK_NOTHING_TO_CONFIRM
    )
    assert await scripted_engine.store.linked_accounts(TG) == []
    assert (await scripted_engine.service.mood(TG, 7)).total == 0


async def test_link_is_refused_in_a_group(scripted_engine: ScriptedEngine) -> None:
    commands = Commands(scripted_engine.service)
    in_group = Caller(TG, "group-1", private=False)
    assert (await commands.run("link", in_group)).text == texts.LINK_PRIVATE_ONLY
    assert (await commands.run("link", in_group, "ABCD2345")).text == texts.LINK_PRIVATE_ONLY
    assert (await commands.run("link", in_group, "confirm")).text == texts.LINK_PRIVATE_ONLY
    assert await scripted_engine.store.linked_accounts(TG) == []


async def test_wrong_codes_are_bounded_and_codes_expire(
    scripted_engine: ScriptedEngine,
) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Clock:
            return cls.fromtimestamp(now.timestamp(), UTC)

    service = ChatService(scripted_engine.worker, scripted_engine.store, SYSTEM_LAYOUT, Clock)
    commands = Commands(service)
    code = code_of((await commands.run("link", IN_TG)).text)
    now += LINK_TTL + timedelta(seconds=1)
    assert (await commands.run("link", IN_DC, code)).text == texts.LINK_EXPIRED

    code = code_of((await commands.run("link", IN_TG)).text)
    for _ in range(MAX_LINK_FAILURES - 1):
        assert (await commands.run("link", IN_DC, "AAAAAAAA")).text == texts.LINK_INVALID
    assert (await commands.run("link", IN_DC, code)).text == texts.LINK_TOO_MANY
    now += LINK_TTL + timedelta(seconds=1)  # the window passes (and that code is stale)
    code = code_of((await commands.run("link", IN_TG)).text)
    # The code with `confirm` links only once its meaning was shown.
    assert (await commands.run("link", IN_DC, f"{code} confirm")).text == (
        texts.LINK_NOTHING_TO_CONFIRM
    )
    assert (await commands.run("link", IN_DC, code)).text.startswith("这个关联码属于")
    assert (await commands.run("link", IN_DC, f"{code} confirm")).text.startswith("已关联")


async def test_forget_on_either_asks_first_then_deletes_both(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    await chat(scripted_engine, IN_TG, "I am so happy today", "1")
    await chat(scripted_engine, IN_DC, "everything went wrong", "2")
    assert (await commands.run("forget", IN_DC)).text == texts.FORGET_ASK
    code = code_of((await commands.run("link", IN_TG)).text)
    await commands.run("link", IN_DC, code)
    await commands.run("link", IN_DC, "confirm")
    asked = await commands.run("forget", IN_DC)
    assert asked.text == texts.FORGET_ASK_LINKED
    assert asked.confirm is not None
    await commands.confirm("forget", IN_DC, accepted=False)
    assert (await scripted_engine.service.mood(TG, 7)).total == 2
    await commands.confirm("forget", IN_DC, accepted=True)
    for user in (TG, DC):
        assert (await scripted_engine.service.mood(user, 7)).total == 0


async def test_export_gives_csv_and_json_with_corrections_privately_only(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    await chat(scripted_engine, IN_TG, "I am so happy today", "1")
    await chat(scripted_engine, IN_TG, "everything went wrong", "2")
    await commands.press_correction(IN_TG, fix_data("2", "neutral"))

    group = await commands.run("export", Caller(TG, "group-1", private=False))
    assert group.text == texts.EXPORT_PRIVATE_ONLY
    assert group.files == ()

    result = await commands.run("export", IN_TG)
    assert result.text == texts.export_done(2, 1, 4)
    csv_file, json_file = result.files
    assert csv_file.name.endswith(".csv")
    assert json_file.name.endswith(".json")
    rows = list(csv.DictReader(io.StringIO(csv_file.data.decode("utf-8-sig"))))
    assert [(r["message_id"], r["shown"], r["corrected"], r["counted"]) for r in rows] == [
        ("1", "positive", "", "positive"),
        ("2", "negative", "neutral", "neutral"),
    ]
    document = json.loads(json_file.data)
    assert [e["corrected"] for e in document["mood_events"]] == [None, "neutral"]
    assert [t["role"] for t in document["turns"]] == ["user", "assistant"] * 2
    assert document["turns"][0]["content"] == "I am so happy today"


def test_codes_are_hashed_loosely() -> None:
    assert hash_code("abcd 2345") == hash_code("ABCD-2345")
    assert hash_code("ABCD2345") != hash_code("ABCD2346")
    assert "ABCD2345" not in hash_code("ABCD2345")


@pytest.mark.parametrize("name", ["wrong", "link", "unlink", "export"])
def test_new_commands_are_in_the_menu_and_help(name: str) -> None:
    assert name in dict(Commands.menu())
    assert f"/{name}" in texts.help_text()


async def test_forget_waits_for_a_linked_accounts_message_being_answered(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    code = code_of((await commands.run("link", IN_TG)).text)
    await commands.run("link", IN_DC, code)
    await commands.run("link", IN_DC, "confirm")
    scripted_engine.runner.delay_s = 0.05  # the Discord reply takes a while
    started = asyncio.Event()

    async def discord_message() -> None:
        incoming = IncomingMessage("discord", DC.user_id, "dm-1", "a long story", "77")
        async for _ in scripted_engine.service.handle(incoming):
            started.set()

    answering = asyncio.create_task(discord_message())
    await started.wait()
    await commands.confirm("forget", IN_TG, accepted=True)
    await answering
    # Stored before the deletion, not after it: nothing of the linked account is left.
    assert await scripted_engine.store.mood_events(DC, EPOCH) == []
    assert await scripted_engine.store.export_turns(DC) == []

"""engine.chat.commands: every command once, platform-neutral, including its failures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from engine.chat import texts
from engine.chat.commands import COMMANDS, Caller, Commands, parse_days
from engine.chat.service import ChatService
from engine.errors import StorageError
from engine.types import IncomingMessage, UserKey
from tests.conftest import ScriptedEngine

ALICE = UserKey("test", "alice")
HERE = Caller(ALICE, "chat-1")


async def chat(engine: ScriptedEngine, text: str, user: UserKey = ALICE) -> None:
    message = IncomingMessage(user.platform, user.user_id, "chat-1", text)
    async for _ in engine.service.handle(message):
        pass


def test_the_menu_lists_every_command_with_its_description() -> None:
    assert Commands.menu() == [(c.name, texts.COMMANDS[c.name]) for c in COMMANDS]
    assert [name for name, _ in Commands.menu()] == [
        "start", "help", "mood", "reset", "forget", "digest", "checkin", "wrong", "link",
        "unlink", "export",
    ]  # fmt: skip
    for name, _ in Commands.menu():
        assert f"/{name}" in texts.help_text()


async def test_start_and_help_are_texts(scripted_engine: ScriptedEngine) -> None:
    commands = Commands(scripted_engine.service)
    assert (await commands.run("start", HERE)).text == texts.start_text(12)
    assert (await commands.run("HELP", HERE)).text == texts.help_text()


async def test_unknown_commands_say_so(scripted_engine: ScriptedEngine) -> None:
    result = await Commands(scripted_engine.service).run("dance", HERE, "now")
    assert result.text == texts.UNKNOWN_COMMAND
    assert result.chart_png is None
    assert result.confirm is None


async def test_personal_data_is_never_answered_into_a_group(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    await chat(scripted_engine, "I am so happy today")
    group = Caller(ALICE, "group-1", private=False, own_chat=False)
    for args in ("", "30", "why", "week"):
        refused = await commands.run("mood", group, args)
        assert (refused.text, refused.chart_png) == (texts.MOOD_PRIVATE_ONLY, None), args
    # An answer only the caller sees (Discord's ephemeral one) may be given in a channel...
    ephemeral = Caller(ALICE, "channel-1", private=True, own_chat=False)
    assert (await commands.run("mood", ephemeral)).text == (
        await scripted_engine.service.mood(ALICE, 7)
    ).text
    # ...but the digest would go to the channel every week: only a chat of one's own takes it.
    for caller in (group, ephemeral):
        assert (await commands.run("digest", caller, "on")).text == texts.DIGEST_PRIVATE_ONLY
    assert await scripted_engine.store.digest_subscriptions(ALICE.platform) == []
    assert (await commands.run("digest", group, "off")).text == texts.DIGEST_WAS_OFF
    assert "/digest off" in (await commands.run("digest", HERE, "on")).text
    assert len(await scripted_engine.store.digest_subscriptions(ALICE.platform)) == 1


async def test_mood_reports_text_and_a_chart_only_when_asked_and_not_empty(
    scripted_engine: ScriptedEngine,
) -> None:
    commands = Commands(scripted_engine.service)
    empty = await commands.run("mood", HERE)
    assert empty.chart_png is None  # nothing to draw
    await chat(scripted_engine, "I am so happy today")
    report = await scripted_engine.service.mood(ALICE, 7)
    with_chart = await commands.run("mood", HERE)
    assert with_chart.text == report.text
    assert with_chart.chart_png is not None
    assert with_chart.chart_png.startswith(b"\x89PNG")
    assert (await commands.run("mood", HERE, charts=False)).chart_png is None
    month = await commands.run("mood", HERE, " 30 ", charts=False)
    assert month.text == (await scripted_engine.service.mood(ALICE, 30)).text


@pytest.mark.parametrize("junk", ["abc", "0", "366", "7 days"])
async def test_mood_with_a_bad_number_of_days_explains(
    scripted_engine: ScriptedEngine, junk: str
) -> None:
    result = await Commands(scripted_engine.service).run("mood", HERE, junk)
    assert result.text == texts.bad_days(junk)
    assert result.chart_png is None


async def test_reset_clears_this_chat_only(scripted_engine: ScriptedEngine) -> None:
    await chat(scripted_engine, "hello there")
    result = await Commands(scripted_engine.service).run("reset", HERE)
    assert result.text == texts.RESET_DONE
    assert await scripted_engine.store.recent_turns(ALICE, "chat-1", 10) == []
    assert len((await scripted_engine.service.mood(ALICE, 7)).latest) == 1  # mood kept


async def test_forget_asks_first_and_acts_only_on_yes(scripted_engine: ScriptedEngine) -> None:
    commands = Commands(scripted_engine.service)
    await chat(scripted_engine, "hello there")
    asked = await commands.run("forget", HERE)
    assert asked.text == texts.FORGET_ASK
    assert asked.confirm is not None
    assert asked.confirm.action == "forget"
    assert commands.asks_first("forget")
    assert not commands.asks_first("mood")
    assert (await scripted_engine.service.mood(ALICE, 7)).total == 1  # asking deletes nothing

    cancelled = await commands.confirm("forget", HERE, accepted=False)
    assert cancelled.text == texts.FORGET_CANCELLED
    assert (await scripted_engine.service.mood(ALICE, 7)).total == 1

    done = await commands.confirm("forget", HERE, accepted=True)
    assert done.text == texts.forget_done(4)  # user, mood event, two turns
    assert (await scripted_engine.service.mood(ALICE, 7)).total == 0
    with pytest.raises(ValueError, match="mood"):
        await commands.confirm("mood", HERE, accepted=True)


class LockedStore:
    """The real store, except that every read and write says the database is locked."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        async def locked(*args: object, **kwargs: object) -> None:
            raise StorageError("the database is locked by another process")

        return locked

    @contextlib.asynccontextmanager
    async def user_turn(self, user: object) -> AsyncIterator[None]:
        raise StorageError("the database is locked by another process")
        yield


@pytest.mark.parametrize("name", ["mood", "reset"])
async def test_a_locked_database_gets_the_storage_text(
    scripted_engine: ScriptedEngine, name: str
) -> None:
    service = ChatService(scripted_engine.worker, LockedStore(scripted_engine.store))  # type: ignore[arg-type]
    result = await Commands(service).run(name, HERE)
    assert result.text == texts.STORAGE_ERROR


async def test_forget_on_a_locked_database_says_so(scripted_engine: ScriptedEngine) -> None:
    service = ChatService(scripted_engine.worker, LockedStore(scripted_engine.store))  # type: ignore[arg-type]
    result = await Commands(service).confirm("forget", HERE, accepted=True)
    assert result.text == texts.STORAGE_ERROR


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 7),
        ("", 7),
        ("   ", 7),
        ("30", 30),
        (" 14 ", 14),
        ("1", 1),
        ("365", 365),
        ("３０", 30),
    ],
)
def test_parse_days_accepts(raw: str | None, expected: int) -> None:
    assert parse_days(raw) == expected


def test_parse_days_default_is_configurable() -> None:
    assert parse_days(None, default=30) == 30
    assert parse_days("", default=1) == 1


@pytest.mark.parametrize("raw", ["0", "366", "-3", "abc", "3.5", "7 days", "1e3", "+"])
def test_parse_days_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=r"1.*365") as caught:
        parse_days(raw)
    assert repr(raw) in str(caught.value)
    assert "1" in str(caught.value)
    assert "365" in str(caught.value)

"""engine.chat.checkin: /checkin and the daily job's body, on a settable clock (no waiting for
real minutes), the scripted model and a real SQLite store. Time zones and dates are pinned."""

from __future__ import annotations

import itertools
import json
import logging
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import pytest

from engine.chat import checkin, texts
from engine.chat.commands import Caller, Commands
from engine.chat.scheduled import RecipientGone
from engine.chat.service import ChatService
from engine.types import CheckinSubscription, IncomingMessage, Turn, UserKey
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine

SHANGHAI = "Asia/Shanghai"  # UTC+8 all year: 21:00 there is 13:00 UTC
ALICE = UserKey("telegram", "42")
BOB = UserKey("telegram", "43")
DM = Caller(ALICE, "42")
# Fri 2024-11-22, 12:00 UTC = 20:00 in Shanghai: an hour before Alice's check-in.
NOON = datetime(2024, 11, 22, 12, 0, tzinfo=UTC)
DAY = date(2024, 11, 22)


class Clock(datetime):
    """A settable clock for ChatService (its `now(UTC)`)."""

    at = NOON

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Clock:
        return cls.at  # type: ignore[return-value]


@pytest.fixture
def service(scripted_engine: ScriptedEngine) -> ChatService:
    Clock.at = NOON
    chat = SYSTEM_LAYOUT.model_copy(update={"timezone": SHANGHAI})
    return ChatService(scripted_engine.worker, scripted_engine.store, chat, clock=Clock)


async def say(service: ChatService, text: str, user: UserKey = ALICE) -> None:
    message = IncomingMessage(user.platform, user.user_id, user.user_id, text, private=True)
    async for _ in service.handle(message):
        pass


class Inbox:
    """The adapter's `send`: what it was handed, and users who blocked the bot."""

    def __init__(self) -> None:
        self.sent: list[tuple[UserKey, str, str]] = []
        self.blocked: set[UserKey] = set()

    async def __call__(self, subscription: CheckinSubscription, question: str) -> None:
        if subscription.user in self.blocked:
            raise RecipientGone("Forbidden: bot was blocked by the user")
        self.sent.append((subscription.user, subscription.chat_id, question))


async def run_at(service: ChatService, inbox: Inbox, at: datetime) -> checkin.ScheduledRun:
    Clock.at = at
    return await checkin.send_checkins(service, "telegram", inbox)


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "at"), [("21:00", time(21)), ("9:05", time(9, 5)),
                                         ("07：30", time(7, 30)), ("0:00", time(0))])  # fmt: skip
def test_times_of_day(raw: str, at: time) -> None:
    assert checkin.parse_time(raw) == at


@pytest.mark.parametrize("raw", ["24:00", "21", "21:60", "9pm", "21:00:00", "-1:00", ""])
def test_bad_times_say_how_to_write_one(raw: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM") as error:
        checkin.parse_time(raw)
    assert str(error.value) == texts.checkin_bad_time(raw)


def test_zones_are_iana_names_in_any_case() -> None:
    assert checkin.parse_zone("Europe/Berlin") == "Europe/Berlin"
    assert checkin.parse_zone("asia/SHANGHAI") == "Asia/Shanghai"
    for bad in ("Mars/Olympus", "UTC+8", "../../etc/passwd", "/etc/localtime", "x" * 300):
        with pytest.raises(ValueError, match="IANA"):
            checkin.parse_zone(bad)


# --- /checkin -----------------------------------------------------------------------------


async def test_on_status_and_off(service: ChatService) -> None:
    commands = Commands(service)
    assert (await commands.run("checkin", DM)).text == texts.CHECKIN_USAGE
    answer = (await commands.run("checkin", DM, "21:00")).text  # TIMEZONE by default
    assert answer == texts.checkin_on(time(21), SHANGHAI, starts_today=True)
    assert "from today, every day at 21:00 (Asia/Shanghai)" in answer
    [stored] = await service.store.checkins(ALICE)
    assert (stored.chat_id, stored.at, stored.timezone) == ("42", time(21), SHANGHAI)
    status = (await commands.run("checkin", DM)).text
    assert status == texts.checkin_status(time(21), SHANGHAI)

    # 19:00 in Shanghai has passed at 20:00 there: the first question comes tomorrow.
    answer = (await commands.run("checkin", DM, "19:00 europe/berlin")).text
    assert answer == texts.checkin_on(time(19), "Europe/Berlin", starts_today=True)  # 13:00 there
    answer = (await commands.run("checkin", DM, "19:00")).text
    assert answer == texts.checkin_on(time(19), SHANGHAI, starts_today=False)
    assert "from tomorrow" in answer

    assert (await commands.run("checkin", DM, "OFF")).text == texts.CHECKIN_OFF
    assert (await commands.run("checkin", DM, "off")).text == texts.CHECKIN_WAS_OFF
    assert await service.store.checkins(ALICE) == []


async def test_moving_a_checkin_asked_today_to_later_today_starts_tomorrow(
    service: ChatService,
) -> None:
    commands = Commands(service)
    await commands.run("checkin", DM, "20:30")
    nine = datetime(2024, 11, 22, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai
    inbox = Inbox()
    assert (await run_at(service, inbox, nine - timedelta(minutes=30))).sent == [ALICE]
    answer = (await commands.run("checkin", DM, "22:00")).text
    assert answer == texts.checkin_on(time(22), SHANGHAI, starts_today=False)
    assert (await run_at(service, inbox, nine + timedelta(hours=1))).sent == []  # 22:00
    assert (await run_at(service, inbox, nine + timedelta(days=1, hours=1))).sent == [ALICE]


async def test_bad_input_changes_nothing(service: ChatService) -> None:
    commands = Commands(service)
    await commands.run("checkin", DM, "21:00")
    assert (await commands.run("checkin", DM, "25:00")).text == texts.checkin_bad_time("25:00")
    answer = (await commands.run("checkin", DM, "22:00 Moon/Base")).text
    assert answer == texts.checkin_bad_zone("Moon/Base")
    assert (await commands.run("checkin", DM, "22:00 UTC extra")).text == texts.CHECKIN_USAGE
    assert (await commands.run("checkin", DM, "off now")).text == texts.CHECKIN_USAGE
    [kept] = await service.store.checkins(ALICE)
    assert (kept.at, kept.timezone) == (time(21), SHANGHAI)


async def test_a_group_gets_a_pointer_to_the_private_chat(service: ChatService) -> None:
    commands = Commands(service)
    group = Caller(ALICE, "-100", private=False, own_chat=False)
    assert (await commands.run("checkin", group, "21:00")).text == texts.CHECKIN_PRIVATE_ONLY
    assert (await commands.run("checkin", group)).text == texts.CHECKIN_PRIVATE_ONLY
    assert await service.store.checkins(ALICE) == []
    # A Discord channel: the answer is the caller's alone, but the chat is not theirs.
    channel = Caller(ALICE, "555", private=True, own_chat=False)
    assert (await commands.run("checkin", channel, "21:00")).text == texts.CHECKIN_PRIVATE_ONLY
    assert await service.store.checkins(ALICE) == []


# --- the job ------------------------------------------------------------------------------


async def test_asked_once_at_the_local_time_and_the_answer_is_an_ordinary_message(
    service: ChatService, scripted_engine: ScriptedEngine
) -> None:
    await say(service, "I love this song")  # English; at 20:00 local, before the opt-in
    Clock.at = NOON - timedelta(days=1)  # so that "today" is a new day below
    await Commands(service).run("checkin", DM, "21:00")
    inbox = Inbox()
    nine = datetime(2024, 11, 23, 13, 0, tzinfo=UTC)  # Sat 21:00 in Shanghai
    assert (await run_at(service, inbox, nine - timedelta(minutes=1))).sent == []
    run = await run_at(service, inbox, nine)
    assert run.sent == [ALICE]
    [(user, chat, question)] = inbox.sent
    assert (user, chat) == (ALICE, "42")
    assert question == checkin.question("en", date(2024, 11, 23), ALICE)
    assert question in texts.CHECKIN_QUESTIONS["en"]
    assert (await run_at(service, inbox, nine + timedelta(minutes=1))).sent == []  # once a day
    assert len(inbox.sent) == 1

    # Kept as the assistant's turn: the answer is read with it, labelled and counted.
    assert (await service.store.recent_turns(ALICE, "42", 10))[-1] == Turn("assistant", question)
    Clock.at = nine + timedelta(minutes=5)
    await say(service, "a good day, thanks")
    request = scripted_engine.runner.reply_calls[-1]
    assert Turn("assistant", question) in request.history
    report = await service.mood(ALICE, 1)
    assert report.positive == 1  # the answer, on Saturday local time


async def test_a_day_the_user_already_wrote_is_passed_over_in_their_time_zone(
    service: ChatService,
) -> None:
    await Commands(service).run("checkin", DM, "21:00")
    # 17:30 UTC on Friday is 01:30 on Saturday in Shanghai: Saturday's message.
    Clock.at = datetime(2024, 11, 22, 17, 30, tzinfo=UTC)
    await say(service, "couldn't sleep")
    inbox = Inbox()
    saturday_nine = datetime(2024, 11, 23, 13, 0, tzinfo=UTC)
    run = await run_at(service, inbox, saturday_nine)
    assert (run.sent, run.skipped, inbox.sent) == ([], [ALICE], [])
    assert (await run_at(service, inbox, saturday_nine + timedelta(minutes=1))).skipped == []
    # Sunday, nothing written: asked, with no word about Saturday.
    run = await run_at(service, inbox, saturday_nine + timedelta(days=1))
    assert run.sent == [ALICE]
    assert inbox.sent[0][2] in texts.CHECKIN_QUESTIONS["en"]


async def test_the_wording_differs_on_consecutive_days(service: ChatService) -> None:
    await Commands(service).run("checkin", DM, "21:00")
    inbox = Inbox()
    first_nine = datetime(2024, 11, 22, 13, 0, tzinfo=UTC)
    for day in range(8):
        await run_at(service, inbox, first_nine + timedelta(days=day))
    questions = [question for _, _, question in inbox.sent]
    assert len(questions) == 8
    assert all(a != b for a, b in itertools.pairwise(questions))
    assert set(questions) == set(texts.CHECKIN_QUESTIONS["zh"])  # no words yet: Chinese
    for language in ("zh", "en"):
        days = [DAY + timedelta(days=n) for n in range(30)]
        asked = [checkin.question(language, day, BOB) for day in days]
        assert all(a != b for a, b in itertools.pairwise(asked))


async def test_off_stops_it_and_a_late_start_does_not_ask(service: ChatService) -> None:
    commands = Commands(service)
    await commands.run("checkin", DM, "21:00")
    inbox = Inbox()
    nine = datetime(2024, 11, 22, 13, 0, tzinfo=UTC)
    # The bot was down from before nine until after LATE_WINDOW: that day is left out.
    assert (await run_at(service, inbox, nine + checkin.LATE_WINDOW)).sent == []
    assert (await run_at(service, inbox, nine + checkin.LATE_WINDOW / 2)).sent == [ALICE]
    await commands.run("checkin", DM, "off")
    assert (await run_at(service, inbox, nine + timedelta(days=1))).sent == []
    assert len(inbox.sent) == 1


async def test_a_blocked_user_is_skipped_and_logged(
    service: ChatService, caplog: pytest.LogCaptureFixture
) -> None:
    await Commands(service).run("checkin", DM, "21:00")
    await Commands(service).run("checkin", Caller(BOB, "43"), "21:00")
    inbox = Inbox()
    inbox.blocked.add(ALICE)
    caplog.set_level(logging.INFO, logger="engine.chat.checkin")
    run = await run_at(service, inbox, datetime(2024, 11, 22, 13, 0, tzinfo=UTC))
    assert (run.unreachable, run.sent, run.failed) == ([ALICE], [BOB], [])
    assert [user for user, _, _ in inbox.sent] == [BOB]
    assert await service.store.recent_turns(ALICE, "42", 10) == []  # nothing was asked
    gone = [r for r in caplog.records if "user 42 cannot be reached" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.INFO]
    assert "telegram check-in: 1 sent, 1 unreachable" in caplog.text


async def test_export_shows_the_checkin(service: ChatService) -> None:
    commands = Commands(service)
    await commands.run("checkin", DM, "21:00 Europe/Berlin")
    result = await commands.run("export", DM)
    document = json.loads(next(f for f in result.files if f.name.endswith(".json")).data)
    assert document["checkins"] == [
        {"platform": "telegram", "user_id": "42", "chat_id": "42", "time": "21:00",
         "timezone": "Europe/Berlin", "since": NOON.isoformat(), "last_day": "2024-11-21"}
    ]  # fmt: skip


async def test_start_and_help_offer_it(service: ChatService) -> None:
    commands = Commands(service)
    assert "/checkin 21:00" in (await commands.run("start", DM)).text
    assert f"/checkin — {texts.COMMANDS['checkin']}" in (await commands.run("help", DM)).text

"""The daily check-in (/checkin HH:MM [zone], /checkin off): once a day, at the time the user
chose in their own time zone, the bot asks in the private chat how the day went.

The opt-in is a row in the store (so it survives restarts): the chat, the local time and the
IANA zone (TIMEZONE when none is given). Each platform's own scheduler runs `send_checkins`
every minute (adapters/telegram/checkin.py: PTB's JobQueue; adapters/discord/checkin.py:
discord.ext.tasks); it reads the clock from the chat service, which tests set. A user is due
once their local time has reached the chosen one (up to LATE_WINDOW later: a bot that was down
at nine does not ask at midnight) and that local day is not yet claimed. The day is claimed in
the store first, so of several bot processes exactly one asks; then a day on which the user
already wrote (a mood event since their local midnight, on any linked account) is passed
over, without a word: there is no streak to keep and nothing to make up. Otherwise the
question goes out, in the language of the user's latest words, picked from a few short
templates by the day (consecutive days never repeat one), and is stored as the assistant's
turn, so that the answer, an ordinary message (labelled, stored, counted by /mood), is read
with it. A user the platform will not deliver to is skipped and logged (engine/chat/scheduled.py,
as for the weekly digest).
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from engine.chat import texts
from engine.chat.scheduled import Outcome, ScheduledRun, deliver
from engine.chat.service import ChatService
from engine.errors import StorageError
from engine.language import Language, detect_language
from engine.types import CheckinSubscription, Turn, UserKey

log = logging.getLogger(__name__)

# How late a check-in may still go out (the bot was down at its time, or busy).
LATE_WINDOW = timedelta(hours=2)
# Turns read back for the user's language: the latest ones may be unanswered check-ins.
LANGUAGE_TURNS = 6
_CLOCK = re.compile(r"^([01]?\d|2[0-3])[:：]([0-5]\d)$")  # 21:00, 9:30, 21：00

CheckinSend = Callable[[CheckinSubscription, str], Awaitable[None]]


def parse_time(raw: str) -> time:
    """`HH:MM` (24-hour); ValueError with the user-facing message."""
    match = _CLOCK.match(raw.strip())
    if match is None:
        raise ValueError(texts.checkin_bad_time(raw))
    return time(int(match.group(1)), int(match.group(2)))


def parse_zone(raw: str) -> str:
    """An IANA time zone name, its case corrected (asia/shanghai → Asia/Shanghai); ValueError
    with the user-facing message."""
    name = raw.strip()
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    known = {zone.lower(): zone for zone in available_timezones()}
    if name.lower() in known:
        return known[name.lower()]
    raise ValueError(texts.checkin_bad_zone(raw))


def last_occurrence(at: time, zone: ZoneInfo, now: datetime) -> datetime:
    """The latest moment at or before `now` when the clock in `zone` read `at`: today's,
    or yesterday's when today's is still to come (compared on the wall clock, so a time
    that a DST change skips counts as passed once the clock is beyond it)."""
    local = now.astimezone(zone)
    today = datetime.combine(local.date(), at, tzinfo=zone)
    if today <= local:
        return today
    return datetime.combine(local.date() - timedelta(days=1), at, tzinfo=zone)


def due_day(subscription: CheckinSubscription, now: datetime) -> date | None:
    """The local day whose check-in is due at `now`, or None."""
    try:
        zone = ZoneInfo(subscription.timezone)
    except (ZoneInfoNotFoundError, ValueError):  # the zone left the system's tz database
        log.warning("check-in of user %s: unknown time zone %r: skipped",
                    subscription.user.user_id, subscription.timezone)  # fmt: skip
        return None
    occurrence = last_occurrence(subscription.at, zone, now)
    if now - occurrence >= LATE_WINDOW:
        return None
    day = occurrence.date()
    if subscription.last_day is not None and subscription.last_day >= day:
        return None
    return day


def question(language: Language, day: date, user: UserKey) -> str:
    """The day's question: the templates in turn, from a place of the user's own (so not
    everyone gets the same one), so consecutive days never ask the same way."""
    options = texts.CHECKIN_QUESTIONS[language]
    offset = zlib.crc32(f"{user.platform}:{user.user_id}".encode())
    return options[(day.toordinal() + offset) % len(options)]


async def user_language(service: ChatService, user: UserKey, chat_id: str) -> Language:
    """The language of the user's latest words this bot still has, else of its own latest
    turn there (an unanswered check-in was asked in theirs), Chinese when none."""
    latest = service.recent.latest(user, service.now())
    if latest is not None:
        return detect_language(latest.text)
    turns = await service.store.recent_turns(user, chat_id, LANGUAGE_TURNS)
    said = [turn.content for turn in turns if turn.role == "user"] or [t.content for t in turns]
    return detect_language(said[-1]) if said else "zh"


async def wrote_on(service: ChatService, subscription: CheckinSubscription, day: date) -> bool:
    """Whether the user sent a message (a mood event) since the local midnight of `day`."""
    midnight = datetime.combine(day, time(), tzinfo=ZoneInfo(subscription.timezone))
    return bool(await service.store.mood_events(subscription.user, midnight))


# --- /checkin -----------------------------------------------------------------------------


async def command(
    service: ChatService, user: UserKey, chat_id: str, args: str, *, private: bool, own_chat: bool
) -> str:
    """/checkin (what is set), /checkin HH:MM [zone], /checkin off."""
    words = args.split()
    if not words:
        if not private:  # the time says when the user is around
            return texts.CHECKIN_PRIVATE_ONLY
        mine = [c for c in await service.store.checkins(user) if c.user == user]
        return texts.checkin_status(mine[0].at, mine[0].timezone) if mine else texts.CHECKIN_USAGE
    if words[0].lower() == "off":
        if len(words) > 1:
            return texts.CHECKIN_USAGE
        stopped = await service.store.stop_checkin(user)
        return texts.CHECKIN_OFF if stopped else texts.CHECKIN_WAS_OFF
    if not own_chat:  # asked every day, into this chat, for all to read
        return texts.CHECKIN_PRIVATE_ONLY
    if len(words) > 2:
        return texts.CHECKIN_USAGE
    try:
        at = parse_time(words[0])
        zone = parse_zone(words[1]) if len(words) == 2 else service.config.timezone
    except ValueError as error:
        return str(error)
    now = service.now()
    passed = last_occurrence(at, ZoneInfo(zone), now).date()
    await service.store.set_checkin(user, chat_id, at, zone, now, passed)
    # Today is out when its time has passed, or today's question was asked (at the old time).
    claimed = [c.last_day for c in await service.store.checkins(user) if c.user == user]
    today = now.astimezone(ZoneInfo(zone)).date()
    return texts.checkin_on(at, zone, starts_today=(claimed[0] or passed) < today)


# --- the job ------------------------------------------------------------------------------


async def send_checkins(service: ChatService, platform: str, send: CheckinSend) -> ScheduledRun:
    """Ask everyone on `platform` whose check-in is due now (the job's body, every minute).
    One user's failure never stops the others; the store's claim makes one process of
    several ask each day."""
    now = service.now()
    try:
        subscriptions = await service.store.checkin_subscriptions(platform)
    except StorageError as error:
        log.error("%s check-in: could not read the opt-ins: %s", platform, error)
        return ScheduledRun()
    due = [(s, day) for s in subscriptions if (day := due_day(s, now)) is not None]

    async def send_one(item: tuple[CheckinSubscription, date]) -> Outcome:
        subscription, day = item
        user = subscription.user
        if not await service.store.claim_checkin(user, day):
            return "already_sent"
        if await wrote_on(service, subscription, day):
            return "skipped"
        language = await user_language(service, user, subscription.chat_id)
        text = question(language, day, user)
        await send(subscription, text)
        config = service.config
        try:
            await service.store.add_turns(user, subscription.chat_id, [Turn("assistant", text)],
                                          service.now(), config.kept_turns,
                                          config.history_step)  # fmt: skip
        except StorageError as error:
            # Asked all the same; only the answer's context lacks the question.
            log.warning("%s check-in: could not store the question: %s", platform, error)
        return "sent"

    return await deliver(platform, "check-in", due, lambda item: item[0].user, send_one, log,
                         log_empty=False)  # fmt: skip

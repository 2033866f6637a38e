"""/mood why, /mood week and the weekly digest (issue #16): the logic, written once for every
adapter. engine/chat/commands.py parses the commands and wraps these answers; the texts are in
engine/chat/texts.py, the summary's prompt in engine/chat/prompts.py.

Why. The explanation comes from the labelling model itself, never from a second model: the
message is split into clauses (punctuation and a few contrast words, Chinese and English),
and the whole message and the message with each clause left out are labelled together, in
one batched label pass (ModelFacade.tag_many). The clause whose removal moves p_positive the
most is the part that moved the score. That needs the text, and the bot stores none unless
STORE_MESSAGE_TEXT=true: so the service keeps each user's latest message in memory only
(engine/chat/recent.py: bounded, dropped after 30 minutes), and with stored text the latest mood
event's excerpt is explained once the memory has gone. Otherwise the answer says why it
cannot explain.

Week. The summary's first sentence is ours: the week's counts, share, trend and best and
hardest day, filled into a template (texts.week_opening). The sentence after it is the
model's: it is told the mood's direction and change in words, and the stored excerpts when
there are any, never a number or a day (texts.week_mood, prompts.WEEK_SYSTEM), and its reply
is cut after one sentence. benchmarks.quality.week measured why: given the numbers, the 0.5B model
attached them to the wrong things and told hard weeks they were happy. If the model fails,
a templated sentence stands in and says so. The chart is /mood's, for those 7 days. The
summary is in the user's language, read from their latest message (in memory, a stored
excerpt, or the chat's conversation memory), Chinese when none is known.

Digest. `send_digests` is the weekly job's body, which each platform's own scheduler runs
(adapters/telegram/digest.py: PTB's JobQueue; adapters/discord/digest.py: discord.ext.tasks):
for every opt-in of that platform it claims this week's send in the store (so of several bot
processes exactly one sends it; a failed send is not retried that week), builds the week's
summary and hands it to the adapter's `send`. A user the bot can no longer reach (blocked it,
closed their DMs: the adapter raises RecipientGone) is skipped and logged at INFO.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from engine.chat import texts
from engine.chat.prompts import WEEK_SENTENCES, week_request
from engine.errors import ModelBusy, ModelStopped, ModelTimeout, StorageError
from engine.language import Language, detect_language
from engine.types import DayPoint, DigestSubscription, MoodReport, Sentiment, UserKey

if TYPE_CHECKING:
    from engine.chat.service import ChatService

log = logging.getLogger(__name__)

MAX_CLAUSES = 12  # so one label pass holds at most 13 texts
MIN_SHIFT = 0.05  # a clause that moves p_positive by less is not named
SHOWN = 2  # at most this many clauses are named
WHY_LOOKBACK = timedelta(days=30)  # how far back /mood why looks for the latest stored event
WEEK_DAYS = 7
WEEK_EXCERPTS = 3
# Of several bot processes running the same weekly job, the first claims the week's send; any
# span well under a week tells "sent this time" from "sent last week".
DIGEST_RESEND_AFTER = timedelta(hours=12)


# --- why: clauses, and what leaving each out does ------------------------------------------------

# A clause ends after sentence or clause punctuation (kept with it); a new one starts before
# a contrast word: "it rained but the concert was great" is two parts.
_CLAUSE_END = re.compile(r"[。！？!?；;，,、…\n]+|\.+(?=\s|$)")
_CONTRAST = re.compile(r"(?<=\S)\s+(?=(?:but|although|though|however|yet)\b)|(?=但是|可是|不过)",
                       re.IGNORECASE)  # fmt: skip


def split_clauses(text: str) -> list[tuple[int, int]]:
    """The (start, end) spans of the clauses of `text`, in order, each with its closing
    punctuation and without surrounding blanks; a piece with no letter or digit (an emoji,
    "!!") stays with the clause before it."""
    cuts = {0, len(text)}
    cuts.update(match.end() for match in _CLAUSE_END.finditer(text))
    cuts.update(match.end() for match in _CONTRAST.finditer(text))
    spans: list[tuple[int, int]] = []
    lead: int | None = None  # where punctuation before the first clause began
    for start, end in itertools.pairwise(sorted(cuts)):
        piece = text[start:end]
        stripped = piece.strip()
        if not stripped:
            continue
        start += len(piece) - len(piece.lstrip())
        end = start + len(stripped)
        if not any(ch.isalnum() for ch in stripped):
            if spans:
                spans[-1] = (spans[-1][0], end)
            elif lead is None:
                lead = start
            continue
        spans.append((start if lead is None else lead, end))
        lead = None
    return spans


def leave_out(text: str, span: tuple[int, int]) -> str:
    """`text` without the clause at `span` (a blank joins English words back together)."""
    start, end = span
    before, after = text[:start].rstrip(), text[end:].lstrip()
    joiner = " " if before and after and detect_language(text) == "en" else ""
    return before + joiner + after


@dataclass(frozen=True)
class ClauseEffect:
    clause: str
    without: float  # p_positive of the message with this clause left out
    shift: float  # the whole message's p_positive minus `without`: > 0 pulled it up


@dataclass(frozen=True)
class Explanation:
    text: str
    sentiment: Sentiment  # the whole message's label, from the same pass
    effects: tuple[ClauseEffect, ...]  # one per clause, in message order; none for one clause
    language: Language

    def strongest(self) -> list[ClauseEffect]:
        """The clauses that moved the score most, largest first: at most SHOWN, each by at
        least MIN_SHIFT."""
        moved = [effect for effect in self.effects if abs(effect.shift) >= MIN_SHIFT]
        return sorted(moved, key=lambda effect: abs(effect.shift), reverse=True)[:SHOWN]


def attribute(
    text: str, spans: list[tuple[int, int]], whole: Sentiment, without: list[Sentiment]
) -> Explanation:
    """Each clause's shift: the whole message's p_positive minus the p_positive of the message
    without that clause."""
    effects = tuple(
        ClauseEffect(text[start:end], left.p_positive, whole.p_positive - left.p_positive)
        for (start, end), left in zip(spans, without, strict=True)
    )
    return Explanation(text, whole, effects, detect_language(text))


TagMany = Callable[[list[str]], Awaitable[list[Sentiment]]]


async def explain(tag_many: TagMany, text: str) -> Explanation:
    """Label the whole text and each leave-one-clause-out variant, in one batched pass."""
    spans = split_clauses(text)[:MAX_CLAUSES]
    if len(spans) < 2:
        (whole,) = await tag_many([text])
        return Explanation(text, whole, (), detect_language(text))
    whole, *without = await tag_many([text, *(leave_out(text, span) for span in spans)])
    return attribute(text, spans, whole, without)


async def why(service: ChatService, user: UserKey) -> str:
    """/mood why: explain the user's latest label, or say why it cannot be explained."""
    now = service.now()
    latest = service.recent.latest(user, now)
    text, from_excerpt = (latest.text, False) if latest is not None else (None, False)
    if text is None:
        events = await service.store.mood_events(user, now - WHY_LOOKBACK)
        if not events:
            return texts.WHY_NOTHING
        excerpt = events[-1].excerpt
        if not (service.config.store_message_text and excerpt):
            return texts.why_no_text(int(service.recent.keep.total_seconds() // 60))
        text, from_excerpt = excerpt, True
    try:
        explanation = await explain(service.model.tag_many, text)
    except (ModelBusy, ModelStopped):
        return texts.BUSY
    except ModelTimeout:
        return texts.TIMEOUT
    except Exception:
        log.exception("labelling for /mood why failed")
        return texts.MODEL_ERROR
    return texts.why_explanation(explanation, from_excerpt)


# --- week: the facts, the model's sentences, the fallback ----------------------------------------


@dataclass(frozen=True)
class WeekFacts:
    report: MoodReport  # the last 7 days, with the trend against the 7 before
    best: DayPoint | None  # the day with the highest mood share (None under two days of data)
    worst: DayPoint | None  # the lowest, when it is lower than the best
    excerpts: tuple[str, ...]  # stored excerpts only (STORE_MESSAGE_TEXT=true)
    language: Language


def week_facts(report: MoodReport, language: Language) -> WeekFacts:
    days = [point for point in report.series if point.total]
    best = worst = None
    if len(days) > 1:  # with a single day of messages there is no best or worst one

        def share(point: DayPoint) -> float:
            return point.positive_share or 0.0

        # Ties go to the later day, the one the user remembers better.
        best = max(reversed(days), key=share)
        worst = min(reversed(days), key=share)
        if share(worst) == share(best):
            worst = None
    excerpts = [" ".join(event.excerpt.split())[:80] for event in report.latest if event.excerpt]
    return WeekFacts(report, best, worst, tuple(excerpts[:WEEK_EXCERPTS]), language)


@dataclass(frozen=True)
class WeekSummary:
    text: str  # what the user reads: title, sentences, counts
    written_by_model: bool
    chart_png: bytes | None


def first_sentences(text: str, at_most: int = 3) -> str:
    """The model's text cut after `at_most` sentences (it is asked for two or three, and a
    small model sometimes keeps going)."""
    text = " ".join(text.split())
    ends = [match.end() for match in re.finditer(r"[。！？!?]+|\.+(?=\s|$)", text)]
    if len(ends) > at_most:
        text = text[: ends[at_most - 1]]
    return text.strip()


async def write_week(service: ChatService, facts: WeekFacts) -> tuple[str, bool]:
    """The summary: our sentence of the week's numbers and days (texts.week_opening), then
    the model's sentence about its mood; the templated fallback (then False) when the model
    writes nothing."""
    if facts.report.total == 0:
        return texts.week_empty(facts.language), False
    request = week_request(texts.week_mood(facts), facts.language)
    written = ""
    tokens = None
    try:
        tokens = service.model.reply(request)
        written = first_sentences("".join([delta async for delta in tokens]), WEEK_SENTENCES)
    except Exception:
        # Busy, timed out or broken: the template still gives the user their week.
        log.warning("the model could not write the week's summary", exc_info=True)
    finally:
        if tokens is not None:
            tokens.cancel()  # a no-op once it has ended; frees the model otherwise
    if not written:
        return texts.week_fallback(facts), False
    joiner = "" if facts.language == "zh" else " "
    return texts.week_opening(facts) + joiner + written, True


async def user_language(service: ChatService, user: UserKey, chat_id: str) -> Language:
    """The language of the user's latest words this bot still has, Chinese when none."""
    latest = service.recent.latest(user, service.now())
    if latest is not None:
        return detect_language(latest.text)
    turns = await service.store.recent_turns(user, chat_id, 2)
    said = [turn.content for turn in turns if turn.role == "user"]
    return detect_language(said[-1]) if said else "zh"


async def week(
    service: ChatService, user: UserKey, chat_id: str, *, charts: bool = True, digest: bool = False
) -> WeekSummary:
    """/mood week, and the weekly digest's message: the model's summary of the last 7 days,
    the counts, and the chart when asked for and there is data."""
    report = await service.mood(user, WEEK_DAYS)
    language = await user_language(service, user, chat_id)
    if report.latest and report.latest[0].excerpt:
        language = detect_language(report.latest[0].excerpt)
    facts = week_facts(report, language)
    sentences, by_model = await write_week(service, facts)
    title = (texts.DIGEST_TITLE if digest else texts.WEEK_TITLE)[language]
    png = await chart_png(report) if charts else None
    return WeekSummary(texts.week_text(title, sentences, report), by_model, png)


async def chart_png(report: MoodReport) -> bytes | None:
    if not report.total:  # an empty period has nothing to draw
        return None
    from engine.chat.chart import render_mood_chart

    try:
        # matplotlib is CPU work; keep it off the event loop.
        return await asyncio.to_thread(render_mood_chart, report)
    except Exception:
        # The summary still goes out; a missing picture is not worth failing it.
        log.exception("the mood chart failed")
        return None


# --- the weekly digest ------------------------------------------------------------------------


class RecipientGone(Exception):
    """The platform will not deliver to this user (they blocked the bot, closed their DMs)."""


DigestSend = Callable[[DigestSubscription, WeekSummary], Awaitable[None]]


@dataclass
class DigestRun:
    """What one run of the weekly job did: for its log line, and for the tests."""

    sent: list[UserKey] = field(default_factory=list)
    unreachable: list[UserKey] = field(default_factory=list)
    already_sent: list[UserKey] = field(default_factory=list)
    failed: list[UserKey] = field(default_factory=list)


async def set_digest(service: ChatService, user: UserKey, chat_id: str, on: bool) -> bool:
    """/digest on|off: the opt-in, kept in the store (so it survives restarts)."""
    return await service.store.set_digest(user, chat_id if on else None, service.now())


async def send_digests(service: ChatService, platform: str, send: DigestSend) -> DigestRun:
    """Send this week's digest to everyone on `platform` who opted in. One user's failure
    never stops the others; the store's claim makes one process of several send each."""
    run = DigestRun()
    try:
        subscriptions = await service.store.digest_subscriptions(platform)
    except StorageError as error:
        log.error("%s digest: could not read the opt-ins: %s", platform, error)
        return run
    for subscription in subscriptions:
        user = subscription.user
        try:
            now = service.now()
            if not await service.store.claim_digest(user, now - DIGEST_RESEND_AFTER, now):
                run.already_sent.append(user)
                continue
            summary = await week(service, user, subscription.chat_id, digest=True)
            await send(subscription, summary)
        except RecipientGone as gone:
            log.info("%s digest: user %s cannot be reached (%s): skipped",
                     platform, user.user_id, gone)  # fmt: skip
            run.unreachable.append(user)
        except Exception:
            log.exception("%s digest: sending to user %s failed", platform, user.user_id)
            run.failed.append(user)
        else:
            run.sent.append(user)
    counts = len(run.sent), len(run.unreachable), len(run.already_sent), len(run.failed)
    log.info("%s digest: %d sent, %d unreachable, %d sent already, %d failed", platform, *counts)
    return run

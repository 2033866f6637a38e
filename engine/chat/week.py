"""/mood week and the weekly digest's message: the last 7 days in two sentences, the counts and
the chart.

The summary's first sentence is ours: the week's counts, share, trend and best and hardest
day, filled into a template (texts.week_opening). The sentence after it is the model's: it is
told the mood's direction and change in words, and the stored excerpts when there are any,
never a number or a day (texts.week_mood, prompts.WEEK_SYSTEM), and its reply is cut after one
sentence. benchmarks.quality.week measured why: given the numbers, the 0.5B model attached
them to the wrong things and told hard weeks they were happy. If the model fails, a templated
sentence stands in and says so. The chart is /mood's, for those 7 days. The summary is in the
user's language, read from their latest message (in memory, a stored excerpt, or the chat's
conversation memory), Chinese when none is known.
"""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from engine.chat import texts
from engine.chat.findings import WeekFacts, WeekSummary
from engine.chat.prompts import WEEK_SENTENCES, week_request
from engine.chat.recent import RecentMessages
from engine.language import Language, detect_language
from engine.ports import ModelFacade, MoodStore
from engine.types import DayPoint, MoodReport, UserKey

log = logging.getLogger(__name__)

WEEK_DAYS = 7
WEEK_EXCERPTS = 3


class WeekSource(Protocol):
    """What the week's summary reads (the chat service provides it)."""

    recent: RecentMessages
    store: MoodStore
    model: ModelFacade

    def now(self) -> datetime: ...

    async def mood(self, user: UserKey, days: int = 7) -> MoodReport: ...

    def turn(self, user: UserKey, *, capped: bool = True) -> AbstractAsyncContextManager[None]:
        """The user's turn for model work, in line with their messages (ChatService.turn)."""


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


def first_sentences(text: str, at_most: int = 3) -> str:
    """The model's text cut after `at_most` sentences (it is asked for two or three, and a
    small model sometimes keeps going)."""
    text = " ".join(text.split())
    ends = [match.end() for match in re.finditer(r"[。！？!?]+|\.+(?=\s|$)", text)]
    if len(ends) > at_most:
        text = text[: ends[at_most - 1]]
    return text.strip()


async def write_week(service: WeekSource, facts: WeekFacts) -> tuple[str, bool]:
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


async def user_language(service: WeekSource, user: UserKey, chat_id: str) -> Language:
    """The language of the user's latest words this bot still has, Chinese when none."""
    latest = service.recent.latest(user, service.now())
    if latest is not None:
        return detect_language(latest.text)
    turns = await service.store.recent_turns(user, chat_id, 2)
    said = [turn.content for turn in turns if turn.role == "user"]
    return detect_language(said[-1]) if said else "zh"


async def week(
    service: WeekSource, user: UserKey, chat_id: str, *, charts: bool = True, digest: bool = False
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

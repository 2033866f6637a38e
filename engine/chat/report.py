"""/mood report [days]: the user's mood history as a PDF (default 30 days, up to 365): /mood's
chart, the daily and weekly counts, the share of labels the user corrected, and a sentence per
week.

This module gathers the numbers (one store query, /mood's maths in engine/chat/mood.py); the
PDF is drawn by engine/chat/report_pdf.py in a worker thread (asyncio.to_thread: matplotlib is
CPU work, and the model's worker never sees it). The answer is a caption plus one file
(journal.ExportFile), which each adapter already sends privately: a Telegram document, an
ephemeral Discord attachment, a file the console writes and names.

The weeks are blocks of 7 local days ending today, so the last one is exactly /mood week's (the
oldest may be shorter). Their sentences are templated from the counts (texts.
report_week_sentence), never the model's: /mood week's model sentence is not stored, and a
report of 52 weeks would hold the model for 52 replies (minutes on a CPU) to say in words
what the numbers beside it already say.

Nothing is stored for the report, so /export and /forget have nothing new to cover.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from engine.chat import mood, texts
from engine.chat.config import ChatConfig
from engine.chat.journal import ExportFile
from engine.chat.report_data import ReportData, ReportWeek
from engine.chat.week import WEEK_DAYS, WeekSource, user_language, week_facts
from engine.language import Language, detect_language
from engine.types import MoodEvent, MoodReport, UserKey

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30
PDF_MIME = "application/pdf"


class ReportSource(WeekSource, Protocol):
    config: ChatConfig


@dataclass(frozen=True)
class PdfReport:
    """What /mood report answers: a caption, and the PDF when there is anything to show."""

    caption: str
    file: ExportFile | None = None


async def gather(service: ReportSource, user: UserKey, chat_id: str, days: int) -> ReportData:
    """The period's numbers, read in one query: the last `days` local days and as many before
    them (for the trends); the arithmetic runs in a worker thread (a year can hold thousands of
    events)."""
    tz = service.config.tz
    now = service.now()  # one reading, so every bound and day series agrees at midnight
    previous_start, _, end = mood.period_bounds(days, now, tz)
    events = await service.store.mood_events(user, previous_start, end)
    language = await user_language(service, user, chat_id)
    zone = service.config.timezone
    return await asyncio.to_thread(summarise, user, events, days, now, zone, language)


def summarise(
    user: UserKey, events: list[MoodEvent], days: int, now: datetime, zone: str, language: Language
) -> ReportData:
    """ReportData from the events of the last `2 * days` local days, oldest first."""
    tz = ZoneInfo(zone)
    _, current_start, _ = mood.period_bounds(days, now, tz)
    cut = bisect_left([event.created_at for event in events], current_start)
    current, previous = events[cut:], events[:cut]
    period = mood.build_report(user, current, previous, days, now, tz)
    if period.latest and period.latest[0].excerpt:  # as /mood week decides it
        language = detect_language(period.latest[0].excerpt)

    corrected = [e for e in current if e.corrected is not None]
    by_day = Counter(e.created_at.astimezone(tz).date() for e in corrected)
    changes = Counter((e.shown_tone, e.tone) for e in corrected)
    blocks = _Blocks(user, events, tz)
    weeks = []
    for first, last in week_spans(period.series[0].day, period.series[-1].day):
        block = blocks.report(first, last)
        facts = week_facts(block, language)
        count = sum(n for day, n in by_day.items() if first <= day <= last)
        sentence = texts.report_week_sentence(facts, first, last)
        weeks.append(ReportWeek(first, last, block, count, sentence))
    return ReportData(
        period=period,
        weeks=tuple(weeks),
        corrected_by_day=dict(by_day),
        changes=tuple((shown, tone, n) for (shown, tone), n in changes.most_common()),
        language=language,
        zone=zone,
        made_at=now.astimezone(tz),
    )


def week_spans(first: date, last: date) -> list[tuple[date, date]]:
    """Blocks of WEEK_DAYS days ending on `last`, oldest first; the oldest may be shorter."""
    spans = []
    end = last
    while end >= first:
        start = max(first, end - timedelta(days=WEEK_DAYS - 1))
        spans.append((start, end))
        end = start - timedelta(days=1)
    return spans[::-1]


class _Blocks:
    """/mood's maths for a block of days inside the events' span: its counts, and the trend
    against as many days before it (the events are oldest first: bisect finds each block)."""

    def __init__(self, user: UserKey, events: list[MoodEvent], tz: tzinfo) -> None:
        self.user, self.events, self.tz = user, events, tz
        self.stamps = [event.created_at for event in events]

    def _at(self, moment: datetime) -> int:
        return bisect_left(self.stamps, moment)

    def report(self, first: date, last: date) -> MoodReport:
        days = (last - first).days + 1
        seen_at = datetime.combine(last, time(12), tzinfo=self.tz)  # any time of its last day
        previous_start, current_start, _ = mood.period_bounds(days, seen_at, self.tz)
        until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=self.tz)
        cut = self._at(current_start)
        current = self.events[cut : self._at(until.astimezone(UTC))]
        previous = self.events[self._at(previous_start) : cut]
        return mood.build_report(self.user, current, previous, days, seen_at, self.tz)


async def mood_report(service: ReportSource, user: UserKey, chat_id: str, days: int) -> PdfReport:
    """/mood report: the caption and the PDF (none for an empty period, or when drawing fails)."""
    data = await gather(service, user, chat_id, days)
    if data.period.total == 0:
        return PdfReport(texts.report_empty(days))
    from engine.chat import report_pdf

    caption = texts.report_caption(days, data.period.total)
    if data.language == "zh" and await asyncio.to_thread(report_pdf.cjk_font) is None:
        data = _in_english(data)
        caption += "\n" + texts.REPORT_NO_CJK_FONT
    try:
        pdf = await asyncio.to_thread(report_pdf.render_report_pdf, data)
    except Exception:
        log.exception("the mood report's PDF failed")
        return PdfReport(texts.REPORT_FAILED)
    name = f"mood-report-{data.period.series[-1].day:%Y%m%d}-{days}d.pdf"
    return PdfReport(caption, ExportFile(name, pdf, PDF_MIME))


def _in_english(data: ReportData) -> ReportData:
    """The same report written in English (no font here can draw Chinese)."""
    weeks = tuple(
        replace(w, sentence=texts.report_week_sentence(week_facts(w.report, "en"), w.first, w.last))
        for w in data.weeks
    )
    return replace(data, weeks=weeks, language="en")

"""/mood report through engine.chat.commands: the PDF is read back (its text with PDFium, its
pages rendered to images) and its numbers are checked against counts made here from the
seeded history, by local day in the bot's time zone, not by the report's own code."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from engine.chat import report, report_pdf, texts
from engine.chat.commands import Caller, Commands
from engine.chat.config import ChatConfig
from engine.chat.service import ChatService
from engine.types import Label, MoodEvent, Tone, Turn, UserKey
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine

ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)  # 17:00 on Sunday 12-06 in Shanghai
TODAY = date(2026, 12, 6)
USER = UserKey("telegram", "42")
CALLER = Caller(USER, "42")
A4_RATIO = 11.69 / 8.27


class Clock(datetime):
    @classmethod
    def now(cls, tz: object = None) -> Clock:
        return cls.fromtimestamp(NOW.timestamp(), UTC)


@dataclass(frozen=True)
class Seeded:
    at: datetime
    shown: Tone
    corrected: Tone | None

    @property
    def counted(self) -> Tone:
        return self.corrected or self.shown

    @property
    def day(self) -> date:
        return self.at.astimezone(TZ).date()


def history() -> list[Seeded]:
    """50 days of messages, some days empty, some at 00:30 local (the UTC day before), three
    of them corrected; a fixed pattern, so every run sees the same history."""
    tones: tuple[Tone, ...] = ("positive", "negative", "positive", "neutral", "positive")
    seeded = []
    for days_ago in range(50):
        for k in range((days_ago * 3) % 5):  # 0–4 messages a day
            at = NOW - timedelta(days=days_ago, hours=2 * k)
            if k == 2:  # 00:30 in Shanghai: 16:30 UTC of the day before
                at = datetime.combine(at.astimezone(TZ).date(), datetime.min.time(), TZ)
                at = (at + timedelta(minutes=30)).astimezone(UTC)
            shown = tones[(days_ago + k) % len(tones)]
            corrected: Tone | None = None
            if (days_ago, k) in ((1, 1), (4, 0), (8, 3)):
                corrected = "negative" if shown != "negative" else "neutral"
            seeded.append(Seeded(at, shown, corrected))
    return sorted(seeded, key=lambda s: s.at)


async def seed(store: SqlMoodStore, seeded: list[Seeded], said: str) -> None:
    for number, entry in enumerate(seeded):
        label: Label = "negative" if entry.shown == "negative" else "positive"
        p = 0.2 if label == "negative" else 0.8
        neutral = entry.shown == "neutral"
        event = MoodEvent("telegram", "42", "42", label, p, entry.at, neutral=neutral,
                          message_id=str(number))  # fmt: skip
        turns = [Turn("user", said), Turn("assistant", "ok")] if number == len(seeded) - 1 else []
        await store.record_exchange(event, turns)
        if entry.corrected is not None:
            outcome = await store.correct_mood(USER, "42", str(number), entry.corrected, NOW)
            assert outcome.outcome == "corrected"


def in_period(seeded: list[Seeded], days: int) -> list[Seeded]:
    first = TODAY - timedelta(days=days - 1)
    return [s for s in seeded if first <= s.day <= TODAY]


def row(entries: list[Seeded]) -> str:
    """Messages, positive, neutral, negative, corrected: a table row's numbers."""
    tones = Counter(s.counted for s in entries)
    corrected = sum(1 for s in entries if s.corrected)
    return f"{len(entries)} {tones['positive']} {tones['neutral']} {tones['negative']} {corrected}"


def pdf_pages(data: bytes) -> list[str]:
    """Each page's text, whitespace made single spaces."""
    document = pdfium.PdfDocument(data)
    return [" ".join(page.get_textpage().get_text_range().split()) for page in document]


def rendered(data: bytes) -> list[Image.Image]:
    return [page.render(scale=1).to_pil() for page in pdfium.PdfDocument(data)]


@pytest.fixture
async def service(scripted_engine: ScriptedEngine) -> ChatService:
    config = ChatConfig(timezone=ZONE)
    return ChatService(scripted_engine.worker, scripted_engine.store, config, Clock)


async def test_the_pdf_holds_the_stores_daily_and_weekly_counts_and_corrections(
    service: ChatService, scripted_engine: ScriptedEngine
) -> None:
    seeded = history()
    await seed(scripted_engine.store, seeded, "I had a long week at work")
    result = await Commands(service).run("mood", CALLER, "report")

    (file,) = result.files
    assert file.name == "mood-report-20261206-30d.pdf"  # 30 days unless asked
    assert file.mime == "application/pdf"
    period = in_period(seeded, 30)
    assert result.text == texts.report_caption(30, len(period))
    pages = pdf_pages(file.data)
    assert len(pages) == 2
    text = " ".join(pages)
    assert "Mood report" in text  # the user wrote English last
    assert "2026-11-07 to 2026-12-06 (30 days, time zone Asia/Shanghai)" in text

    # Every day with messages, by local day: a 00:30 message counts on its Shanghai date.
    days = sorted({s.day for s in period})
    assert len(days) == 24
    for day in days:
        assert f"{day} {row([s for s in period if s.day == day])}" in text
    assert f"{TODAY - timedelta(days=30)} " not in text  # the day before the period

    # Weeks of 7 days ending today (the oldest is what is left: 2 days).
    last = TODAY
    weeks = []
    while last > TODAY - timedelta(days=30):
        first = max(last - timedelta(days=6), TODAY - timedelta(days=29))
        weeks.append((first, last, [s for s in period if first <= s.day <= last]))
        last = first - timedelta(days=1)
    assert len(weeks) == 5
    assert (weeks[-1][1] - weeks[-1][0]).days == 1
    for first, last, entries in weeks:
        counts = Counter(s.counted for s in entries)
        mood = (counts["positive"] + counts["neutral"] / 2) / len(entries)
        messages, *rest = row(entries).split()
        numbers = " ".join([messages, *rest[:3], f"{mood:.0%}", rest[3]])
        assert f"{first:%m-%d} – {last:%m-%d} {numbers}" in text
        # and its sentence, with the same count
        assert f"{first:%m-%d} – {last:%m-%d}: {len(entries)} messages (" in text

    corrected = sum(1 for s in period if s.corrected)
    assert corrected == 3
    share = f"{corrected * 100 / len(period):.1f}%"
    assert f"You corrected {corrected} / {len(period)} labels ({share})." in text

    images = rendered(file.data)
    assert len(images) == len(pages)
    for image in images:
        assert image.height / image.width == pytest.approx(A4_RATIO, rel=0.01)
        # Not a blank page: a share of its pixels is ink.
        dark = int((np.asarray(image.convert("L")) < 128).sum())
        assert dark > 0.002 * image.width * image.height
    # The chart is on page one: /mood's green bars are there.
    colors = images[0].convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert any(rgb == (0x4C, 0xAF, 0x50) and n > 500 for n, rgb in colors)


async def test_a_year_takes_more_pages_and_keeps_every_day(
    service: ChatService, scripted_engine: ScriptedEngine
) -> None:
    seeded = history()
    await seed(scripted_engine.store, seeded, "fine thanks")
    result = await Commands(service).run("mood", CALLER, "report 365")
    (file,) = result.files
    assert file.name == "mood-report-20261206-365d.pdf"
    pages = pdf_pages(file.data)
    assert len(pages) > 2
    text = " ".join(pages)
    for day in sorted({s.day for s in seeded}):
        assert f"{day} {row([s for s in seeded if s.day == day])}" in text
    assert f"You corrected 3 / {len(seeded)} labels" in text
    # 53 weeks (the oldest of one day), each in the weekly table
    spans = report.week_spans(TODAY - timedelta(days=364), TODAY)
    assert len(spans) == 53
    for first, last in spans:
        assert f"{first:%m-%d} – {last:%m-%d} " in text


async def test_chinese_when_the_user_writes_chinese_and_a_font_can_draw_it(
    service: ChatService, scripted_engine: ScriptedEngine
) -> None:
    if report_pdf.cjk_font() is None:
        pytest.skip("no CJK font here (make install-fonts installs one)")
    seeded = history()
    await seed(scripted_engine.store, seeded, "今天有点累")
    result = await Commands(service).run("mood", CALLER, "report 30")
    (file,) = result.files
    text = " ".join(pdf_pages(file.data))
    period = in_period(seeded, 30)
    assert "心情报告" in text
    assert f"你更正了 3 / {len(period)} 条标签" in text
    assert "每日统计" in text
    assert "每周小结" in text
    assert texts.REPORT_NO_CJK_FONT not in result.text


async def test_without_a_cjk_font_a_chinese_users_report_is_english_and_says_so(
    service: ChatService, scripted_engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_pdf, "cjk_font", lambda: None)
    seeded = history()
    await seed(scripted_engine.store, seeded, "今天有点累")
    result = await Commands(service).run("mood", CALLER, "report 30")
    assert result.text.endswith(texts.REPORT_NO_CJK_FONT)
    (file,) = result.files
    text = " ".join(pdf_pages(file.data))
    assert "Mood report" in text
    assert "心情" not in text
    assert "Weekly summaries" in text


async def test_refused_in_a_group_and_bad_days_are_explained(service: ChatService) -> None:
    commands = Commands(service)
    group = await commands.run("mood", Caller(USER, "group-1", private=False), "report")
    assert group.text == texts.MOOD_PRIVATE_ONLY
    assert group.files == ()
    for bad in ("0", "366", "soon", "30 days"):
        answer = await commands.run("mood", CALLER, f"report {bad}")
        assert answer.text == texts.report_bad_days(bad)
        assert answer.files == ()


async def test_an_empty_period_has_no_pdf(
    service: ChatService, scripted_engine: ScriptedEngine
) -> None:
    old = [Seeded(NOW - timedelta(days=40), "positive", None)]
    await seed(scripted_engine.store, old, "hello")
    answer = await Commands(service).run("mood", CALLER, "report 30")
    assert answer.text == texts.report_empty(30)
    assert answer.files == ()


async def test_drawn_in_a_worker_thread_and_the_model_is_not_asked(
    service: ChatService, scripted_engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(scripted_engine.store, history(), "fine")
    threads = []
    draw = report_pdf.render_report_pdf

    def recorded(data: report.ReportData) -> bytes:
        threads.append(threading.current_thread())
        return draw(data)

    monkeypatch.setattr(report_pdf, "render_report_pdf", recorded)
    calls = len(scripted_engine.runner.reply_calls), len(scripted_engine.runner.tag_calls)
    result = await Commands(service).run("mood", CALLER, "report 90")
    assert len(result.files) == 1
    assert threads
    assert threads[0] is not threading.main_thread()
    assert (len(scripted_engine.runner.reply_calls), len(scripted_engine.runner.tag_calls)) == calls


async def test_a_failed_drawing_is_told_not_raised(
    service: ChatService, scripted_engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(scripted_engine.store, history(), "fine")

    def broken(data: report.ReportData) -> bytes:
        raise RuntimeError("no room on the page")

    monkeypatch.setattr(report_pdf, "render_report_pdf", broken)
    result = await Commands(service).run("mood", CALLER, "report")
    assert result.text == texts.REPORT_FAILED
    assert result.files == ()


def test_weeks_end_today_and_the_oldest_is_the_rest() -> None:
    spans = report.week_spans(date(2026, 11, 7), TODAY)
    assert spans[0] == (date(2026, 11, 7), date(2026, 11, 8))
    assert spans[-1] == (date(2026, 11, 30), TODAY)
    assert all((b - a).days == 6 for a, b in spans[1:])
    assert report.week_spans(TODAY, TODAY) == [(TODAY, TODAY)]


def test_report_is_in_the_menu_and_help() -> None:
    assert "/mood report" in dict(Commands.menu())["mood"]
    assert "/mood report" in texts.help_text()

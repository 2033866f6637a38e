"""What /mood report's PDF shows, as plain data: gathered by engine/chat/report.py, drawn by
engine/chat/report_pdf.py (apart from both, so neither imports the other for it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from engine.language import Language
from engine.types import MoodReport, Tone


@dataclass(frozen=True)
class ReportWeek:
    first: date
    last: date
    report: MoodReport  # the block's counts, with the trend against as many days before it
    corrected: int
    sentence: str


@dataclass(frozen=True)
class ReportData:
    """Everything the PDF shows, in numbers and finished sentences."""

    period: MoodReport  # the whole period, as /mood <days> counts it
    weeks: tuple[ReportWeek, ...]  # oldest first
    corrected_by_day: dict[date, int]
    changes: tuple[tuple[Tone, Tone, int], ...]  # (shown, corrected to, how many), most first
    language: Language
    zone: str
    made_at: datetime  # local time

    @property
    def corrected(self) -> int:
        return sum(self.corrected_by_day.values())

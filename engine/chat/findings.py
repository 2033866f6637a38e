"""What /mood why and /mood week found, as plain data: the texts (engine/chat/texts.py) render
them, engine/chat/why.py and engine/chat/week.py compute them, the adapters send WeekSummary."""

from __future__ import annotations

from dataclasses import dataclass

from engine.language import Language
from engine.types import DayPoint, MoodReport, Sentiment

MIN_SHIFT = 0.05  # a clause that moves p_positive by less is not named
SHOWN = 2  # at most this many clauses are named


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


@dataclass(frozen=True)
class WeekFacts:
    report: MoodReport  # the last 7 days, with the trend against the 7 before
    best: DayPoint | None  # the day with the highest mood share (None under two days of data)
    worst: DayPoint | None  # the lowest, when it is lower than the best
    excerpts: tuple[str, ...]  # stored excerpts only (STORE_MESSAGE_TEXT=true)
    language: Language


@dataclass(frozen=True)
class WeekSummary:
    text: str  # what the user reads: title, sentences, counts
    written_by_model: bool
    chart_png: bytes | None

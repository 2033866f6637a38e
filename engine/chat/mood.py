"""Mood maths: turn stored mood events into a report. Pure functions, no SQL, no I/O.

The report's text is written by engine/chat/texts.py, with every other text users read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from engine.chat import texts
from engine.types import DayPoint, MoodEvent, MoodReport, Tone, UserKey, mood_share

MAX_DAYS = 365
LATEST_COUNT = 5
BLOCKS = "▁▂▃▄▅▆▇█"
NO_DATA = "·"

# Lets the store's exclusive `until` bound still include an event stamped exactly `now`.
_EPSILON = timedelta(microseconds=1)


def validate_days(days: int) -> int:
    # bool is an int subclass; `days=True` is a bug, not "1 day".
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS}, got {days!r}")
    return days


def period_bounds(days: int, now: datetime, tz: tzinfo) -> tuple[datetime, datetime, datetime]:
    """(previous_start, current_start, end) in UTC for querying the store.

    current = [current_start, end) covers today and the `days - 1` local days before it;
    previous = [previous_start, current_start) is the same number of days just before.
    end is now + 1 µs, so that with the store's exclusive upper bound an event created at
    exactly `now` is included.
    """
    validate_days(days)
    today = _local_day(now, tz)
    current_start = _local_midnight(today - timedelta(days=days - 1), tz)
    previous_start = _local_midnight(today - timedelta(days=2 * days - 1), tz)
    return previous_start, current_start, (now + _EPSILON).astimezone(UTC)


def build_report(
    user: UserKey,
    current: Sequence[MoodEvent],
    previous: Sequence[MoodEvent],
    days: int,
    now: datetime,
    tz: tzinfo,
) -> MoodReport:
    """Summarise `current` (the last `days` local days) against `previous` (the period before).

    Current events whose local day falls outside the window are ignored, so the totals always
    equal the sum of the daily series.
    """
    validate_days(days)
    today = _local_day(now, tz)
    window = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    counts = {day: Counter[Tone]() for day in window}
    kept: list[MoodEvent] = []
    for event in current:
        bucket = counts.get(_local_day(event.created_at, tz))
        if bucket is not None:
            bucket[event.tone] += 1
            kept.append(event)
    series = tuple(
        DayPoint(day, tones["positive"], tones["negative"], tones["neutral"])
        for day, tones in counts.items()
    )
    before = Counter(event.tone for event in previous)
    report = MoodReport(
        user=user,
        days=days,
        positive=sum(point.positive for point in series),
        negative=sum(point.negative for point in series),
        neutral=sum(point.neutral for point in series),
        series=series,
        sparkline=sparkline(series),
        previous_positive_share=mood_share(
            before["positive"], before["negative"], before["neutral"]
        ),
        latest=tuple(sorted(kept, key=lambda e: e.created_at, reverse=True)[:LATEST_COUNT]),
    )
    return replace(report, text=texts.mood_report(report, bool(previous), tz))


def sparkline(series: Sequence[DayPoint]) -> str:
    """One char per day: ▁ (all negative) … █ (all positive), · for a day without events;
    a neutral message counts half, so a day of small talk sits in the middle."""
    chars = []
    for point in series:
        share = point.positive_share
        # Eight equal-width share bins, so each block stands for 12.5 points.
        chars.append(NO_DATA if share is None else BLOCKS[min(len(BLOCKS) - 1, int(share * 8))])
    return "".join(chars)


def _local_day(moment: datetime, tz: tzinfo) -> date:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(tz).date()


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)

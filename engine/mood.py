"""Mood maths: turn stored mood events into a report. Pure functions, no SQL, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from engine.types import DayPoint, MoodEvent, MoodReport, UserKey

MAX_DAYS = 365
LATEST_COUNT = 5
BLOCKS = "▁▂▃▄▅▆▇█"
NO_DATA = "·"
EXCERPT_CHARS = 24

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
    counts = {day: [0, 0] for day in window}
    kept: list[MoodEvent] = []
    for event in current:
        bucket = counts.get(_local_day(event.created_at, tz))
        if bucket is not None:
            bucket[0 if event.label == "positive" else 1] += 1
            kept.append(event)
    series = tuple(DayPoint(day, pos, neg) for day, (pos, neg) in counts.items())
    prev_positive = sum(1 for event in previous if event.label == "positive")
    report = MoodReport(
        user=user,
        days=days,
        positive=sum(point.positive for point in series),
        negative=sum(point.negative for point in series),
        series=series,
        sparkline=sparkline(series),
        previous_positive_share=prev_positive / len(previous) if previous else None,
        latest=tuple(sorted(kept, key=lambda e: e.created_at, reverse=True)[:LATEST_COUNT]),
    )
    return replace(report, text=_render_text(report, bool(previous), tz))


def sparkline(series: Sequence[DayPoint]) -> str:
    """One char per day: ▁ (all negative) … █ (all positive), · for a day without events."""
    chars = []
    for point in series:
        share = point.positive_share
        # Eight equal-width share bins, so each block stands for 12.5 points.
        chars.append(NO_DATA if share is None else BLOCKS[min(len(BLOCKS) - 1, int(share * 8))])
    return "".join(chars)


def _render_text(report: MoodReport, had_previous: bool, tz: tzinfo) -> str:
    days = report.days
    period = "今天" if days == 1 else f"最近 {days} 天"
    period_en = "today" if days == 1 else f"last {days} days"
    if report.total == 0:
        if had_previous:
            return (
                f"{period}还没有心情记录。和我聊聊吧，我会记录每条消息的情感。"
                f" (No mood entries {period_en} — just chat with me.)"
            )
        return (
            "还没有心情记录。和我聊聊吧，我会记录每条消息的情感。"
            " (No mood history yet — just chat with me.)"
        )
    share = report.positive_share or 0.0
    pos_pct = round(share * 100)
    first, last = report.series[0].day, report.series[-1].day
    lines = [
        f"📊 {period}的心情 (mood, {period_en})",
        f"共 {report.total} 条: 😄 正面 {report.positive} ({pos_pct}%)"
        f" · 😔 负面 {report.negative} ({100 - pos_pct}%)",
        f"每日 {report.sparkline}  ({_day_label(first, last)} → {_day_label(last, first)})",
        _trend_line(report),
        "最近:",
    ]
    for event in report.latest:
        lines.append("  " + _event_line(event, tz))
    return "\n".join(lines)


def _trend_line(report: MoodReport) -> str:
    days = report.days
    trend = report.trend
    if trend is None:
        return f"趋势: 前 {days} 天没有记录，暂无可比较 (no earlier data to compare)"
    points = round(trend * 100)
    if points > 0:
        return f"趋势: 比前 {days} 天 ↑ {points} 个百分点 (up {points} pts vs previous period)"
    if points < 0:
        return f"趋势: 比前 {days} 天 ↓ {-points} 个百分点 (down {-points} pts vs previous period)"
    return f"趋势: 与前 {days} 天持平 → (about the same as the previous period)"


def _event_line(event: MoodEvent, tz: tzinfo) -> str:
    stamp = event.created_at.astimezone(tz).strftime("%m-%d %H:%M")
    face, word = ("😄", "正面") if event.label == "positive" else ("😔", "负面")
    confidence = event.p_positive if event.label == "positive" else 1.0 - event.p_positive
    line = f"{stamp} {face} {word} {confidence:.2f}"
    if event.excerpt:
        excerpt = " ".join(event.excerpt.split())
        if len(excerpt) > EXCERPT_CHARS:
            excerpt = excerpt[: EXCERPT_CHARS - 1] + "…"
        line += f" 「{excerpt}」"
    return line


def _day_label(day: date, other: date) -> str:
    # Month-day is enough unless the range crosses a year boundary.
    return day.strftime("%m-%d" if day.year == other.year else "%Y-%m-%d")


def _local_day(moment: datetime, tz: tzinfo) -> date:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(tz).date()


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)

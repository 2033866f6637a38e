"""Mood maths on seeded events with a fixed clock in a non-UTC time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.chat.mood import build_report, period_bounds, sparkline
from engine.types import DayPoint, Label, MoodEvent, UserKey

SHANGHAI = ZoneInfo("Asia/Shanghai")  # UTC+8, no DST
NEW_YORK = ZoneInfo("America/New_York")
USER = UserKey("telegram", "42")
# 14:03 on 2024-11-22 in Shanghai.
NOW = datetime(2024, 11, 22, 6, 3, tzinfo=UTC)


def ev(at: datetime, p_positive: float, excerpt: str | None = None) -> MoodEvent:
    label: Label = "positive" if p_positive >= 0.5 else "negative"
    return MoodEvent("telegram", "42", "c", label, p_positive, at.astimezone(UTC), excerpt)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# Seven-day window in Shanghai: 11-16 .. 11-22.
CURRENT = [
    ev(local(2024, 11, 16, 9, 0), 0.9),
    ev(local(2024, 11, 16, 10, 0), 0.2),
    # 23:59 local on the 18th (15:59 UTC): the last minute of the 18th.
    ev(local(2024, 11, 18, 23, 59), 0.1),
    # 00:30 local on the 19th is 16:30 UTC on the 18th: it must count for the 19th.
    ev(local(2024, 11, 19, 0, 30), 0.95),
    ev(local(2024, 11, 19, 8, 0), 0.8),
    ev(local(2024, 11, 19, 9, 0), 0.7),
    ev(local(2024, 11, 19, 12, 0), 0.3),
    ev(local(2024, 11, 22, 14, 3), 0.93, excerpt="today was   great, thanks for asking me"),
]
# Days without events: 11-17, 11-20, 11-21.


def test_period_bounds_are_local_midnights_in_utc() -> None:
    previous_start, current_start, end = period_bounds(7, NOW, SHANGHAI)
    assert current_start == datetime(2024, 11, 15, 16, 0, tzinfo=UTC)  # 11-16 00:00 +08
    assert previous_start == datetime(2024, 11, 8, 16, 0, tzinfo=UTC)  # 11-09 00:00 +08
    assert end == NOW + timedelta(microseconds=1)
    assert all(t.utcoffset() == timedelta(0) for t in (previous_start, current_start, end))


def test_period_bounds_follow_dst_offsets() -> None:
    # New York left DST on 2024-11-03: midnights before it are at 04:00 UTC, after at 05:00.
    now = datetime(2024, 11, 5, 15, 0, tzinfo=UTC)
    previous_start, current_start, _ = period_bounds(3, now, NEW_YORK)
    assert current_start == datetime(2024, 11, 3, 4, 0, tzinfo=UTC)  # 11-03 00:00 EDT
    assert previous_start == datetime(2024, 10, 31, 4, 0, tzinfo=UTC)
    _, today_start, _ = period_bounds(1, now, NEW_YORK)
    assert today_start == datetime(2024, 11, 5, 5, 0, tzinfo=UTC)  # 11-05 00:00 EST


def test_series_buckets_by_local_day_including_empty_days() -> None:
    report = build_report(USER, CURRENT, [], 7, NOW, SHANGHAI)
    assert [p.day for p in report.series] == [date(2024, 11, d) for d in range(16, 23)]
    assert [(p.positive, p.negative) for p in report.series] == [
        (1, 1),  # 16
        (0, 0),  # 17
        (0, 1),  # 18: 23:59 local stays on the 18th
        (3, 1),  # 19: 00:30 local is the 19th although it is still the 18th in UTC
        (0, 0),  # 20
        (0, 0),  # 21
        (1, 0),  # 22
    ]
    assert (report.positive, report.negative, report.total) == (5, 3, 8)
    assert report.sparkline == "▅·▁▇··█"


def test_events_outside_the_window_are_ignored() -> None:
    stray = [ev(local(2024, 11, 15, 23, 59), 0.9), ev(local(2024, 11, 23, 0, 0), 0.9)]
    report = build_report(USER, CURRENT + stray, [], 7, NOW, SHANGHAI)
    assert report.total == 8
    assert report.total == sum(p.total for p in report.series)


def test_sparkline_bins() -> None:
    points = [
        DayPoint(date(2024, 1, d), pos, neg)
        for d, (pos, neg) in enumerate(
            [(0, 3), (1, 7), (1, 3), (1, 1), (7, 1), (3, 0), (0, 0)], start=1
        )
    ]
    # shares 0, 1/8, 1/4, 1/2, 7/8, 1, none
    assert sparkline(points) == "▁▂▃▅██·"


def test_latest_is_newest_first_and_capped_at_five() -> None:
    report = build_report(USER, CURRENT, [], 7, NOW, SHANGHAI)
    assert len(report.latest) == 5
    assert [e.created_at for e in report.latest] == sorted(
        (e.created_at for e in CURRENT), reverse=True
    )[:5]


def test_text_has_counts_shares_sparkline_and_local_times() -> None:
    text = build_report(USER, CURRENT, [], 7, NOW, SHANGHAI).text
    assert "7 天" in text
    assert "共 8 条" in text
    assert "正面 5 (62%)" in text
    assert "负面 3 (38%)" in text
    assert "▅·▁▇··█" in text
    assert "11-16 → 11-22" in text
    assert "11-22 14:03 😄 正面 0.93" in text  # local time, not 06:03 UTC
    assert "11-19 00:30 😄 正面 0.95" in text
    assert "11-19 12:00 😔 负面 0.70" in text  # the confidence of the label, not p_positive
    assert "「today was great, thanks…」" in text  # whitespace folded, long excerpt cut
    assert "11-16" not in text.split("最近:")[1]  # only the five newest are listed


@pytest.mark.parametrize(
    ("previous_pos", "previous_neg", "expected"),
    [
        (1, 3, "↑ 38 个百分点"),  # 62.5% now vs 25% before
        (9, 1, "↓ 28 个百分点"),  # vs 90%
        (5, 3, "持平 →"),  # same share
    ],
)
def test_trend_against_previous_period(previous_pos: int, previous_neg: int, expected: str) -> None:
    earlier = local(2024, 11, 10, 12, 0)
    previous = [ev(earlier, 0.9)] * previous_pos + [ev(earlier, 0.1)] * previous_neg
    report = build_report(USER, CURRENT, previous, 7, NOW, SHANGHAI)
    assert report.previous_positive_share == pytest.approx(previous_pos / len(previous))
    assert expected in report.text


def test_no_previous_period_says_so() -> None:
    report = build_report(USER, CURRENT, [], 7, NOW, SHANGHAI)
    assert report.previous_positive_share is None
    assert report.trend is None
    assert "no earlier data to compare" in report.text
    assert "↑" not in report.text
    assert "↓" not in report.text


def test_empty_history_is_a_kind_report() -> None:
    report = build_report(USER, [], [], 7, NOW, SHANGHAI)
    assert (report.positive, report.negative, report.positive_share) == (0, 0, None)
    assert len(report.series) == 7
    assert all(p.total == 0 for p in report.series)
    assert report.sparkline == "·" * 7
    assert report.latest == ()
    assert "还没有心情记录" in report.text
    assert "No mood history yet" in report.text


def test_empty_current_but_earlier_history() -> None:
    previous = [ev(local(2024, 11, 10, 12, 0), 0.9)]
    report = build_report(USER, [], previous, 7, NOW, SHANGHAI)
    assert report.total == 0
    assert report.previous_positive_share == 1.0
    assert "最近 7 天还没有心情记录" in report.text


def test_one_day_report() -> None:
    report = build_report(USER, CURRENT, [], 1, NOW, SHANGHAI)
    assert [p.day for p in report.series] == [date(2024, 11, 22)]
    assert report.total == 1
    assert report.sparkline == "█"
    assert "今天" in report.text


def test_full_year_has_365_points() -> None:
    report = build_report(USER, CURRENT, [], 365, NOW, SHANGHAI)
    assert len(report.series) == len(report.sparkline) == 365
    assert report.series[0].day == date(2023, 11, 24)  # 2024 has a 29 February
    assert "2023-11-24 → 2024-11-22" in report.text  # the year shows when the range crosses one


@pytest.mark.parametrize("days", [0, -1, 366, True, 1.5, "7"])
def test_days_are_validated(days: object) -> None:
    with pytest.raises(ValueError, match="1 to 365"):
        period_bounds(days, NOW, SHANGHAI)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 365"):
        build_report(USER, [], [], days, NOW, SHANGHAI)  # type: ignore[arg-type]


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds(7, datetime(2024, 11, 22, 6, 3), SHANGHAI)


def test_neutral_messages_are_counted_apart_and_sit_in_the_middle() -> None:
    small_talk = [
        MoodEvent("telegram", "42", "c", "positive", 0.55, local(2024, 11, 21, 9, 0), None, True),
        MoodEvent("telegram", "42", "c", "negative", 0.45, local(2024, 11, 21, 10, 0), None, True),
    ]
    report = build_report(USER, [*CURRENT, *small_talk], [], 7, NOW, SHANGHAI)
    assert (report.positive, report.negative, report.neutral, report.total) == (5, 3, 2, 10)
    assert report.series[-2] == DayPoint(date(2024, 11, 21), 0, 0, 2)
    assert report.sparkline == "▅·▁▇·▅█"  # a day of small talk only: a middle block
    assert report.positive_share == pytest.approx((5 + 1) / 10)
    assert "😄 正面 5 (50%) · 😐 中性 2 (20%) · 😔 负面 3 (30%)" in report.text
    assert "11-21 10:00 😐 中性" in report.text  # no confidence for a neutral entry
    assert "中性 0." not in report.text


def test_without_neutral_messages_the_shares_read_as_before() -> None:
    assert "中性" not in build_report(USER, CURRENT, [], 7, NOW, SHANGHAI).text

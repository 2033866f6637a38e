"""Is the weekly summary (/mood week, the digest) faithful to the week? On the real model.

    python -m benchmarks.quality.week [--split tune|report|all] [--samples N] [--tag NAME]
    [--scripted]

A fixed set of synthetic weeks (CASES: counts per tone per day, the week before, stored
excerpts or none; Chinese and English), split into a `tune` half, on which the prompt is
tuned, and a `report` half, which is only measured. Each week becomes a MoodReport
(engine/chat/mood.py build_report) and the bot's WeekFacts, and its summary is written by
engine/chat/week.py `write_week` on a ChatService over the model worker: the bot's own path.
Each summary the user would read is scored automatically (`score`):
- language: the summary is in the week's language (an English one holds no CJK at all);
- sentences: two or three, the last one finished;
- numbers: every number in it (digits, percentages, Chinese numerals before a measure word)
  is one of the week's (`allowed_numbers`);
- days: every weekday name or date in it is the best or the hardest day;
- inventions: none of a small list of things small models invent (work, friends, feedback,
  工作, 朋友…) unless the facts or the excerpts name it;
- no copy: no list markers, no fact line verbatim, no "key:" of the facts.
Rows and transcripts go to benchmarks/results/week/<tag>.jsonl and <tag>.md; the table gives, per
split, the share of summaries passing each check and all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    describe_machine,
    mean,
    read_jsonl,
    table,
    write_json,
    write_jsonl,
)
from engine.chat import texts
from engine.chat.findings import WeekFacts
from engine.chat.mood import build_report
from engine.chat.week import week_facts
from engine.language import Language, detect_language
from engine.types import Label, MoodEvent, UserKey

NOW = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)  # a Sunday: the week is Mon 11-23 … Sun 11-29
USER = UserKey("bench", "week")
Day = tuple[int, int, int]  # positive, negative, neutral messages of one day
QUIET: Day = (0, 0, 0)


@dataclass(frozen=True)
class WeekCase:
    name: str
    language: Language
    split: str  # "tune" or "report"
    days: tuple[Day, Day, Day, Day, Day, Day, Day]  # Monday … Sunday
    previous: Day | None = None  # the 7 days before, None for no messages then
    excerpts: tuple[str, ...] = ()  # stored texts, newest first, on the latest messages


CASES: tuple[WeekCase, ...] = (
    # --- tune ---
    WeekCase("zh-up", "zh", "tune",
             ((0, 2, 0), (1, 1, 0), QUIET, (2, 0, 1), (3, 0, 0), (2, 1, 0), (1, 0, 0)),
             previous=(2, 5, 0)),
    WeekCase("zh-down", "zh", "tune",
             ((2, 0, 0), (1, 1, 0), (0, 3, 0), QUIET, (0, 2, 1), (1, 1, 0), QUIET),
             previous=(6, 2, 0)),
    WeekCase("zh-one-day", "zh", "tune", (QUIET, QUIET, (2, 1, 0), QUIET, QUIET, QUIET, QUIET)),
    WeekCase("zh-excerpts", "zh", "tune",
             (QUIET, (0, 1, 0), QUIET, (1, 0, 0), QUIET, (0, 1, 0), (1, 0, 0)),
             previous=(1, 1, 0),
             excerpts=("终于把论文交上去了，松了一口气", "下雨没带伞，淋成落汤鸡",
                       "今天的咖啡特别好喝")),
    WeekCase("zh-neutral", "zh", "tune",
             ((0, 0, 2), (1, 0, 1), (0, 0, 3), (0, 1, 1), QUIET, (0, 0, 2), QUIET),
             previous=(1, 1, 4)),
    WeekCase("en-up", "en", "tune",
             ((0, 1, 0), (1, 1, 0), (2, 0, 0), (1, 0, 0), (3, 0, 1), QUIET, (2, 0, 0)),
             previous=(1, 3, 0)),
    WeekCase("en-down", "en", "tune",
             ((2, 1, 0), QUIET, (0, 2, 0), (0, 1, 0), (1, 2, 0), (0, 3, 0), (0, 1, 0)),
             previous=(4, 1, 1)),
    WeekCase("en-one-day", "en", "tune", (QUIET, QUIET, QUIET, QUIET, (1, 1, 1), QUIET, QUIET)),
    WeekCase("en-excerpts", "en", "tune",
             ((1, 0, 0), QUIET, (0, 1, 0), QUIET, (1, 0, 0), (0, 1, 0), (1, 0, 0)),
             excerpts=("finally finished the bookshelf", "my cat knocked over the plant",
                       "the sunset from the bridge was unreal")),
    WeekCase("en-flat", "en", "tune",
             ((1, 1, 0), (1, 1, 0), QUIET, (1, 1, 0), QUIET, (1, 1, 0), QUIET),
             previous=(4, 4, 0)),
    # --- report ---
    WeekCase("zh-good", "zh", "report",
             ((1, 0, 0), (2, 0, 0), (1, 1, 0), (3, 0, 0), QUIET, (2, 0, 1), (1, 0, 0)),
             previous=(3, 3, 0)),
    WeekCase("zh-hard", "zh", "report",
             ((0, 2, 0), (0, 1, 0), (1, 2, 0), (0, 3, 0), (0, 1, 1), QUIET, (1, 1, 0)),
             previous=(3, 2, 0)),
    WeekCase("zh-first", "zh", "report",
             (QUIET, QUIET, QUIET, QUIET, (1, 0, 0), (2, 1, 0), QUIET)),
    WeekCase("zh-stored", "zh", "report",
             ((0, 1, 0), QUIET, (1, 0, 0), QUIET, (1, 1, 0), QUIET, (1, 0, 0)),
             previous=(0, 2, 0),
             excerpts=("周末去爬山，风景太美了", "排队两个小时还没买到票", "学会了做红烧肉")),
    WeekCase("zh-calm", "zh", "report",
             ((0, 0, 1), (0, 0, 2), (1, 0, 1), QUIET, (0, 0, 2), (0, 1, 0), (0, 0, 1)),
             previous=(0, 0, 5)),
    WeekCase("en-good", "en", "report",
             ((2, 0, 0), (1, 0, 0), (1, 1, 0), QUIET, (2, 0, 0), (3, 0, 0), (1, 0, 1)),
             previous=(2, 2, 1)),
    WeekCase("en-hard", "en", "report",
             ((1, 1, 0), (0, 2, 0), (0, 1, 0), (0, 3, 0), QUIET, (0, 2, 0), (1, 1, 0)),
             previous=(3, 1, 0)),
    WeekCase("en-first", "en", "report",
             (QUIET, QUIET, QUIET, QUIET, QUIET, (2, 0, 0), (0, 1, 0))),
    WeekCase("en-stored", "en", "report",
             (QUIET, (1, 0, 0), QUIET, (0, 1, 0), (1, 0, 0), QUIET, (0, 1, 0)),
             previous=(2, 0, 0),
             excerpts=("the bus broke down and I walked home in the rain",
                       "baked bread for the first time", "lost my umbrella again")),
    WeekCase("en-steady", "en", "report",
             ((1, 0, 1), (1, 1, 0), (1, 0, 0), (1, 1, 0), (1, 0, 1), QUIET, QUIET),
             previous=(4, 2, 1)),
)  # fmt: skip


def _events(day_index: int, day: Day, when: datetime) -> list[MoodEvent]:
    tones = ["positive"] * day[0] + ["negative"] * day[1] + ["neutral"] * day[2]
    moment = when.replace(hour=9) + timedelta(days=day_index)
    events = []
    for i, tone in enumerate(tones):
        label: Label = "negative" if tone == "negative" else "positive"
        p = {"positive": 0.9, "negative": 0.1, "neutral": 0.55}[tone]
        at = moment + timedelta(minutes=37 * i)
        events.append(MoodEvent("bench", "week", "chat", label, p, at, None, tone == "neutral"))
    return events


def case_facts(case: WeekCase) -> WeekFacts:
    """The case as the bot sees it: its events, its MoodReport, its WeekFacts."""
    monday = NOW.replace(hour=0) - timedelta(days=6)
    current = [e for i, day in enumerate(case.days) for e in _events(i, day, monday)]
    previous = _events(0, case.previous, monday - timedelta(days=7)) if case.previous else []
    current.sort(key=lambda event: event.created_at, reverse=True)
    # The excerpts belong to the latest messages (only those are in report.latest).
    for i, excerpt in enumerate(case.excerpts):
        current[i] = MoodEvent(**{**current[i].__dict__, "excerpt": excerpt})
    report = build_report(USER, current, previous, 7, NOW, UTC)
    return week_facts(report, case.language)


# --- the checks ----------------------------------------------------------------------------

_ZH_DIGIT = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
             "八": 8, "九": 9}  # fmt: skip
_EN_NUMBER = {word: value for value, word in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty"))}  # fmt: skip
_EN_NUMBER.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
                   "eighty": 80, "ninety": 90, "hundred": 100})  # fmt: skip
# "one" is mostly "the hardest one", "one of": only counted before a word that is counted.
_EN_COUNTED = r"(?:messages?|days?|times?|points?|percent|positive|negative|neutral)"
_ZH_MEASURE = r"(?:条|次|篇|句|天|个百分点|成|%|％)"


def zh_numeral(run: str) -> int | None:
    """一 … 九十九 (and 一百) as a number; None for what is not a plain numeral."""
    if run in ("百", "一百"):
        return 100
    if "十" in run:
        tens, _, ones = run.partition("十")
        if len(tens) > 1 or len(ones) > 1:
            return None
        high = _ZH_DIGIT.get(tens, 1) if tens else 1
        return high * 10 + (_ZH_DIGIT.get(ones, 0) if ones else 0)
    if len(run) == 1:
        return _ZH_DIGIT.get(run)
    return None


def numbers_in(text: str) -> list[int]:
    """The numbers a text states: digits (a percentage's too), Chinese numerals before a
    measure word or after 百分之, English number words; "one", 一 and "a" as articles are not
    numbers (一天, "one of them")."""
    found = [round(float(n)) for n in re.findall(r"\d+(?:\.\d+)?", text)]
    for match in re.finditer(r"(百分之)?([零一二两三四五六七八九十百]+)", text):
        percent, run = match.group(1), match.group(2)
        measured = text[match.end() : match.end() + 5]
        if not percent and not re.match(_ZH_MEASURE, measured):
            continue
        value = zh_numeral(run)
        if value is None or (value == 1 and not percent and not measured.startswith("条")):
            continue
        if run in ("一", "两") and measured.startswith("天") and not percent:
            continue  # 一天/两天: "a day" far more often than a count
        found.append(value)
    for match in re.finditer(r"\b([a-z]+)\b(?:\s+(" + _EN_COUNTED[3:-1] + r"))?", text.lower()):
        word, after = match.group(1), match.group(2)
        if word in _EN_NUMBER and (word != "one" or after):
            found.append(_EN_NUMBER[word])
    return found


def allowed_numbers(facts: WeekFacts) -> set[int]:
    """Every number the week's facts hold, whatever words they are given to the model in."""
    report = facts.report
    allowed = {7, report.total, report.positive, report.negative, report.neutral}
    allowed.add(round(100 * (report.positive_share or 0.0)))
    if report.previous_positive_share is not None:
        allowed.add(round(100 * report.previous_positive_share))
    if report.trend is not None:
        allowed.add(abs(round(report.trend * 100)))
    for point in (facts.best, facts.worst):
        if point is not None:
            allowed |= {point.day.month, point.day.day, point.positive, point.negative,
                        point.neutral, point.total}  # fmt: skip
            allowed.add(round(100 * (point.positive_share or 0.0)))
    for excerpt in facts.excerpts:
        allowed.update(numbers_in(excerpt))
    return allowed


_LABELS = {
    "positive": "positive",
    "negative": "negative",
    "neutral": "neutral",
    "正面": "positive",
    "负面": "negative",
    "中性": "neutral",
}


def _count(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return _EN_NUMBER.get(word.lower()) if word.isascii() else zh_numeral(word)


def misattributed(text: str, facts: WeekFacts) -> list[str]:
    """Counts given to the wrong tone: "12 positive" when the week (or its best or hardest
    day) had no 12 positive messages; 正面 9 / 9 条正面 likewise."""
    report = facts.report
    points = [report, *(p for p in (facts.best, facts.worst) if p is not None)]
    wrong = []
    for number, label in [
        *re.findall(r"\b(\d+|[a-z]+) (positive|negative|neutral)\b", text, re.IGNORECASE),
        *re.findall(r"(\d+|[一二两三四五六七八九十]+) ?条(正面|负面|中性)", text),
        *[(n, w) for w, n in re.findall(r"(正面|负面|中性) ?(\d+)", text)],
    ]:
        value, tone = _count(number), _LABELS[label.lower()]
        if value is not None and value not in {getattr(point, tone) for point in points}:
            wrong.append(f"{number} {label}")
    return wrong


# What the summary says the week was like, against the week's share: a mostly positive week
# told "you're feeling overwhelmed", or a hard one "你这周心情非常积极", is wrong.
_LOW_WORDS = (
    "overwhelm",
    "frustrat",
    "disappoint",
    "upset",
    "unhappy",
    "sad",
    "tough",
    "difficult week",
    "hard week",
    "mostly negative",
    "mood is negative",
    "低落",
    "难过",
    "沮丧",
    "消极",
    "不太好",
    "艰难",
    "不开心",
)
_HIGH_WORDS = ("very positive", "very happy", "great week", "wonderful week", "very pleased",
               "satisfied", "mostly positive", "非常积极", "非常开心", "非常棒", "非常乐观",
               "很开心", "心情很好", "心情是积极的", "满意")  # fmt: skip


def wrong_mood(text: str, facts: WeekFacts) -> list[str]:
    """Mood words that contradict the week: low words for a week at least 60 % positive,
    high words for one at most 40 % positive (a mixed week may be called either)."""
    share = facts.report.positive_share or 0.0
    lower = text.lower()
    words = _LOW_WORDS if share >= 0.6 else _HIGH_WORDS if share <= 0.4 else ()
    return [word for word in words if word in lower]


_EN_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ZH_DAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")  # fmt: skip


def days_named(text: str) -> tuple[set[int], set[tuple[int, int]]]:
    """The weekdays (0 = Monday) and the (month, day) dates a text names."""
    lower = text.lower()
    weekdays = {i for i, name in enumerate(_EN_DAYS) if re.search(rf"\b{name}", lower)}
    weekdays |= {
        _ZH_DAY[m]
        for m in re.findall(
            r"(?:(?<![上下这本每])周|星期|礼拜)([一二三四五六日天])(?![样起直切些点下定般])", text
        )
    }
    dates = {(int(m), int(d)) for m, d in re.findall(r"\b(\d{1,2})[-/](\d{1,2})\b", text)}
    dates |= {(int(m), int(d)) for m, d in re.findall(r"(\d{1,2})月(\d{1,2})[日号]", text)}
    for i, month in enumerate(_MONTHS, start=1):
        dates |= {(i, int(d)) for d in re.findall(rf"\b{month}\s+(\d{{1,2}})", lower)}
    return weekdays, dates


# A summary of seven days that speaks of "today" (the model's favourite, 你今天心情…) or
# "yesterday" names a day the facts do not.
_NOT_THE_WEEK = re.compile(r"\btoday\b|\byesterday\b|今天|昨天|今日", re.IGNORECASE)


# Things the 0.5B model has been seen to make up about a week it only has counts of.
INVENTIONS: dict[Language, tuple[str, ...]] = {
    "en": ("feedback", "work", "job", "boss", "colleague", "coworker", "friend", "family",
           "parent", "school", "exam", "project", "party", "trip", "travel", "partner", "kids",
           "meeting", "deadline", "weather", "sleep", "exercise", "workout", "team", "class"),
    "zh": ("反馈", "工作", "上班", "老板", "同事", "朋友", "家人", "家庭", "父母", "学校",
           "考试", "项目", "聚会", "旅行", "旅游", "伴侣", "孩子", "会议", "天气", "睡眠",
           "运动", "团队", "课"),
}  # fmt: skip


def inventions_in(text: str, facts: WeekFacts, facts_text: str) -> list[str]:
    """Listed inventions the summary has and neither the facts nor the excerpts do."""
    known = " ".join([facts_text, *facts.excerpts]).lower()
    lower = text.lower()
    found = []
    for word in (*INVENTIONS["en"], *INVENTIONS["zh"]):
        english = word.isascii()
        pattern = rf"\b{word}" if english else word
        if re.search(pattern, lower) and not re.search(pattern, known):
            found.append(word)
    return found


_LIST_LINE = re.compile(r"^\s*(?:[-*•·]|\d+[.)、])\s*\S", re.MULTILINE)


def copies_facts(text: str, facts_text: str) -> bool:
    """A list, a line of the facts word for word, or a fact's "key:" as the facts have it."""
    if _LIST_LINE.search(text):
        return True
    flat = " ".join(text.split()).lower()
    for line in facts_text.splitlines():
        line = " ".join(line.strip().lstrip("-").split()).lower()
        if len(line) >= 10 and line in flat:
            return True
        key = re.split(r"[:：]", line, maxsplit=1)
        if len(key) == 2 and key[0] and (f"{key[0]}:" in flat or f"{key[0]}：" in flat):
            return True
    return False


_SENTENCE_END = re.compile(r"[。！？!?]+|\.+(?=\s|$)")
_CLOSERS = "\"'”’」』）)～~ "


def sentences_in(text: str) -> tuple[int, bool]:
    """How many sentences, and whether the last one ends with its punctuation."""
    flat = " ".join(text.split())
    ends = [m.end() for m in _SENTENCE_END.finditer(flat)]
    tail = flat[ends[-1] :] if ends else flat
    finished = not any(ch.isalnum() for ch in tail.strip(_CLOSERS))
    return len(ends) + (0 if finished else 1), finished


def right_language(text: str, language: Language) -> bool:
    if language == "en":
        return not re.search(r"[\u3400-\u9fff]", text)
    return detect_language(text) == "zh"


CHECKS = ("language", "sentences", "numbers", "mood", "days", "inventions", "no_copy")


def score(text: str, facts: WeekFacts, facts_text: str) -> dict[str, Any]:
    """Each check's verdict on one summary, and what failed it."""
    count, finished = sentences_in(text)
    extra_numbers = sorted(set(numbers_in(text)) - allowed_numbers(facts))
    weekdays, dates = days_named(text)
    known_days = [point.day for point in (facts.best, facts.worst) if point is not None]
    extra_days = sorted(weekdays - {day.weekday() for day in known_days})
    extra_dates = sorted(dates - {(day.month, day.day) for day in known_days})
    invented = inventions_in(text, facts, facts_text)
    wrong_counts = misattributed(text, facts)
    mood_words = wrong_mood(text, facts)
    other_days = [d for d in _NOT_THE_WEEK.findall(text) if not any(d in e for e in facts.excerpts)]
    verdict: dict[str, Any] = {
        "language": right_language(text, facts.language),
        "sentences": 2 <= count <= 3 and finished,
        "numbers": not extra_numbers and not wrong_counts,
        "mood": not mood_words,
        "days": not extra_days and not extra_dates and not other_days,
        "inventions": not invented,
        "no_copy": not copies_facts(text, facts_text),
    }
    verdict["all"] = all(verdict[check] for check in CHECKS)
    verdict["why"] = {"sentence_count": count, "finished": finished,
                      "extra_numbers": extra_numbers, "extra_weekdays": extra_days,
                      "extra_dates": extra_dates, "other_days": other_days,
                      "misattributed": wrong_counts, "wrong_mood": mood_words,
                      "invented": invented}  # fmt: skip
    return verdict


def shares(rows: Sequence[dict[str, Any]]) -> list[float | None]:
    return [mean([float(row["score"][check]) for row in rows]) for check in (*CHECKS, "all")]


# --- running the bot's path --------------------------------------------------------------


async def collect(
    cases: Sequence[WeekCase], samples: int, scripted: bool
) -> tuple[list[dict[str, Any]], str]:
    from benchmarks.common import (
        bench_service,
        bench_settings,
        recording_runner_factory,
        weights_of,
    )
    from engine.chat.prompts import week_request
    from engine.chat.week import write_week
    from engine.model.config import WorkerConfig
    from engine.model.worker import ModelWorker

    settings = bench_settings()
    if scripted:
        from tests.scripted import ScriptedRunner

        streams: list[Any] = []
        factory: Any = ScriptedRunner
    else:
        factory, streams = recording_runner_factory(settings)
    rows: list[dict[str, Any]] = []
    worker = ModelWorker(factory, WorkerConfig(request_timeout_s=1800.0))
    async with bench_service("week", worker, settings.chat) as service:
        for case in cases:
            facts = case_facts(case)
            facts_text = texts.week_facts_text(facts)
            request = week_request(texts.week_mood(facts), facts.language)
            for sample in range(samples):
                text, by_model = await write_week(service, facts)
                rows.append({
                    "case": case.name, "split": case.split, "language": case.language,
                    "sample": sample, "by_model": by_model, "system": request.system,
                    "examples": [turn.__dict__ for turn in request.examples],
                    "facts": request.user_text, "summary": text,
                    "tokens": len(streams[-1].generated) if streams else None,
                    "score": score(text, facts, facts_text),
                })  # fmt: skip
                mark = "ok" if rows[-1]["score"]["all"] else "FAIL"
                print(f"  {case.name}#{sample}: {mark}", file=sys.stderr, flush=True)
        weights = "scripted" if scripted else weights_of(worker.runner)
    return rows, weights


def rescore(path: Path, cases: Sequence[WeekCase]) -> tuple[list[dict[str, Any]], str]:
    """An earlier run's rows, scored by today's checks: a new check is tried on old outputs."""
    by_name = {case.name: case for case in cases}
    rows = [row for row in read_jsonl(path) if row["case"] in by_name]
    for row in rows:
        facts = case_facts(by_name[row["case"]])
        row["score"] = score(row["summary"], facts, texts.week_facts_text(facts))
    return rows, f"rescored {path.name}"


def transcript(rows: Sequence[dict[str, Any]]) -> str:
    parts = []
    for row in rows:
        verdict = row["score"]
        failed = [check for check in CHECKS if not verdict[check]]
        parts.append(
            f"## {row['case']} #{row['sample']} ({row['split']}): "
            f"{'pass' if verdict['all'] else 'FAIL ' + ', '.join(failed)}\n\n"
            f"facts:\n\n```\n{row['facts']}\n```\n\nsummary:\n\n> {row['summary']}\n\n"
            f"details: {verdict['why']}\n"
        )
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality.week", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--split", choices=("tune", "report", "all"), default="all")
    parser.add_argument("--language", choices=("zh", "en"), help="only the weeks in this one")
    parser.add_argument("--samples", type=int, default=1, help="summaries per week")
    parser.add_argument("--tag", default="week", help="name of the result files")
    parser.add_argument("--scripted", action="store_true", help="the tests' scripted model")
    parser.add_argument("--rescore", metavar="TAG",
                        help="score the summaries of an earlier run again (no model)")  # fmt: skip
    args = parser.parse_args(argv)
    cases = [case for case in CASES if args.split in ("all", case.split)
             and args.language in (None, case.language)]  # fmt: skip
    if args.rescore:
        rows, weights = rescore(RESULTS_DIR / "week" / f"{args.rescore}.jsonl", cases)
    else:
        rows, weights = asyncio.run(collect(cases, args.samples, args.scripted))
    splits = sorted({row["split"] for row in rows}, reverse=True)
    groups = {split: [row for row in rows if row["split"] == split] for split in splits}
    for language in ("zh", "en"):
        for split in splits:
            groups[f"{split} {language}"] = [
                row for row in rows if row["split"] == split and row["language"] == language
            ]
    print(f"weights {weights}; {len(cases)} weeks x {args.samples} samples")
    rows_shown = [[name, len(group), *shares(group)] for name, group in groups.items()]
    print(table(["split", "n", *CHECKS, "all"], rows_shown))
    folder = RESULTS_DIR / "week"
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / f"{args.tag}.jsonl", rows)
    (folder / f"{args.tag}.md").write_text(transcript(rows), encoding="utf-8")
    write_json(folder / f"{args.tag}-summary.json", "week", {
        "machine": describe_machine(), "args": vars(args), "weights": weights,
        "shares": {name: dict(zip((*CHECKS, "all"), shares(group), strict=True))
                   for name, group in groups.items()},
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

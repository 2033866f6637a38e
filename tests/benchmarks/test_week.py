"""benchmarks.quality.week's scoring: the checks must catch what a made-up weekly summary gets
wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.common import read_jsonl
from benchmarks.quality import week
from engine.chat import texts

UP = next(case for case in week.CASES if case.name == "en-up")
ZH = next(case for case in week.CASES if case.name == "zh-stored")


def test_the_cases_are_split_in_halves_with_both_languages() -> None:
    assert len(week.CASES) >= 16
    assert len({case.name for case in week.CASES}) == len(week.CASES)
    for split in ("tune", "report"):
        for language in ("zh", "en"):
            chosen = [c for c in week.CASES if (c.split, c.language) == (split, language)]
            assert len(chosen) >= 4
            assert any(case.excerpts for case in chosen)


def test_every_number_the_facts_give_the_model_is_allowed() -> None:
    for case in week.CASES:
        facts = week.case_facts(case)
        given = texts.week_facts_text(facts)
        assert set(week.numbers_in(given)) <= week.allowed_numbers(facts), case.name


def test_a_faithful_english_summary_passes() -> None:
    facts = week.case_facts(UP)
    given = texts.week_facts_text(facts)
    assert (facts.report.total, facts.report.positive) == (12, 9)
    assert facts.best is not None
    assert facts.best.day.strftime("%A") == "Sunday"
    summary = ("Nine of your 12 messages this week were positive, and Sunday was your best "
               "day. That is a real lift from the week before. Keep it going!")  # fmt: skip
    verdict = week.score(summary, facts, given)
    assert verdict["all"], verdict["why"]


def test_an_invented_number_a_day_and_an_event_are_caught() -> None:
    facts = week.case_facts(UP)
    given = texts.week_facts_text(facts)
    verdict = week.score(
        "You sent 14 messages and most were happy. Your boss gave you great feedback on "
        "Wednesday. Well done!", facts, given)  # fmt: skip
    assert not verdict["numbers"]
    assert verdict["why"]["extra_numbers"] == [14]
    assert not verdict["days"]
    assert verdict["why"]["extra_weekdays"] == [2]
    assert verdict["why"]["invented"] == ["feedback", "boss"]
    assert not verdict["all"]
    # A percentage the facts do not have, as digits or as words.
    assert week.score("About 90% were positive. Nice week.", facts, given)["why"][
        "extra_numbers"] == [90]  # fmt: skip
    assert not week.score("Nineteen messages! Nice week.", facts, given)["numbers"]


def test_chinese_numerals_and_dates_are_read() -> None:
    facts = week.case_facts(ZH)
    given = texts.week_facts_text(facts)
    assert facts.report.total == 5
    assert week.numbers_in("这周你一共发了六条消息，有一天特别开心，百分之五十是正面。") == [6, 50]
    assert week.score("这周你发了五条消息，百分之六十是正面。继续加油！", facts, given)["numbers"]
    verdict = week.score("这周你发了八条消息，星期二最开心。11月24日也不错。", facts, given)
    assert verdict["why"]["extra_numbers"] == [8, 24]
    assert verdict["why"]["extra_weekdays"] == [1]
    assert verdict["why"]["extra_dates"] == [(11, 24)]
    # 朋友 is not in the facts, 爬山 is in an excerpt, so only the friends are invented.
    assert week.score("你和朋友去爬山了。真开心！", facts, given)["why"]["invented"] == ["朋友"]


def test_wrong_language_lists_copies_and_length_are_caught() -> None:
    zh, en = week.case_facts(ZH), week.case_facts(UP)
    zh_given, en_given = texts.week_facts_text(zh), texts.week_facts_text(en)
    assert not week.score("You had a good week. Keep going!", zh, zh_given)["language"]
    assert not week.score("Good week. 你做得很好，继续加油吧！", en, en_given)["language"]
    assert week.score("你这周过得不错。继续加油！", zh, zh_given)["language"]
    assert not week.score("- 15 messages\n- positive share 73%", en, en_given)["no_copy"]
    assert not week.score("Your best day: Sunday 11-29. Nice.", en, en_given)["no_copy"]
    assert not week.score("A good week.", en, en_given)["sentences"]  # one sentence
    assert not week.score("A good week. You smiled a lot and", en, en_given)["sentences"]
    assert week.sentences_in("很好。继续加油！😊") == (2, True)


def test_the_bench_runs_on_the_scripted_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(week, "RESULTS_DIR", tmp_path)
    assert week.main(["--split", "tune", "--scripted", "--tag", "t"]) == 0
    out = capsys.readouterr().out
    assert "| tune zh" in out
    assert "report" not in out
    rows = read_jsonl(tmp_path / "week" / "t.jsonl")
    assert len(rows) == sum(case.split == "tune" for case in week.CASES)
    assert {row["split"] for row in rows} == {"tune"}
    assert all(row["by_model"] for row in rows)
    by_name = {case.name: case for case in week.CASES}
    for row in rows:  # the bot's path: our opening, then the (scripted) model's sentence
        facts = week.case_facts(by_name[row["case"]])
        assert row["summary"].startswith(texts.week_opening(facts))
        assert row["facts"] == texts.week_mood(facts)
    assert "## zh-up #0 (tune): " in (tmp_path / "week" / "t.md").read_text(encoding="utf-8")


def test_wrong_counts_a_wrong_mood_and_today_are_caught() -> None:
    facts = week.case_facts(UP)  # 9 of 12 positive, 79 %
    given = texts.week_facts_text(facts)
    verdict = week.score("You had 12 positive messages. Great!", facts, given)
    assert verdict["why"]["misattributed"] == ["12 positive"]  # 12 is the total
    assert week.score("You had 9 positive messages. Great!", facts, given)["numbers"]
    verdict = week.score("You're feeling overwhelmed. Take care.", facts, given)
    assert verdict["why"]["wrong_mood"] == ["overwhelm"]
    hard = week.case_facts(next(case for case in week.CASES if case.name == "zh-hard"))
    verdict = week.score("你今天心情非常积极。继续加油！", hard, texts.week_facts_text(hard))
    assert verdict["why"]["wrong_mood"] == ["非常积极"]
    assert verdict["why"]["other_days"] == ["今天"]
    assert not verdict["days"]

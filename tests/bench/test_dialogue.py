"""bench.dialogue's metrics, summaries and transcripts, on hand-written rows (no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import dialogue
from bench.dialogues import DIALOGUES, dialogues
from chat.prompts import detect_language


def test_the_scripts_cover_both_languages_splits_and_moods() -> None:
    assert len(DIALOGUES) >= 10
    assert all(len(d.turns) >= 6 for d in DIALOGUES)
    assert len({d.name for d in DIALOGUES}) == len(DIALOGUES)
    for split in ("tune", "report", "holdout"):
        chosen = dialogues(split)
        assert {d.language for d in chosen} == {"zh", "en"}
        moods = {mood for d in chosen for _, mood in d.turns}
        assert moods == {"positive", "negative", "neutral"}
    assert len(dialogues("all")) == len(DIALOGUES)
    assert len(dialogues("holdout")) >= 4
    assert dialogues("report,holdout") == [d for d in DIALOGUES if d.split != "tune"]
    for d in DIALOGUES:
        assert all(detect_language(text) == d.language for text, _ in d.turns), d.name
        assert len({mood for _, mood in d.turns}) >= 2, d.name  # the mood changes in every chat
    with pytest.raises(ValueError, match="unknown split"):
        dialogues("train")
    with pytest.raises(ValueError, match="unknown split"):
        dialogues("tune,train")


def test_echo_counts_the_users_4grams_found_in_the_reply() -> None:
    message = "复查结果出来了，是良性的！"  # 11 characters: 8 4-grams
    assert dialogue.echo_share("复查结果出来了，是良性的！你已经努力了。", message) == 1.0
    assert dialogue.echo_share("太好了，结果是良性的，放心了。", message) == pytest.approx(1 / 8)
    assert dialogue.echo_share("anything", "好的") == 0.0  # no 4-gram in the message
    # Case, spaces and punctuation do not matter.
    assert dialogue.echo_share("i LOST my wallet!!", "I lost my wallet.") == 1.0


def test_copy_counts_the_replys_4grams_found_in_the_sources() -> None:
    earlier = ["你已经很努力了，别太苛责自己。"]
    assert dialogue.copy_share("你已经很努力了，别太苛责自己。", earlier) == 1.0
    # 11 letters, 8 4-grams; "别太苛责", "太苛责自", "苛责自己" are copied.
    share = dialogue.copy_share("早点休息吧，别太苛责自己。", earlier)
    assert share == pytest.approx(3 / 8)
    assert dialogue.copy_share("new words entirely", earlier) == 0.0
    assert dialogue.copy_share("", earlier) == 0.0


@pytest.mark.parametrize(
    ("reply", "message", "as_user"),
    [
        (
            "I can't believe I lost my wallet. I feel so sorry.",
            "I lost my wallet on the bus.",
            True,
        ),
        (
            "Oh no, losing your wallet is awful. Did you call the bus company?",
            "I lost my wallet on the bus.",
            False,
        ),
        ("The bus company might have it.", "I lost my wallet on the bus.", False),  # no "I/my"
        ("我家猫咪今天打完疫苗了，好乖。", "我家猫咪今天打完疫苗了。", True),
        ("你家猫咪打完疫苗要多休息哦。", "我家猫咪今天打完疫苗了。", False),
        ("We were together for four years, it's hard.", "We were together for four years.", True),
    ],
)
def test_speaks_as_user(reply: str, message: str, as_user: bool) -> None:
    assert dialogue.speaks_as_user(reply, message) is as_user


@pytest.mark.parametrize(
    ("reply", "language", "label", "fits"),
    [
        ("I'm so sorry, that sounds really hard.", "en", "negative", True),
        ("Congratulations, that's great news!", "en", "negative", False),  # celebrates
        ("The bus leaves at nine.", "en", "negative", False),  # no comfort at all
        ("Don't worry, you'll be glad and have fun!", "en", "negative", False),  # more joy
        ("Great, don't worry!", "en", "positive", True),  # as much joy as comfort
        ("That's wonderful, I'm so happy for you!", "en", "positive", True),
        ("I'm sorry to hear that, but great.", "en", "positive", False),  # pities
        ("抱抱你，别太担心，慢慢来。", "zh", "negative", True),
        ("恭喜你！太棒了！", "zh", "negative", False),
        ("太棒了，真为你开心！", "zh", "positive", True),
        ("听到这个消息我很难过。", "zh", "positive", False),
        ("Sure, try a warm bath and an early night.", "en", "neutral", True),
        ("Congrats!", "en", "neutral", False),
    ],
)
def test_tone_fits_the_label(reply: str, language: str, label: str, fits: bool) -> None:
    assert dialogue.tone_fits(reply, language, label) is fits


def test_a_message_shown_as_neutral_is_judged_friendly_not_by_its_label() -> None:
    rows = flagged([
        row(1, "What time is it?", "It's about nine, time for a cup of tea.", label="positive",
            tone="neutral", p_positive=0.55),
        row(2, "Any tips for tonight?", "Congrats, an early night is great!", label="positive",
            tone="neutral"),
        row(3, "I passed!", "Congrats, that's great!", label="positive"),  # saved before tones
    ])  # fmt: skip
    assert [r["flags"]["tone"] for r in rows] == [True, False, True]
    text = dialogue.transcripts(rows, "a title")
    assert "**1. user** (negative; labelled positive 0.55, shown neutral): What time" in text
    assert "**3. user** (negative; labelled positive): I passed!" in text


def test_distinct_2_over_words_or_characters() -> None:
    assert dialogue.distinct_n(["a b c", "a b d"]) == pytest.approx(3 / 4)  # ab, bc, ab, bd
    assert dialogue.distinct_n(["好好好"]) == pytest.approx(1 / 2)  # 好好 twice
    assert dialogue.distinct_n(["x"]) is None


def row(turn: int, message: str, reply: str | None, label: str = "negative",
        **extra: Any) -> dict[str, Any]:  # fmt: skip
    base = {"chat": "c", "split": "tune", "language": detect_language(message), "turn": turn,
            "message": message, "reply": reply, "label": label, "mood": "negative",
            "examples": ["被当众批评真的很难受。你已经很努力了。"], "finished": True, "tokens": 10,
            "label_s": 0.1, "first_token_s": 0.3, "total_s": 1.5}  # fmt: skip
    return {**base, **extra}


def flagged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    dialogue.add_flags(rows)
    return rows


def test_quality_and_speed_of_a_chat() -> None:
    rows = flagged([
        row(1, "今天被老板骂了，好难过。", "抱抱你，被骂真的很难受，别太往心里去。"),
        row(2, "加班到很晚，好累。", "加班到很晚，好累。你已经很努力了。", label_s=0.12,
            first_token_s=0.9),  # echo, and half of it is the example
        row(3, "明天还要早起。", "抱抱你，被骂真的很难受，别太往心里去。", label_s=0.2,
            first_token_s=0.6),  # a copy of reply 1
        row(4, "算了不说了。", None, failure="timeout", label_s=None, first_token_s=None,
            total_s=None),
    ])  # fmt: skip
    assert [r["flags"]["echo"] for r in rows[:3]] == [False, True, False]
    assert [r["flags"]["copy"] for r in rows[:3]] == [False, False, True]
    q = dialogue.quality(rows)
    assert q["n"] == 3
    assert q["failed"] == 1
    assert q["echo"] == pytest.approx(1 / 3)
    assert q["copy"] == pytest.approx(1 / 3)
    assert q["language"] == 1.0
    assert q["tokens"] == 10
    s = dialogue.speed(rows)
    assert s["first_token_s_first_p50"] == pytest.approx(0.3)
    assert s["first_token_s_later_p50"] == pytest.approx(0.75)
    assert s["first_token_s_ratio"] == pytest.approx(2.5)
    assert s["label_s_ratio"] == pytest.approx(1.6)
    # 3 replies of 10 tokens: 27 after the first ones, in 1.2 + 0.6 + 0.9 seconds.
    assert s["decode_tps"] == pytest.approx(10.0)


def test_transcripts_and_compare(tmp_path: Path) -> None:
    import json

    rows = flagged([row(1, "I lost my wallet.", "I lost my wallet. So sad.", p_positive=0.2,
                        prompt_tokens=90, cached_tokens=60),
                    row(2, "It had my ID.", None, failure="busy")])  # fmt: skip
    text = dialogue.transcripts(rows, "a title")
    assert "## c (en, tune)" in text
    assert "**1. user** (negative; labelled negative 0.20): I lost my wallet." in text
    assert "**echo, as_user**" in text
    assert "**failed: busy**" in text
    results = dialogue.summary(rows)
    assert set(results) == {"all", "tune-en", "tune"}
    folder = tmp_path / "run-a"
    folder.mkdir()
    for r in rows:  # a run saved with other flags: compare judges it again, by today's rules
        r.pop("flags", None)
    (folder / "results.json").write_text(json.dumps({"rows": rows, "machine": {}}))
    printed = dialogue.compare([str(folder)], "tune").splitlines()
    assert printed[2].startswith("| run-a | 1 | 1.00 | 0.00 |")  # n, echo (1 of 1), copy


async def test_a_run_through_the_service_records_its_layout_and_reads_history_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import bench.common
    from tests.scripted import ScriptedRunner

    monkeypatch.chdir(tmp_path)  # no .env from the repo
    for key, value in {"REPLY_TONE_AT": "note", "REPLY_EXAMPLES": "mixed",
                       "HISTORY_STEP": "2"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    runner = ScriptedRunner()
    monkeypatch.setattr(bench.common, "runner_factory", lambda settings: lambda: runner)
    chat = DIALOGUES[0]
    rows, config = await dialogue.run_dialogues([chat], max_new_tokens=16, seed=0)
    assert (config["reply_tone_at"], config["reply_examples"], config["history_step"]) == (
        "note",
        "mixed",
        2,
    )
    assert [r["turn"] for r in rows] == list(range(1, len(chat.turns) + 1))
    assert all(r["reply"] for r in rows)
    # Each later message's prompt holds the exchanges before it, read back from the store.
    last = runner.reply_calls[-1]
    assert sum(turn.role == "assistant" for turn in last.history) >= 1
    assert last.note  # the tone went into the note, not the system prompt

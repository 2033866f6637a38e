"""benchmarks.quality.dialogue's metrics, summaries and transcripts, on hand-written rows (no
model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.quality import dialogue
from benchmarks.quality.dialogues import DIALOGUES, dialogues
from engine.chat.prompts import detect_language


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


# --- the goal measures: each detector catches what it is for and nothing else -------------


@pytest.mark.parametrize(
    ("reply", "message", "echo"),
    [
        # Made mostly of the user's words, in the first person (the example).
        ("室友晚上给我煮面确实挺暖心的，我也觉得很幸福。", "室友晚上给我煮了面，挺暖心的。", True),
        # Restates the whole message before a short addition.
        ("Honestly you just want someone to listen. Okay.",
         "Honestly I just want someone to listen.", True),
        ("I just want someone to listen, that's all I need.",
         "Honestly I just want someone to listen.", True),
        # Only speaks as the user: "my sister never does" is theirs, the rest is new.
        ("I hear you. My sister never does either, and it's lonely. I'm here, go ahead, "
         "I'm listening.",
         "Honestly I just want someone to listen, my sister never does and my mom is sick.",
         True),
        ("I'm here, and I'm listening. Tell me whatever is on your mind, no advice unless you "
         "ask for it.", "Honestly I just want someone to listen.", False),
        ("有人照顾的感觉真好，这碗面一定特别香。", "室友晚上给我煮了面，挺暖心的。", False),
        ("加班到这么晚真的太辛苦了，周末也不能好好休息，身体会吃不消的。",
         "最近工作压力好大，每天加班到十一点，周末也要开会。", False),
    ],
)  # fmt: skip
def test_echo_is_restating_or_mostly_the_users_words_or_speaking_as_the_user(
    reply: str, message: str, echo: bool
) -> None:
    rows = flagged([row(1, message, reply)])
    assert rows[0]["flags"]["echo"] is echo


def test_mostly_user_counts_the_replys_4grams_from_the_message() -> None:
    message = "我们约了周六一起去看那部电影，我已经期待了好久，连票都提前买好了。"
    # Every 4-gram of the reply is the user's, though it repeats only part of the message.
    assert dialogue.mostly_user_share("约了周六一起去看那部电影", message) == 1.0
    assert dialogue.echo_share("约了周六一起去看那部电影", message) < dialogue.ECHO_SHARE
    assert dialogue.mostly_user_share("周末看电影很放松，记得带上爆米花哦。", message) == 0.0
    assert dialogue.mostly_user_share("好", message) == 0.0


@pytest.mark.parametrize(
    ("reply", "sources", "span"),
    [
        # The positive example's closing sentence, copied into a reply to bad news.
        ("听起来你最近很累。好好休息，为自己骄傲吧！",
         ["太厉害了，恭喜你！这份成就感一定很棒。好好休息，为自己骄傲吧！"], "休息为自己骄傲"),
        ("抱抱你，别太苛责自己，会好起来的。", ["你已经很努力了，别太苛责自己。"], None),  # 6
        ("你已经很努力了呀。", ["你已经很努力了，别太苛责自己。"], "你已经很努力了"),  # 7
        ("I'm so happy for you, enjoy it!", ["That's wonderful! I'm so happy for you."],
         "i'm so happy for you"),  # 5 words
        ("So happy for you!", ["That's wonderful! I'm so happy for you."], None),  # 4 words
        ("Take care of yourself tonight.", ["Please take care of yourself, okay?"], None),
        # Letters and digits do not make a Chinese span; 7 characters across a comma do.
        ("ok 2024年我很好", ["2024年我很好"], None),
        ("别急，慢慢来就好呀", ["别急慢慢来就好"], "别急慢慢来就好"),
    ],
)  # fmt: skip
def test_canned_spans(reply: str, sources: list[str], span: str | None) -> None:
    assert dialogue.canned_span(reply, sources) == span


def test_canned_is_judged_against_earlier_replies_of_the_chat_and_the_example_answers() -> None:
    example = "太厉害了，恭喜你！这份成就感一定很棒。好好休息，为自己骄傲吧！"
    rows = flagged([
        row(1, "今天好累。", "辛苦了，早点休息，明天又是新的一天。", example_answers=[example]),
        row(2, "还是睡不着。", "辛苦了，早点休息，明天又是新的一天。", example_answers=[example]),
        row(3, "考完了！", "这份成就感一定很棒，为你高兴！", label="positive",
            example_answers=[example]),
        # The example's question is not an answer: saying it is not copying the example.
        row(4, "我刚到家。", "我刚到家，在想晚饭做点什么呢。", example_answers=[example],
            examples=["我刚到家，在想晚饭做点什么。", example]),
    ])  # fmt: skip
    flags = [r["flags"] for r in rows]
    assert [f["canned_chat"] for f in flags] == [False, True, False, False]
    assert [f["canned_example"] for f in flags] == [False, False, True, False]
    assert [f["canned"] for f in flags] == [False, True, True, False]
    assert flags[2]["why"]["canned_example"] in "这份成就感一定很棒"
    # Another chat's replies do not count.
    other = flagged([row(1, "今天好累。", "辛苦了，早点休息，明天又是新的一天。"),
                     {**row(1, "今天好累。", "辛苦了，早点休息，明天又是新的一天。"),
                      "chat": "d"}])  # fmt: skip
    assert [r["flags"]["canned"] for r in other] == [False, False]


@pytest.mark.parametrize(
    "reply",
    [
        "I'm sorry, but I can't assist with that.",
        "I'm sorry, but I can't help you with that.",
        "I can’t help with that request.",
        "Sorry, but I cannot provide that kind of support.",
        "I'm not able to help with this, please talk to a professional.",
        "I am unable to assist with that.",
        "I'm sorry, but I won't be able to help.",
        "抱歉，我无法帮助你。",
        "对不起，但我不能回答这个问题。",
        "我无法提供帮助，请联系专业人士。",
        "我不能帮你做这件事。",
        "对不起，我不能这样做。",
    ],
)
def test_refusal_catches_declining_in_both_languages(reply: str) -> None:
    assert dialogue.refusal(reply) is not None
    assert flagged([row(1, "Honestly I just want someone to listen.", reply)])[0]["flags"][
        "refusal"
    ]


@pytest.mark.parametrize(
    "reply",
    [
        "I can't wait to hear how it goes!",
        "I can't help but smile reading this.",
        "I can't help thinking about how brave you were.",
        "I can't imagine how stressful that deadline must be.",
        "Sorry, I can't believe your laptop crashed tonight of all nights.",
        "If I can help with anything, I'm here. I'm listening.",
        "You can't help feeling tired after a week like that.",
        "我无法想象你有多累，抱抱你。",
        "我不能替你做决定，但我会一直听你说。",
        "抱歉让你久等了，我在听。",
        "我能帮你理一理思路吗？",
    ],
)
def test_refusal_leaves_ordinary_replies_alone(reply: str) -> None:
    assert dialogue.refusal(reply) is None


@pytest.mark.parametrize(
    ("reply", "language", "mood", "wrong"),
    [
        ("Congratulations! That's great news.", "en", "negative", True),  # cheers bad news
        ("I'm so happy for you!", "en", "negative", True),
        ("恭喜你！太棒了！", "zh", "negative", True),
        ("I'm sorry to hear that. That sounds exhausting.", "en", "negative", False),
        ("抱抱你，这几天真的辛苦了。", "zh", "negative", False),
        ("I'm sorry to hear that, but well done.", "en", "positive", True),  # pities good news
        ("听到这个消息我很难过。", "zh", "positive", True),
        ("That's wonderful, congratulations!", "en", "positive", False),
        ("太好了，真为你高兴！", "zh", "positive", False),
        ("Congrats!", "en", "neutral", False),  # neither a bad nor a good event
    ],
)
def test_wrong_tone_is_cheering_bad_news_or_pitying_good_news(
    reply: str, language: str, mood: str, wrong: bool
) -> None:
    assert bool(dialogue.wrong_tone(reply, language, mood)) is wrong
    message = "I got the job!" if language == "en" else "我拿到驾照了！"
    flags = flagged([row(1, message, reply, mood=mood)])[0]["flags"]
    assert flags["wrong_tone"] is wrong  # by the writer's mood, whatever the label


def test_the_goal_table_names_the_goals_a_group_misses() -> None:
    good = flagged([row(1, "今天好累。", "辛苦了，早点休息吧。")])
    bad = flagged([row(1, "I failed again.", "I'm sorry, but I can't assist with that.")])
    assert dialogue.meets(dialogue.quality(good), dialogue.GOALS) == []
    assert dialogue.meets(dialogue.quality(bad), dialogue.GOALS) == ["refusal"]
    assert dialogue.meets(dialogue.quality(bad), dialogue.LIGHT_GOALS) == ["refusal"]
    text = dialogue.goal_table(
        {
            "good": {**dialogue.quality(good), **dialogue.speed(good)},
            "bad": {**dialogue.quality(bad), **dialogue.speed(bad)},
        }
    )
    lines = text.splitlines()
    assert cells(lines[2])[:3] == ["good", "1", "0.00 (0)"]
    assert "all" in cells(lines[2])
    assert "missed refusal" in lines[3]


def test_interleaved_alternates_the_languages() -> None:
    chats = dialogues("report")
    names = [c.name for c in dialogue.interleaved(chats)]
    assert sorted(names) == sorted(c.name for c in chats)
    assert [n[:2] for n in names[:4]] == ["zh", "en", "zh", "en"]


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


def cells(line: str) -> list[str]:
    """The cells of a printed table's row."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


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
    assert "**restate, mostly_user, as_user**" in text
    assert "**failed: busy**" in text
    results = dialogue.summary(rows)
    assert set(results) == {"all", "tune-en", "tune"}
    folder = tmp_path / "run-a"
    folder.mkdir()
    for r in rows:  # a run saved with other flags: compare judges it again, by today's rules
        r.pop("flags", None)
    (folder / "results.json").write_text(json.dumps({"rows": rows, "machine": {}}))
    printed = dialogue.compare([str(folder)], "tune").splitlines()
    assert cells(printed[2])[:4] == ["run-a", "1", "1.00", "0.00"]  # n, echo (1 of 1), canned
    goals = dialogue.compare_goals([str(folder)], ["tune", "all"]).splitlines()
    assert cells(goals[2])[:5] == ["run-a tune", "1", "1.00 (1)", "0.00 (0)", "0.00 (0)"]
    assert "missed echo" in goals[2]
    assert goals[-1].startswith("| goal ")


async def test_a_run_through_the_service_records_its_layout_and_reads_history_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import benchmarks.common
    from tests.scripted import ScriptedRunner

    monkeypatch.chdir(tmp_path)  # no .env from the repo
    for key, value in {"REPLY_TONE_AT": "note", "REPLY_EXAMPLES": "mixed",
                       "HISTORY_STEP": "2"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    runner = ScriptedRunner()
    monkeypatch.setattr(benchmarks.common, "runner_factory", lambda settings: lambda: runner)
    chat = DIALOGUES[0]
    saved: list[int] = []
    rows, config = await dialogue.run_dialogues(
        [chat], max_new_tokens=16, seed=0, after_chat=lambda rows, _: saved.append(len(rows))
    )
    assert saved == [len(chat.turns)]  # the run so far is handed over after each chat
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

"""The prompt texts: language detection, history fitting, persona/tone/example selection."""

from __future__ import annotations

import pytest

from engine import prompts
from engine.prompts import (
    EXAMPLES,
    PERSONA,
    TONES,
    detect_language,
    fit_history,
    reply_examples,
    reply_system_prompt,
)
from engine.types import Turn


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("今天天气很好，我很开心。", "zh"),
        ("我", "zh"),
        ("I failed my driving test again.", "en"),
        ("hello", "en"),
        ("我今天很开心, so happy", "zh"),  # mixed, 5 of 12 letters are CJK
        ("我今天终于 finished my thesis", "zh"),  # 5 of 21 letters are CJK
        ("今天 very happy", "en"),  # 2 of 11 letters: under the 20 % share
        ("I finally visited 北京 with my whole family this summer", "en"),  # a name in Chinese
        ("😀🎉👍", "en"),  # emoji only: no letters, no CJK
        ("😭😭😭 好", "zh"),
        ("", "en"),
        ("12345 !!!", "en"),
        ("！？。，", "en"),  # CJK punctuation is not CJK text
        ("２０２４", "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_detect_language_threshold_is_a_fifth() -> None:
    assert detect_language("中" + "a" * 4) == "zh"  # exactly 20 %
    assert detect_language("中" + "a" * 5) == "en"  # below


def cost(text: str) -> int:
    return len(text)  # one "token" per character (+5 per turn in fit_history)


def turns(*contents: str) -> list[Turn]:
    roles = ("user", "assistant")
    return [Turn(roles[i % 2], content) for i, content in enumerate(contents)]  # type: ignore[arg-type]


def test_fit_history_keeps_everything_within_budget() -> None:
    history = turns("u1", "a1", "u2", "a2")
    assert fit_history(history, cost, budget=4 * 7) == tuple(history)


def test_fit_history_keeps_the_newest_and_starts_on_a_user_turn() -> None:
    history = turns("u1" * 10, "a1", "u2", "a2")  # costs 25, 7, 7, 7
    # 21 fits a2, u2, a1 but not u1; then a1 is dropped so that it starts on a user turn.
    assert fit_history(history, cost, budget=21) == (Turn("user", "u2"), Turn("assistant", "a2"))
    assert fit_history(history, cost, budget=14) == (Turn("user", "u2"), Turn("assistant", "a2"))
    # Only the last assistant turn fits: an exchange without its question is dropped.
    assert fit_history(history, cost, budget=13) == ()


def test_fit_history_never_skips_a_turn_to_keep_older_ones() -> None:
    history = turns("u1", "a1", "u2", "x" * 100, "u3", "a3")
    kept = fit_history(history, cost, budget=40)
    assert kept == (Turn("user", "u3"), Turn("assistant", "a3"))


def test_fit_history_edge_cases() -> None:
    assert fit_history([], cost, budget=100) == ()
    assert fit_history(turns("u1", "a1"), cost, budget=0) == ()
    assert fit_history(turns("u1", "a1"), cost, budget=13) == ()  # 14 needed
    # History that starts with an assistant turn (e.g. after a trim in the store).
    history = [Turn("assistant", "a0"), *turns("u1", "a1")]
    assert fit_history(history, cost, budget=1000) == tuple(history[1:])


def test_fit_history_uses_the_given_token_counter() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return 1

    assert len(fit_history(turns("u1", "a1", "u2", "a2"), counting, budget=12)) == 2
    assert calls == ["a2", "u2", "a1"]  # newest first, and it stops at the first misfit


@pytest.mark.parametrize("label", ["positive", "negative"])
@pytest.mark.parametrize(("text", "language"), [("今天好开心", "zh"), ("I got the job!", "en")])
def test_reply_system_prompt_and_examples_pick_language_and_label(
    label: str, text: str, language: str
) -> None:
    system = reply_system_prompt(label, text)  # type: ignore[arg-type]
    assert system == f"{PERSONA[language]}\n{TONES[language][label]}"  # type: ignore[index]
    other = "en" if language == "zh" else "zh"
    assert PERSONA[other] not in system  # type: ignore[index]
    question, answer = EXAMPLES[language][label]  # type: ignore[index]
    assert reply_examples(label, text) == (  # type: ignore[arg-type]
        Turn("user", question),
        Turn("assistant", answer),
    )


def test_tones_and_examples_differ_by_label() -> None:
    for language in ("zh", "en"):
        assert TONES[language]["positive"] != TONES[language]["negative"]  # type: ignore[index]
        assert EXAMPLES[language]["positive"] != EXAMPLES[language]["negative"]  # type: ignore[index]
        for label in ("positive", "negative"):
            question, answer = EXAMPLES[language][label]  # type: ignore[index]
            assert detect_language(question) == language
            assert detect_language(answer) == language
        assert detect_language(PERSONA[language]) == language  # type: ignore[index]


def test_analyst_prompt_treats_the_message_as_text() -> None:
    # The label words must appear in the analyst instruction, and the markers must
    # enclose the message so that an instruction inside it reads as content.
    assert prompts.POSITIVE_WORD in prompts.ANALYST_SYSTEM
    assert prompts.NEGATIVE_WORD in prompts.ANALYST_SYSTEM
    assert prompts.ANALYST_USER_HEAD.endswith("<<<\n")
    assert prompts.ANALYST_USER_TAIL.startswith("\n>>>")

"""The reply prompt texts: language detection, persona/tone/example selection."""

from __future__ import annotations

import pytest

from chat.prompts import (
    EXAMPLES,
    PERSONA,
    TONES,
    Language,
    detect_language,
    reply_examples,
    reply_system_prompt,
)
from core.types import Label, Turn


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


@pytest.mark.parametrize("label", ["positive", "negative"])
@pytest.mark.parametrize(("text", "language"), [("今天好开心", "zh"), ("I got the job!", "en")])
def test_reply_system_prompt_and_examples_pick_language_and_label(
    label: Label, text: str, language: Language
) -> None:
    system = reply_system_prompt(label, text)
    assert system == f"{PERSONA[language]}\n{TONES[language][label]}"
    other: Language = "en" if language == "zh" else "zh"
    assert PERSONA[other] not in system
    question, answer = EXAMPLES[language][label]
    assert reply_examples(label, text) == (
        Turn("user", question),
        Turn("assistant", answer),
    )


def test_tones_and_examples_differ_by_label() -> None:
    languages: tuple[Language, ...] = ("zh", "en")
    labels: tuple[Label, ...] = ("positive", "negative")
    for language in languages:
        assert TONES[language]["positive"] != TONES[language]["negative"]
        assert EXAMPLES[language]["positive"] != EXAMPLES[language]["negative"]
        for label in labels:
            question, answer = EXAMPLES[language][label]
            assert detect_language(question) == language
            assert detect_language(answer) == language
        assert detect_language(PERSONA[language]) == language

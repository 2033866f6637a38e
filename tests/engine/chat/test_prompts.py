"""The reply prompt texts: language detection, persona/tone/example selection."""

from __future__ import annotations

import pytest

from engine.chat.prompts import (
    EXAMPLES,
    FIRST_LAYOUT,
    PERSONA,
    TONES,
    Language,
    ReplyLayout,
    detect_language,
    reply_examples,
    reply_request,
    reply_system_prompt,
)
from engine.types import GenerationParams, Tone, Turn


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


@pytest.mark.parametrize("tone", ["positive", "negative", "neutral"])
@pytest.mark.parametrize(("text", "language"), [("今天好开心", "zh"), ("I got the job!", "en")])
def test_reply_system_prompt_and_examples_pick_language_and_tone(
    tone: Tone, text: str, language: Language
) -> None:
    system = reply_system_prompt(tone, text, FIRST_LAYOUT)
    assert system == f"{PERSONA[language]}\n{TONES[language][tone]}"
    other: Language = "en" if language == "zh" else "zh"
    assert PERSONA[other] not in system
    question, answer = EXAMPLES[language][tone]
    assert reply_examples(tone, text, FIRST_LAYOUT) == (
        Turn("user", question),
        Turn("assistant", answer),
    )


def test_tones_and_examples_differ_by_tone() -> None:
    languages: tuple[Language, ...] = ("zh", "en")
    tones: tuple[Tone, ...] = ("positive", "negative", "neutral")
    for language in languages:
        assert len({TONES[language][tone] for tone in tones}) == 3
        assert len({EXAMPLES[language][tone] for tone in tones}) == 3
        for tone in tones:
            question, answer = EXAMPLES[language][tone]
            assert detect_language(question) == language
            assert detect_language(answer) == language
        assert detect_language(PERSONA[language]) == language


def test_example_answers_show_a_reply_that_neither_restates_nor_has_a_sentence_to_reuse() -> None:
    """What the model imitates (benchmarks.quality.dialogue's measures, on the prompt itself): an
    example answer does not restate its question nor speak as its writer, and shares no canned span
    (7 Chinese characters, 5 English words) with another example answer, so a copied phrase
    in a reply points at one example, not at wording the prompt teaches everywhere."""
    from benchmarks.quality import dialogue

    for language, examples in EXAMPLES.items():
        answers = [answer for _, answer in examples.values()]
        for tone, (question, answer) in examples.items():
            assert dialogue.echo_share(answer, question) < dialogue.ECHO_SHARE, (language, tone)
            assert dialogue.mostly_user_share(answer, question) < dialogue.MOSTLY_USER_SHARE
            assert not dialogue.speaks_as_user(answer, question), (language, tone)
            assert dialogue.refusal(answer) is None
            others = [other for other in answers if other != answer]
            assert dialogue.canned_span(answer, others) is None, (language, tone)
            assert dialogue.canned_span(answer, [PERSONA[language]]) is None, (language, tone)
        # The tones' examples answer in their tone: no cheering of the bad news, no pity for
        # the good news.
        assert not dialogue.wrong_tone(examples["negative"][1], language, "negative")
        assert not dialogue.wrong_tone(examples["positive"][1], language, "positive")
        assert dialogue.tone_fits(examples["negative"][1], language, "negative"), language
        assert dialogue.tone_fits(examples["positive"][1], language, "positive"), language


def test_the_persona_is_a_friend_not_an_assistant() -> None:
    """On the 0.5B model an "assistant" is what answered "Honestly I just want someone to
    listen." with "I'm sorry, but I can't help you with that." (benchmarks.quality.dialogue)."""
    for persona in PERSONA.values():
        assert "assistant" not in persona.lower()
        assert "助手" not in persona
        assert dialogue_refusal(persona) is None


def dialogue_refusal(text: str) -> str | None:
    from benchmarks.quality.dialogue import refusal

    return refusal(text)


NOTE = ReplyLayout()  # the default: the tone in a note, one example per tone


def test_the_note_layout_puts_the_tone_below_the_history() -> None:
    history = (Turn("user", "我丢了钱包。", "negative"), Turn("assistant", "别急，先挂失银行卡。"),
               Turn("user", "找到了！", "positive"), Turn("assistant", "太好了！"),
               Turn("user", "几点了？", "neutral"), Turn("assistant", "快九点了。"))  # fmt: skip
    request = reply_request("negative", "可是身份证还没找到。", history, GenerationParams(), NOTE)
    assert request.system == PERSONA["zh"]  # the same for every tone
    assert request.note == TONES["zh"]["negative"]
    # Every earlier message is introduced by the tone it was answered in, neutral included.
    assert request.history == (
        Turn("system", TONES["zh"]["negative"]), Turn("user", "我丢了钱包。"),
        Turn("assistant", "别急，先挂失银行卡。"),
        Turn("system", TONES["zh"]["positive"]), Turn("user", "找到了！"),
        Turn("assistant", "太好了！"),
        Turn("system", TONES["zh"]["neutral"]), Turn("user", "几点了？"),
        Turn("assistant", "快九点了。"),
    )  # fmt: skip
    others: tuple[Tone, ...] = ("positive", "neutral")
    for tone in others:
        other = reply_request(tone, "可是身份证还没找到。", history, GenerationParams(), NOTE)
        assert (other.system, other.examples, other.history) == (
            request.system,
            request.examples,
            request.history,
        )  # only the note differs between tones
        assert other.note == TONES["zh"][tone]


def test_a_turn_without_a_known_tone_gets_no_note() -> None:
    history = (Turn("user", "hello"), Turn("assistant", "hi!"))
    request = reply_request("positive", "how are you?", history, GenerationParams(), NOTE)
    assert request.history == history


def test_mixed_examples_show_every_tone_with_its_note() -> None:
    examples = reply_examples("positive", "I got the job!", NOTE)
    expected: list[Turn] = []
    for tone, (question, answer) in EXAMPLES["en"].items():
        expected += [Turn("system", TONES["en"][tone]), Turn("user", question),
                     Turn("assistant", answer)]  # fmt: skip
    assert examples == tuple(expected)
    assert len(examples) == 3 * 3  # negative, positive and neutral
    assert reply_examples("negative", "I got the job!", NOTE) == examples
    assert reply_examples("neutral", "I got the job!", NOTE) == examples
    none = ReplyLayout(tone_at="note", examples="none")
    assert reply_examples("positive", "I got the job!", none) == ()
    # The first layout: the one exchange of this tone, no notes, the tone in the system prompt.
    first = FIRST_LAYOUT
    question, answer = EXAMPLES["en"]["negative"]
    assert reply_examples("negative", "I lost it", first) == (
        Turn("user", question), Turn("assistant", answer)
    )  # fmt: skip
    request = reply_request("negative", "I lost it", (Turn("user", "x", "positive"),),
                            GenerationParams(), first)  # fmt: skip
    assert request.note == ""
    assert request.history == (Turn("user", "x"),)
    assert TONES["en"]["negative"] in request.system


def test_the_user_layout_puts_the_tone_in_brackets_after_each_message() -> None:
    layout = ReplyLayout(tone_at="user", examples="none")
    history = (Turn("user", "我丢了钱包。", "negative"), Turn("assistant", "别急。"),
               Turn("user", "no tone known"), Turn("assistant", "ok"))  # fmt: skip
    request = reply_request("positive", "I found it!", history, GenerationParams(), layout)
    assert request.user_text == f"I found it!\n\n({TONES['en']['positive']})"
    assert request.note == ""
    assert request.system == PERSONA["en"]
    assert request.history == (
        Turn("user", f"我丢了钱包。\n\n（{TONES['zh']['negative']}）"), Turn("assistant", "别急。"),
        Turn("user", "no tone known"), Turn("assistant", "ok"),
    )  # fmt: skip

"""What users read the moment a message is tagged."""

from __future__ import annotations

from engine.chat import texts
from engine.types import Sentiment


def test_the_label_line_shows_the_side_and_its_confidence() -> None:
    assert texts.label_line(Sentiment("positive", 0.96)) == "😄 情感判断: 正面 (0.96)"
    assert texts.label_line(Sentiment("negative", 0.18)) == "😔 情感判断: 负面 (0.82)"
    assert texts.label_line(Sentiment("negative", 0.18), with_score=False) == "😔 情感判断: 负面"


def test_a_neutral_message_shows_no_side_and_no_number() -> None:
    # Neutral means neither side is likely enough to show: a number would say otherwise.
    assert texts.label_line(Sentiment("positive", 0.58, neutral=True)) == "😐 情感判断: 中性"

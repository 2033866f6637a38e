"""Which of the two languages the bot speaks a text is in: the reply persona and the label's
calibration both follow it."""

from __future__ import annotations

from typing import Literal

Language = Literal["zh", "en"]


def detect_language(text: str) -> Language:
    """Chinese when the message has a meaningful share of CJK characters, else English."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
    cjk = sum(1 for ch in letters if "\u4e00" <= ch <= "\u9fff")
    return "zh" if cjk / len(letters) >= 0.2 else "en"

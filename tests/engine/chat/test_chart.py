"""The mood chart is a real PNG of the expected size, with or without data."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.chat.chart import render_mood_chart
from engine.chat.mood import build_report
from engine.types import MoodEvent, MoodReport, UserKey

USER = UserKey("discord", "7")
NOW = datetime(2024, 11, 22, 12, 0, tzinfo=UTC)
POSITIVE_RGB = (0x4C, 0xAF, 0x50)


def report_with(events: list[MoodEvent], days: int = 7) -> MoodReport:
    return build_report(USER, events, [], days, NOW, UTC)


def seeded_events() -> list[MoodEvent]:
    stamps = [datetime(2024, 11, d, h, tzinfo=UTC) for d in (17, 19, 22) for h in (8, 9, 10)]
    return [
        MoodEvent("discord", "7", "c", "positive" if i % 3 else "negative", 0.8, stamp)
        for i, stamp in enumerate(stamps)
    ]


def populated() -> MoodReport:
    return report_with(seeded_events())


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (800, 400)
        return np.asarray(image.convert("RGB"))


def positive_pixels(pixels: np.ndarray) -> int:
    return int(np.all(np.abs(pixels.astype(int) - POSITIVE_RGB) <= 3, axis=-1).sum())


@pytest.mark.parametrize("make", [populated, lambda: report_with([])], ids=["data", "empty"])
def test_chart_is_an_800x400_png_without_warnings(make) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Glyph missing from font" would fail here
        png = render_mood_chart(make())
    decode(png)


def test_populated_chart_draws_positive_bars_and_empty_chart_does_not() -> None:
    full = decode(render_mood_chart(populated()))
    empty = decode(render_mood_chart(report_with([])))
    assert positive_pixels(full) > 500
    assert positive_pixels(empty) == 0
    # "no data" note and axes still make the empty chart more than a blank canvas.
    assert (empty < 200).any()


def test_a_long_period_draws_its_bars_at_their_days() -> None:
    def positive_mask(report: MoodReport) -> np.ndarray:
        pixels = decode(render_mood_chart(report))
        return np.all(np.abs(pixels.astype(int) - POSITIVE_RGB) <= 3, axis=-1)

    # The same messages all negative: its positive pixels are the legend's patch alone.
    negative = [dataclasses.replace(e, label="negative") for e in seeded_events()]
    bars = positive_mask(report_with(seeded_events(), 365)) & ~positive_mask(
        report_with(negative, 365)
    )
    assert bars.sum() > 300  # two days of positive bars, each a few pixels wide
    # The messages are from the period's last six days of 365: the bars are at its right end.
    columns = np.nonzero(bars.any(axis=0))[0]
    assert columns.min() > 0.9 * 800


def test_matplotlib_is_imported_lazily() -> None:
    root = Path(__file__).resolve().parents[3]
    code = "import sys, engine.chat.chart; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


NEUTRAL_RGB = (0xBD, 0xBD, 0xBD)


def test_neutral_messages_get_their_own_grey_bars() -> None:
    def grey(pixels: np.ndarray) -> int:
        return int(np.all(np.abs(pixels.astype(int) - NEUTRAL_RGB) <= 3, axis=-1).sum())

    stamp = datetime(2024, 11, 20, 9, tzinfo=UTC)
    small_talk = [MoodEvent("discord", "7", "c", "positive", 0.55, stamp, None, True)] * 3
    with_neutral = decode(render_mood_chart(report_with([*seeded_events(), *small_talk])))
    without = decode(render_mood_chart(populated()))
    # Three bars' worth of grey, beyond the few grey pixels of anti-aliased text.
    assert grey(with_neutral) > grey(without) + 1000

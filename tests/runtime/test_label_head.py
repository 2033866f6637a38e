"""The label head: per-language calibration, the "nothing felt" readout and its fallback."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from runtime.label_head import Calibration, LabelHead, NothingFelt
from runtime.labelling import shipped_head

HEAD = LabelHead(
    {"en": Calibration(2.0, 1.0), "zh": Calibration(1.0, -0.5)},
    neutral_low=0.4,
    neutral_high=0.6,
    neutral_max_confidence=0.9,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_each_language_has_its_own_calibration() -> None:
    assert HEAD.sentiment(1.0, 0.0, "fine").p_positive == pytest.approx(sigmoid(3.0))
    assert HEAD.sentiment(1.0, 0.0, "还行").p_positive == pytest.approx(sigmoid(0.5))


def test_without_the_readout_the_band_decides_neutral() -> None:
    inside = HEAD.sentiment(0.0, 0.0, "还行")  # sigmoid(-0.5) = 0.38: outside (0.4, 0.6)
    assert not inside.neutral
    assert inside.label == "negative"
    quiet = HEAD.sentiment(0.4, 0.0, "还行")  # sigmoid(-0.1) = 0.475
    assert quiet.neutral
    assert quiet.label == "negative"  # the side the scores favour is kept
    assert quiet.tone == "neutral"


def test_the_readout_reads_a_hidden_state_or_a_logits_row_and_skips_other_shapes() -> None:
    readout = NothingFelt(
        np.array([1.0, 0.0], np.float32), np.array([0.0, 0.0, 1.0], np.float32), 0.5
    )
    head = LabelHead({}, neutral_max_confidence=0.99, nothing_felt=readout)
    assert head.sentiment(0.0, 0.0, "hi", np.array([1.0, 0.0])).neutral  # hidden: 1.0 > 0.5
    assert not head.sentiment(0.0, 0.0, "hi", np.array([0.0, 9.0])).neutral
    assert head.sentiment(0.0, 0.0, "hi", np.array([0.0, 0.0, 2.0])).neutral  # logits row
    # Another model's state (another width): the band, empty here, decides.
    assert not head.sentiment(0.0, 0.0, "hi", np.ones(5)).neutral


def test_a_confident_score_overrules_the_readout() -> None:
    readout = NothingFelt(np.ones(2, np.float32), np.ones(3, np.float32), -1.0)  # always quiet
    head = LabelHead({}, neutral_max_confidence=0.9, nothing_felt=readout)
    assert head.sentiment(0.5, 0.0, "ok", np.zeros(2)).neutral  # p = 0.62
    assert not head.sentiment(5.0, 0.0, "Yay!", np.zeros(2)).neutral  # p = 0.993


def test_no_file_is_the_raw_readout(tmp_path: Path) -> None:
    head = LabelHead.load(tmp_path / "absent.json", tmp_path / "absent.npz")
    sentiment = head.sentiment(1.0, 0.0, "hello")
    assert sentiment.p_positive == pytest.approx(sigmoid(1.0))
    assert not sentiment.neutral


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    readout = NothingFelt(
        np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0, 5.0], np.float32), 0.25
    )
    head = LabelHead(HEAD.calibration, 0.45, 0.55, 0.9, "test rows", readout)
    head.save(tmp_path / "head.json", tmp_path / "felt.npz")
    back = LabelHead.load(tmp_path / "head.json", tmp_path / "felt.npz")
    assert back == head  # the readout is compared below
    assert back.nothing_felt is not None
    assert back.nothing_felt.threshold == pytest.approx(0.25)
    np.testing.assert_allclose(back.nothing_felt.logit_weights, readout.logit_weights)


def test_the_shipped_head_corrects_the_lean_toward_negative() -> None:
    head = shipped_head()
    # Equal label scores meant 50% before; the fitted bias moves a tie toward positive.
    for text in ("fine", "还行"):
        assert head.p_positive(0.0, 0.0, "en" if text == "fine" else "zh") > 0.6
    assert head.nothing_felt is not None
    assert head.nothing_felt.hidden_weights.shape == (896,)  # the packaged 0.5B model

"""The label head: per-language calibration, the "nothing felt" readout and its fallback;
one head per model, never another model's."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.model import label_head
from engine.model.label_head import (
    HEADS_DIR,
    UNCALIBRATED,
    Calibration,
    LabelHead,
    ModelIdentity,
    NothingFelt,
    gguf_identity,
    head_file,
    head_for,
    model_identity,
)
from engine.model.model_files import PACKAGED_MODELS

SMALL = next(model for model in PACKAGED_MODELS.values() if "0.5B" in model.name)
LARGE = next(model for model in PACKAGED_MODELS.values() if "1.5B" in model.name)
SIZES = {SMALL.name: (896, 151936), LARGE.name: (1536, 151936)}

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


def test_the_readout_reads_a_hidden_state_or_a_logits_row(
    caplog: pytest.LogCaptureFixture, fresh: None
) -> None:
    readout = NothingFelt(
        np.array([1.0, 0.0], np.float32), np.array([0.0, 0.0, 1.0], np.float32), 0.5
    )
    head = LabelHead({}, neutral_max_confidence=0.99, nothing_felt=readout)
    assert head.sentiment(0.0, 0.0, "hi", np.array([1.0, 0.0])).neutral  # hidden: 1.0 > 0.5
    assert not head.sentiment(0.0, 0.0, "hi", np.array([0.0, 9.0])).neutral
    assert head.sentiment(0.0, 0.0, "hi", np.array([0.0, 0.0, 2.0])).neutral  # logits row
    assert "cannot read" not in caplog.text


def test_a_state_of_another_shape_is_never_read_nor_replaced_by_the_band(
    caplog: pytest.LogCaptureFixture, fresh: None
) -> None:
    always = NothingFelt(np.ones(2, np.float32), np.ones(3, np.float32), -1.0)  # always quiet
    # A band that would show this tie as neutral if it stood in for the readout.
    head = LabelHead({}, 0.4, 0.6, 0.99, nothing_felt=always)
    assert head.sentiment(0.0, 0.0, "hi").neutral  # no state (a remote engine): the band
    with caplog.at_level(logging.WARNING, logger="engine.model.label_head"):
        for _ in range(3):
            shown = head.sentiment(0.0, 0.0, "hi", np.ones(5))  # another model's width
            assert not shown.neutral
    assert caplog.text.count("cannot read") == 1  # said once, not per message


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
    model = ModelIdentity("m", "ab" * 32, 2, 3)
    head = LabelHead(HEAD.calibration, 0.45, 0.55, 0.9, "test rows", readout, model)
    head.save(tmp_path / "m.json")
    assert (tmp_path / "m.felt.npz").is_file()  # beside it, named after it
    back = LabelHead.load(tmp_path / "m.json")
    assert back == head  # the readout is compared below
    assert back.model == model
    assert back.nothing_felt is not None
    assert back.nothing_felt.threshold == pytest.approx(0.25)
    np.testing.assert_allclose(back.nothing_felt.logit_weights, readout.logit_weights)


# --- one head per model -------------------------------------------------------------------------


@pytest.fixture
def fresh() -> Iterator[None]:
    """head_for and the warnings remember what they said: start each test anew."""
    head_for.cache_clear()
    label_head._warned.clear()
    yield
    head_for.cache_clear()
    label_head._warned.clear()


def packaged(model: object) -> ModelIdentity:
    name, sha256 = model.name, model.sha256  # type: ignore[attr-defined]
    return ModelIdentity(name, sha256, *SIZES[name])


def test_the_heads_ship_in_the_package_one_per_model_each_naming_its_model() -> None:
    files = sorted(HEADS_DIR.glob("*.json"))
    assert {path.stem for path in files} >= {SMALL.name, LARGE.name}
    for path in files:
        head = LabelHead.load(path)
        assert head.model is not None
        assert head.model.name == path.stem
        assert head.model.sha256 == PACKAGED_MODELS_BY_NAME[path.stem].sha256
        assert head.nothing_felt is not None  # loaded from <stem>.felt.npz beside it
        assert head.nothing_felt.fits(head.model) is None
        assert set(head.calibration) == {"en", "zh"}


PACKAGED_MODELS_BY_NAME = {model.name: model for model in PACKAGED_MODELS.values()}


def test_each_model_gets_its_own_head(fresh: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.model.label_head"):
        small, large = head_for(packaged(SMALL)), head_for(packaged(LARGE))
    assert not caplog.records
    assert small.model is not None
    assert small.model.name == SMALL.name
    assert large.model is not None
    assert large.model.name == LARGE.name
    assert small.nothing_felt is not None
    assert small.nothing_felt.hidden_weights.shape == (896,)
    assert large.nothing_felt is not None
    assert large.nothing_felt.hidden_weights.shape == (1536,)
    assert small.calibration != large.calibration
    # Unknown sizes (a remote engine) are not compared: the name and file decide.
    assert head_for(ModelIdentity(SMALL.name, SMALL.sha256)).model == small.model


def test_the_small_models_head_was_moved_unchanged() -> None:
    head = LabelHead.load(head_file(SMALL.name))
    assert head.calibration == {"en": Calibration(2.6767, 1.3176),
                                "zh": Calibration(1.4904, 0.9922)}  # fmt: skip
    assert (head.neutral_low, head.neutral_high, head.neutral_max_confidence) == (
        0.49, 0.65, 0.94)  # fmt: skip
    # Equal label scores meant 50% before; the fitted bias moves a tie toward positive.
    for language in ("en", "zh"):
        assert head.p_positive(0.0, 0.0, language) > 0.6


@pytest.mark.parametrize(
    "mismatch",
    [
        {"sha256": "0" * 64},  # another file under the same name
        {"hidden_size": 1536},  # another width
        {"vocab_size": 32000},
    ],
)
def test_a_head_fitted_for_another_model_is_never_applied(
    mismatch: dict[str, object], fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    model = replace(packaged(SMALL), **mismatch)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="engine.model.label_head"):
        head = head_for(model)
        head_for(model)
    assert head is UNCALIBRATED
    assert head.nothing_felt is None
    (record,) = caplog.records  # once
    assert SMALL.name in record.getMessage()
    assert "does not fit it" in record.getMessage()


def test_a_readout_that_does_not_fit_its_own_record_refuses_the_head(
    tmp_path: Path, fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    model = ModelIdentity("m", "", 4, 6)
    wrong = NothingFelt(np.ones(3, np.float32), np.ones(6, np.float32), 0.0)  # 3 wide, not 4
    LabelHead({"en": Calibration(9.0, 0.0)}, nothing_felt=wrong, model=model).save(
        tmp_path / "m.json"
    )
    with caplog.at_level(logging.WARNING, logger="engine.model.label_head"):
        assert head_for(ModelIdentity("m"), tmp_path) is UNCALIBRATED
    assert "hidden size of 3" in caplog.text


def test_a_head_file_without_a_model_record_is_not_used(tmp_path: Path, fresh: None) -> None:
    LabelHead({"en": Calibration(9.0, 0.0)}).save(tmp_path / "m.json")  # the old format
    assert head_for(ModelIdentity("m"), tmp_path) is UNCALIBRATED


def test_an_unknown_model_is_said_once_and_labelled_sanely(
    fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.model.label_head"):
        head = head_for(ModelIdentity("my-finetune", "", 2048, 151936))
        head_for(ModelIdentity("my-finetune", "", 2048, 151936))
    assert head is UNCALIBRATED
    (record,) = caplog.records
    message = record.getMessage()
    assert "'my-finetune'" in message
    assert "uncalibrated" in message
    assert "no head was fitted" in message
    # Sane: a tie is 50/50, a clear score difference is confident but not 1.00, nothing is
    # shown as neutral (no readout, no band).
    assert head.p_positive(0.0, 0.0, "en") == pytest.approx(0.5)
    shown = head.sentiment(6.0, 0.0, "great", np.ones(2048))
    assert shown.label == "positive"
    assert 0.7 < shown.p_positive < 0.99
    assert not shown.neutral
    assert not head.sentiment(0.1, 0.0, "hm").neutral


def test_a_gguf_is_known_by_its_stem_and_its_verified_hash(tmp_path: Path, fresh: None) -> None:
    gguf = tmp_path / f"{SMALL.name}.gguf"
    gguf.write_bytes(b"GGUF not really")
    stamp = tmp_path / f"{SMALL.name}.gguf.sha256"
    stamp.write_text(SMALL.sha256 + "\n")  # written by the packaged join once it verified
    os.utime(gguf, ns=(1, 1))  # the stamp is newer than the file
    identity = gguf_identity(gguf, 896, 151936)
    assert identity == packaged(SMALL)
    assert head_for(identity).model == identity
    # The same name on other bytes (no stamp): hashed, and the head is refused.
    other = tmp_path / "other" / f"{SMALL.name}.gguf"
    other.parent.mkdir()
    other.write_bytes(b"another model")
    assert gguf_identity(other).sha256 != SMALL.sha256
    assert head_for(gguf_identity(other, 896, 151936)) is UNCALIBRATED


def test_model_identity_follows_what_model_names(tmp_path: Path) -> None:
    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "converted.ok").write_text(f"{LARGE.name}.gguf\n")  # model_files' marker
    assert model_identity(str(folder), tmp_path, 1536, 151936) == ModelIdentity(
        LARGE.name, "", 1536, 151936
    )
    plain = tmp_path / "my-checkpoint"
    plain.mkdir()
    assert model_identity(str(plain), tmp_path).name == "my-checkpoint"
    assert model_identity("Qwen/Qwen2.5-0.5B-Instruct", tmp_path).name == (
        "Qwen/Qwen2.5-0.5B-Instruct"
    )
    assert head_file("Qwen/Qwen2.5-0.5B-Instruct").name == "Qwen--Qwen2.5-0.5B-Instruct.json"


def test_the_head_records_the_model_first_for_a_reader() -> None:
    raw = json.loads(head_file(LARGE.name).read_text(encoding="utf-8"))
    assert next(iter(raw)) == "model"
    assert raw["model"]["sha256"] == LARGE.sha256

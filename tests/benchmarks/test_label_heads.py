"""scripts.fitting.label_features / scripts.fitting.label_fit: features and heads per model,
fitted on training
rows only (no model is run: the features are synthetic, the LM head a tiny GGUF)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.model import label_head
from engine.model.label_head import UNCALIBRATED, LabelHead, ModelIdentity, head_file, head_for
from scripts.fitting import label_fit
from scripts.fitting.label_features import LmHead, lm_head_matrix

VOCAB, WIDTH = 40, 6


def tiny_gguf(path: Path, w: np.ndarray) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tensor("token_embd.weight", w.astype(np.float32))  # tied: no output.weight
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_lm_head_reads_hidden_states_back_from_logits_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((VOCAB, WIDTH)).astype(np.float32)
    lm_head = LmHead.read(tiny_gguf(tmp_path / "m.gguf", w))
    np.testing.assert_array_equal(lm_head_matrix(tmp_path / "m.gguf"), w)
    h = rng.standard_normal((5, WIDTH)).astype(np.float32)
    np.testing.assert_allclose(lm_head.hidden(h @ w.T), h, atol=1e-4)
    v = rng.standard_normal(WIDTH)
    u = lm_head.logit_weights(v)
    assert u.shape == (VOCAB,)
    np.testing.assert_allclose((h @ w.T) @ u, h @ v, atol=1e-3)  # the same readout on logits


def features_file(
    path: Path, rows: list[dict[str, Any]], d: np.ndarray, hidden: np.ndarray
) -> None:
    scores = np.stack([d, np.zeros_like(d)], axis=1).astype(np.float32)
    words, meta = np.array(["正面", "负面"]), np.array(json.dumps(rows))
    np.savez_compressed(
        path, scores=scores, hidden=hidden.astype(np.float32), words=words, meta=meta
    )


def synthetic_model_folder(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """model.json, analyst.npz and analyst-neutral.npz as scripts.fitting.label_features writes
    them. Training rows lean negative by 1.5; the evaluation rows would pull the fit far the other
    way if they were (wrongly) fitted on. Messages with nothing felt differ along h[0]."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "features" / "tiny-model"
    folder.mkdir(parents=True)
    w = rng.standard_normal((VOCAB, WIDTH)).astype(np.float32)
    gguf = tiny_gguf(tmp_path / "tiny-model.gguf", w)
    record = {"name": "tiny-model", "sha256": "ab" * 32, "hidden_size": WIDTH,
              "vocab_size": VOCAB, "gguf": str(gguf)}  # fmt: skip
    (folder / "model.json").write_text(json.dumps(record), encoding="utf-8")
    rows, ds = [], []
    for language in ("en", "zh"):
        for _ in range(200):
            label = "positive" if rng.random() < 0.5 else "negative"
            ds.append(rng.normal(1.0 if label == "positive" else -1.0, 1.0) - 1.5)
            rows.append({"language": language, "split": "train", "label": label,
                         "domain": "d", "text": "x"})  # fmt: skip
        for index in range(150):  # evaluation rows, each scored strongly for the other side
            label = "positive" if index % 2 else "negative"
            ds.append(-6.0 if label == "positive" else 6.0)
            rows.append({"language": language, "split": "eval", "label": label,
                         "domain": "d", "text": "x"})  # fmt: skip
    hidden = rng.standard_normal((len(rows), WIDTH))
    features_file(folder / "analyst.npz", rows, np.array(ds), hidden)
    quiet_rows, quiet_d, quiet_h = [], [], []
    for split, label, count in (("neutral-dev", "neutral", 40), ("content-free", "neutral", 4),
                                ("felt-dev", "positive", 20), ("neutral-test", "neutral", 30),
                                ("felt", "negative", 15), ("felt", "positive", 15)):  # fmt: skip
        for _ in range(count):
            h = rng.standard_normal(WIDTH)
            h[0] += 6.0 if label == "neutral" else 0.0
            quiet_rows.append({"language": "en", "split": split, "label": label,
                               "domain": split, "text": "hi"})  # fmt: skip
            quiet_d.append(rng.normal(2.0 if label == "positive" else -2.0, 0.5) - 1.5)
            quiet_h.append(h)
    features_file(folder / "analyst-neutral.npz", quiet_rows, np.array(quiet_d), np.array(quiet_h))
    return folder, w


@pytest.fixture
def fresh() -> Any:
    head_for.cache_clear()
    label_head._warned.clear()
    yield
    head_for.cache_clear()
    label_head._warned.clear()


def test_write_fits_that_models_head_on_training_rows_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fresh: None
) -> None:
    folder, w = synthetic_model_folder(tmp_path)
    heads = tmp_path / "heads"
    per_row = tmp_path / "rows.jsonl"
    code = label_fit.main(
        ["--features", str(folder), "--write", str(heads), "--rows", str(per_row)]
    )
    assert code == 0
    path = head_file("tiny-model", heads)
    assert path.is_file()
    assert (heads / "tiny-model.felt.npz").is_file()
    head = LabelHead.load(path)
    assert head.model == ModelIdentity("tiny-model", "ab" * 32, WIDTH, VOCAB)
    for fit in head.calibration.values():
        # The cut sits at the training rows' d = -1.5, not where the eval rows would put it.
        assert -fit.bias / fit.scale == pytest.approx(-1.5, abs=0.4)
    felt = head.nothing_felt
    assert felt is not None
    assert felt.hidden_weights.shape == (WIDTH,)
    assert felt.logit_weights.shape == (VOCAB,)
    h = np.zeros(WIDTH)
    h[0] = 6.0
    assert felt(h)
    assert felt(w @ h)
    assert not felt(np.zeros(WIDTH))
    # Its model gets it; a model of another width or file does not.
    assert head_for(head.model, heads) == head
    assert head_for(ModelIdentity("tiny-model", "ab" * 32, WIDTH + 1, VOCAB), heads) is UNCALIBRATED
    assert head_for(ModelIdentity("tiny-model", "cd" * 32), heads) is UNCALIBRATED
    # The report is on rows never fitted on: the eval rows and the TEST/FELT messages.
    out = capsys.readouterr().out
    assert "eval en" in out
    assert "neutral-test" in out
    assert "felt" in out
    reported = [json.loads(line) for line in per_row.read_text(encoding="utf-8").splitlines()]
    assert {row["set"] for row in reported} == {"eval en", "eval zh", "neutral-test", "felt"}
    assert not any(row["split"] in ("train", "neutral-dev", "felt-dev") for row in reported)
    quiet = [row["shown"] == "neutral" for row in reported if row["set"] == "neutral-test"]
    assert sum(quiet) / len(quiet) > 0.8


def test_features_go_to_a_folder_per_model(tmp_path: Path) -> None:
    from scripts.fitting.label_features import features_folder

    gguf = tmp_path / "My-Model-Q4.gguf"
    gguf.write_bytes(b"x")
    assert features_folder(str(gguf)) == Path("benchmarks/results/features/My-Model-Q4")


def test_a_wide_logistic_fit_is_the_exact_fit_in_the_rows_span() -> None:
    """More columns than rows (a hidden state, a few hundred rows): the fit in the rows' span
    is the full-width fit, with or without a prior to shrink toward."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 80))
    y = (x[:, 0] + rng.standard_normal(30) > 0).astype(float)
    for prior in (None, 0.1 * rng.standard_normal(80)):
        centre = np.zeros(81) if prior is None else np.append(prior, 0.0)
        design, w = np.hstack([x, np.ones((30, 1))]), centre.copy()
        penalty = np.append(np.full(80, 3.0), 0.0)
        for _ in range(100):  # Newton on all 80 columns
            p = 1 / (1 + np.exp(-(design @ w)))
            gradient = design.T @ (p - y) + penalty * (w - centre)
            hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
            w -= np.linalg.solve(hessian, gradient)
        np.testing.assert_allclose(label_fit.fit_logistic(x, y, 3.0, prior), w, atol=1e-8)


def test_cross_validation_reads_training_rows_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cv compares the levers on the training rows alone: the evaluation rows (scored for
    the wrong side here) change nothing."""
    folder, _w = synthetic_model_folder(tmp_path)
    assert label_fit.main(["--features", str(folder), "--cv", "5"]) == 0
    out = capsys.readouterr().out
    platt = [line for line in out.splitlines() if "| platt " in line]
    assert len(platt) == 2  # en, zh
    for line in platt:
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        assert cells[2] == "5-fold train"
        assert cells[4] == "200"  # the training rows of the language, no evaluation row
        assert float(cells[5]) > 0.75  # the training rows' own cut (eval rows would give ~0)
    assert "anchored probe" in out


def test_features_can_score_one_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.fitting import label_features

    for language, text in (("en", "fine"), ("zh", "好")):
        source = "amazon" if language == "en" else "pos.txt"
        rows = [{"text": f"{text} {i}", "label": label, "source": source, "line": i}
                for i in range(8) for label in ("positive", "negative")]  # fmt: skip
        (tmp_path / f"train_{language}.jsonl").write_text(
            "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
        )
    monkeypatch.setattr(label_features, "DATA", tmp_path)
    picked = label_features.rows_to_score(4, seed=7, evaluation=False, languages=("en",))
    assert picked
    assert {row["language"] for row in picked} == {"en"}
    both = label_features.rows_to_score(4, seed=7, evaluation=False)
    assert {row["language"] for row in both} == {"en", "zh"}

"""Compare label heads offline on the features `scripts.fitting.label_features` saved, and fit
the head of the model they came from.

    MODEL=packaged-1.5b python -m scripts.fitting.label_fit [--model SPEC] [--features FOLDER]
        [--write [engine/model/label_heads]] [--frame analyst] [--rows FILE]

The features are those of the model MODEL (or --model) names: benchmarks/results/features/<GGUF
stem>/, unless --features says otherwise; its `model.json` says which model they came from.
Without --write it compares the levers below; with --write it fits that model's head and
writes `<folder>/<GGUF stem>.json` (+ `.felt.npz`), recording the model (name, SHA-256,
sizes), then reports the fitted head on rows it never saw: the evaluation rows, and
benchmarks.accuracy.neutral's TEST and FELT messages (--rows writes that report per row, as JSONL).

Every lever is fitted on training rows only and reported on rows it never saw:
- `eval`: the held-out evaluation rows of `benchmarks.data.datasets` (both domains of each
language);
- `cross`: fitted on one domain only (English: Amazon; Chinese: hotel), reported on the other
  domain's rows (movie; laptop), evaluation and unused training rows alike.
Levers: the raw readout (today), label-word sets, a bias/scale fitted on the scores (Platt),
contextual calibration (Zhao et al. 2021: the scores of content-free inputs), and a linear
probe over the final hidden state (logistic regression with an L2 penalty).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import add_model_argument, auc, ece, table
from engine.language import Language
from engine.model.label_head import (
    HEADS_DIR,
    Calibration,
    LabelHead,
    ModelIdentity,
    NothingFelt,
    head_file,
)
from scripts.fitting.label_features import LmHead, features_folder

POSITIVE_WORDS = ("正面", "积极", "正", "好", "positive", "Positive", "good")
NEGATIVE_WORDS = ("负面", "消极", "负", "坏", "negative", "Negative", "bad")
FRAME_WORDS = {"analyst": ("正面", "负面"), "fewshot": ("正面", "负面")}
CROSS_FIT = {"en": "amazon", "zh": "hotel"}  # fitted on this domain, reported on the other


@dataclass
class Features:
    frame: str
    scores: np.ndarray  # (rows, words)
    hidden: np.ndarray  # (rows, n_embd)
    words: list[str]
    meta: list[dict[str, Any]]
    # language → w_pos − w_neg, the LM-head rows of the frame's label words in that language
    # (for the anchored probe)
    directions: dict[str, np.ndarray] | None = None

    @classmethod
    def load(cls, path: Path) -> Features:
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
        words = [str(word) for word in data["words"]]
        return cls(path.stem, data["scores"], data["hidden"], words, meta)

    def column(self, word: str) -> np.ndarray:
        return self.scores[:, self.words.index(word)]

    def mask(self, **where: str | Sequence[str]) -> np.ndarray:
        keep = np.ones(len(self.meta), bool)
        for key, wanted in where.items():
            values = {wanted} if isinstance(wanted, str) else set(wanted)
            keep &= np.array([row[key] in values for row in self.meta])
        return keep

    def gold(self) -> np.ndarray:
        return np.array([row["label"] == "positive" for row in self.meta])


# --- metrics --------------------------------------------------------------------------------


def report(truth: np.ndarray, p_positive: np.ndarray) -> dict[str, float]:
    predicted = p_positive >= 0.5
    return {
        "n": len(truth),
        "accuracy": float((predicted == truth).mean()),
        "recall+": float(predicted[truth].mean()),
        "recall-": float((~predicted)[~truth].mean()),
        "auc": auc(truth, p_positive),
        "ece": ece(truth, p_positive),
    }


# --- fitting --------------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, prior: np.ndarray | None = None,
                 iterations: int = 50) -> np.ndarray:  # fmt: skip
    """Weights (last one the bias) of a logistic regression by Newton steps, with an L2
    penalty pulling the weights (not the bias) toward `prior` (zero by default).

    With more columns than rows (a hidden state of 1,536 numbers, a few hundred rows) the
    weights' move away from `prior` lies in the span of the rows (the penalty zeroes any
    other part), so the fit runs exactly on the rows' coordinates in that span: an
    n × n problem instead of a width × width one."""
    if x.shape[1] > len(x) and l2 > 0:
        basis = np.linalg.svd(x, full_matrices=False)[2]  # x = U S Vᵀ: Vᵀ, rows × width
        centre = np.zeros(x.shape[1]) if prior is None else prior
        reduced = _fit_logistic(x @ basis.T, y, l2, x @ centre, iterations)
        return np.append(centre + basis.T @ reduced[:-1], reduced[-1])
    if prior is not None:  # as an offset: the weights' move away from it is penalised
        moved = _fit_logistic(x, y, l2, x @ prior, iterations)
        return np.append(prior + moved[:-1], moved[-1])
    return _fit_logistic(x, y, l2, np.zeros(len(x)), iterations)


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, offset: np.ndarray,
                  iterations: int) -> np.ndarray:  # fmt: skip
    """Weights (last one the bias) of σ(x·w + b + offset), L2 penalty on w toward zero."""
    design = np.hstack([x, np.ones((len(x), 1))])
    weights = np.zeros(design.shape[1])
    centre = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = sigmoid(design @ weights + offset)
        gradient = design.T @ (p - y) + penalty * (weights - centre)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-7:
            break
    return weights


def best_l2(x: np.ndarray, y: np.ndarray, choices: Sequence[float], prior: np.ndarray | None = None,
            folds: int = 5, seed: int = 0) -> float:  # fmt: skip
    """The penalty with the best cross-validated log loss on the training rows."""
    order = np.random.default_rng(seed).permutation(len(x))
    losses = []
    for l2 in choices:
        loss = 0.0
        for fold in range(folds):
            held = order[fold::folds]
            kept = np.setdiff1d(order, held)
            w = fit_logistic(x[kept], y[kept], l2, prior)
            p = np.clip(sigmoid(np.hstack([x[held], np.ones((len(held), 1))]) @ w), 1e-6, 1 - 1e-6)
            loss -= float(np.mean(y[held] * np.log(p) + (1 - y[held]) * np.log(1 - p)))
        losses.append(loss)
    return float(choices[int(np.argmin(losses))])


def logsumexp(columns: Sequence[np.ndarray]) -> np.ndarray:
    stacked = np.stack(columns)
    top = stacked.max(axis=0)
    return top + np.log(np.exp(stacked - top).sum(axis=0))


# --- the levers -----------------------------------------------------------------------------

Lever = Callable[[Features, np.ndarray, np.ndarray], np.ndarray]  # (features, fit, show) → p


def readout(features: Features) -> np.ndarray:
    pos, neg = FRAME_WORDS.get(features.frame, ("正面", "负面"))
    if features.frame == "native":
        english = np.array([row["language"] == "en" for row in features.meta])
        d_en = features.column("positive") - features.column("negative")
        return np.where(english, d_en, features.column(pos) - features.column(neg))
    return features.column(pos) - features.column(neg)


def raw(features: Features, fit: np.ndarray, show: np.ndarray) -> np.ndarray:
    return sigmoid(readout(features)[show])


def word_sets(features: Features, fit: np.ndarray, show: np.ndarray) -> np.ndarray:
    positive = logsumexp([features.column(w) for w in POSITIVE_WORDS if w in features.words])
    negative = logsumexp([features.column(w) for w in NEGATIVE_WORDS if w in features.words])
    return sigmoid((positive - negative)[show])


def platt(features: Features, fit: np.ndarray, show: np.ndarray) -> np.ndarray:
    d = readout(features)[:, None]
    w = fit_logistic(d[fit], features.gold()[fit].astype(float), l2=1e-3)
    return sigmoid(w[0] * d[show, 0] + w[1])


def bias_only(features: Features, fit: np.ndarray, show: np.ndarray) -> np.ndarray:
    """Only a shift of the cut, fitted on training rows (the scale stays the model's)."""
    d = readout(features)
    y = features.gold()[fit]
    candidates = np.linspace(-6, 6, 481)
    accuracy = [((d[fit] + b >= 0) == y).mean() for b in candidates]
    best = candidates[int(np.argmax(accuracy))]
    return sigmoid(d[show] + best)


PROBE_L2 = (1.0, 3.0, 10.0, 30.0, 100.0)


def probe_weights(features: Features, fit: np.ndarray, anchored: bool = False) -> np.ndarray:
    """Logistic regression over h (last weight the bias), its L2 penalty chosen by
    cross-validated log loss on the fitted rows. `anchored`: the penalty pulls the weights
    toward the Platt head's (scale·(w_pos − w_neg), the readout the frame already gives)
    instead of toward zero, so few rows move it only as far as they show they should."""
    x = features.hidden / 100.0  # keep the weights near unit scale for the solver
    y = features.gold().astype(float)
    prior = None
    if anchored:
        (language,) = {features.meta[i]["language"] for i in np.flatnonzero(fit)}
        if features.directions is None:
            raise ValueError("an anchored probe needs the label words' LM-head rows")
        d = readout(features)[:, None]
        scale = fit_logistic(d[fit], y[fit], l2=1e-3)[0]
        prior = scale * features.directions[language] * 100.0
    l2 = best_l2(x[fit], y[fit], PROBE_L2, prior)
    return fit_logistic(x[fit], y[fit], l2, prior)


def probe(features: Features, fit: np.ndarray, show: np.ndarray) -> np.ndarray:
    w = probe_weights(features, fit)
    x = features.hidden[show] / 100.0
    return sigmoid(np.hstack([x, np.ones((len(x), 1))]) @ w)


def anchored_probe(features: Features, fit: np.ndarray, show: np.ndarray) -> np.ndarray:
    w = probe_weights(features, fit, anchored=True)
    x = features.hidden[show] / 100.0
    return sigmoid(np.hstack([x, np.ones((len(x), 1))]) @ w)


LEVERS: dict[str, Lever] = {
    "raw": raw,
    "word sets": word_sets,
    "bias": bias_only,
    "platt": platt,
    "probe": probe,
    "anchored probe": anchored_probe,
}


def cross_validate(features: Features, folds: int = 5, seed: int = 0) -> list[list[object]]:
    """Every lever by `folds`-fold cross-validation on the TRAINING rows only, per language:
    each row's p comes from a lever fitted on the other folds (no evaluation row is read)."""
    rows: list[list[object]] = []
    gold = features.gold()
    for language in ("en", "zh"):
        train = np.flatnonzero(features.mask(language=language, split="train"))
        if not len(train):
            continue
        order = np.random.default_rng(seed).permutation(train)
        for name, lever in LEVERS.items():
            if name == "anchored probe" and features.directions is None:
                continue
            p = np.zeros(len(features.meta))
            for fold in range(folds):
                fit = np.zeros(len(features.meta), bool)
                show = np.zeros(len(features.meta), bool)
                fit[np.setdiff1d(order, order[fold::folds])] = True
                show[order[fold::folds]] = True
                p[show] = lever(features, fit, show)
            result = report(gold[train], p[train])
            rows.append([features.frame, language, f"{folds}-fold train", name, result["n"],
                         result["accuracy"], result["recall+"], result["recall-"],
                         result["auc"], result["ece"]])  # fmt: skip
    return rows


def evaluate(features: Features) -> list[list[object]]:
    rows: list[list[object]] = []
    for language in ("en", "zh"):
        fit = features.mask(language=language, split="train")
        show = features.mask(language=language, split="eval")
        cross_fit = features.mask(language=language, split="train", domain=CROSS_FIT[language])
        others = {row["domain"] for row in features.meta if row["language"] == language}
        cross_show = features.mask(language=language, domain=tuple(others - {CROSS_FIT[language]}))
        for name, lever in LEVERS.items():
            for setting, (f, s) in (("eval", (fit, show)), ("cross", (cross_fit, cross_show))):
                result = report(features.gold()[s], lever(features, f, s))
                rows.append([features.frame, language, setting, name, result["n"],
                             result["accuracy"], result["recall+"], result["recall-"],
                             result["auc"], result["ece"]])  # fmt: skip
    return rows


# --- the shipped head -------------------------------------------------------------------------

NEUTRAL_SHARE_LIMIT = 0.10  # of labelled training rows the fallback band may show as neutral
# The readout's threshold: in each group of felt rows (each language's training rows,
# FELT_DEV) at most 2% score above it. One quantile over all felt rows together let the
# 1.5B show 7.5% of its English training rows (10% of eval rows) as neutral: FELT_DEV's
# short messages sit far below, so they pulled the cut down.
FELT_QUANTILE = 98
FELT_L2 = 10.0


def fit_nothing_felt(features: Features, neutral: Features, lm_head: LmHead) -> NothingFelt:
    """A logistic readout over h: benchmarks.accuracy.neutral's DEV messages and the content-free
    inputs against every labelled training row and benchmarks.accuracy.neutral's FELT_DEV,
    thresholded so that FELT_QUANTILE% of each group of felt rows (each language's training rows,
    FELT_DEV)
    stay felt."""
    train = features.mask(split="train")
    short = neutral.mask(split="felt-dev")
    quiet = neutral.mask(split=("neutral-dev", "content-free"))
    felt = np.vstack([features.hidden[train], np.repeat(neutral.hidden[short], 8, axis=0)])
    x = np.vstack([felt, neutral.hidden[quiet]]) / 100.0
    y = np.r_[np.zeros(len(felt)), np.ones(quiet.sum())]
    w = fit_logistic(x, y, FELT_L2)
    v = w[:-1] / 100.0  # on h itself
    groups = [features.hidden[features.mask(split="train", language=language)]
              for language in ("en", "zh")] + [neutral.hidden[short]]  # fmt: skip
    threshold = max(float(np.percentile(g @ v, FELT_QUANTILE)) for g in groups if len(g))
    return NothingFelt(v.astype(np.float32), lm_head.logit_weights(v), threshold)


def fit_head(features: Features, neutral: Features | None) -> LabelHead:
    """Platt per language on every training row; the neutral band that shows the most of
    benchmarks.accuracy.neutral's DEV messages as neutral while at most NEUTRAL_SHARE_LIMIT of the
    labelled
    training rows are. No evaluation row and no TEST message is used."""
    d = readout(features)
    calibration: dict[Language, Calibration] = {}
    for language in ("en", "zh"):
        fit = features.mask(language=language, split="train")
        w = fit_logistic(d[fit, None], features.gold()[fit].astype(float), l2=1e-3)
        calibration[language] = Calibration(round(float(w[0]), 4), round(float(w[1]), 4))
    head = LabelHead(calibration, fitted_on=f"{features.frame}: Platt per language on "
                     f"{int(features.mask(split='train').sum())} training rows")  # fmt: skip
    if neutral is None:
        return head
    train = features.mask(split="train")
    p_train = head_p(head, features, train)
    dev = neutral.mask(split="neutral-dev")
    p_dev = head_p(head, neutral, dev)
    best = (0.0, 0.5, 0.5)
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    for low in grid[grid < 0.5]:
        for high in grid[grid > 0.5]:
            share = float(((p_train > low) & (p_train < high)).mean())
            if share > NEUTRAL_SHARE_LIMIT:
                continue
            rate = float(((p_dev > low) & (p_dev < high)).mean())
            # the most DEV messages; on a tie the narrower band
            if (rate, -(high - low)) > (best[0], -(best[2] - best[1])):
                best = (rate, float(low), float(high))
    note = f"; neutral band on {int(dev.sum())} benchmarks.accuracy.neutral DEV messages"
    return replace(head, neutral_low=best[1], neutral_high=best[2], fitted_on=head.fitted_on + note)


def fit_max_confidence(head: LabelHead, neutral: Features) -> float:
    """The confidence above which the readout's "nothing felt" is overruled: the cap that
    shows the most DEV messages and the fewest FELT_DEV messages as neutral (on a tie, the
    higher cap)."""
    assert head.nothing_felt is not None
    quiet = np.array([head.nothing_felt(h) for h in neutral.hidden])
    p = head_p(head, neutral, np.ones(len(neutral.meta), bool))
    confidence = np.maximum(p, 1 - p)
    dev, felt = neutral.mask(split="neutral-dev"), neutral.mask(split="felt-dev")
    best = (-1.0, 1.0)
    for cap in np.round(np.arange(1.0, 0.795, -0.01), 2):
        shown = quiet & (confidence < cap)
        gain = float(shown[dev].mean() - shown[felt].mean())
        if gain > best[0] + 1e-9:
            best = (gain, float(cap))
    return best[1]


def head_p(head: LabelHead, features: Features, rows: np.ndarray) -> np.ndarray:
    d = readout(features)[rows]
    languages = [row["language"] for row, keep in zip(features.meta, rows, strict=True) if keep]
    return np.array([head.p_positive(float(x), 0.0, language)
                     for x, language in zip(d, languages, strict=True)])  # fmt: skip


def head_report(head: LabelHead, features: Features, neutral: Features | None
                ) -> tuple[list[list[object]], list[dict[str, Any]]]:  # fmt: skip
    """The fitted head as the bot shows its labels, on rows it was never fitted on: the
    evaluation rows per language, and benchmarks.accuracy.neutral's TEST and FELT messages; a table
    and
    the rows themselves."""
    table_rows: list[list[object]] = []
    per_row: list[dict[str, Any]] = []
    sets = [(features, features.mask(split="eval", language=language), f"eval {language}")
            for language in ("en", "zh")]  # fmt: skip
    if neutral is not None:
        sets += [(neutral, neutral.mask(split=split), split) for split in ("neutral-test", "felt")]
    for source, rows, name in sets:
        if not rows.any():  # features of training rows only (label_features --no-eval)
            continue
        d = readout(source)
        shown = [head.sentiment(float(d[i]), 0.0, source.meta[i]["text"], source.hidden[i])
                 for i in np.flatnonzero(rows)]  # fmt: skip
        p = np.array([sentiment.p_positive for sentiment in shown])
        quiet = np.array([sentiment.neutral for sentiment in shown])
        for i, sentiment in zip(np.flatnonzero(rows), shown, strict=True):
            per_row.append({"set": name, **source.meta[i], "p_positive": sentiment.p_positive,
                            "shown": sentiment.tone})  # fmt: skip
        gold_labels = [source.meta[i]["label"] for i in np.flatnonzero(rows)]
        if name == "neutral-test":
            table_rows.append([name, len(p), None, None, None, None, None, quiet.mean()])
            continue
        truth = np.array([label == "positive" for label in gold_labels])
        result = report(truth, p)
        table_rows.append([name, result["n"], result["accuracy"], result["recall+"],
                           result["recall-"], result["auc"], result["ece"],
                           quiet.mean()])  # fmt: skip
    return table_rows, per_row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.fitting.label_fit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(parser)
    parser.add_argument(
        "--features",
        type=Path,
        help="default: benchmarks/results/features/<GGUF stem of the model>",
    )
    parser.add_argument(
        "--write",
        type=Path,
        nargs="?",
        const=HEADS_DIR,
        default=None,
        help=f"fit the model's head and save it in this folder ({HEADS_DIR})",
    )
    parser.add_argument("--frame", default="analyst", help="the frame the head is fitted on")
    parser.add_argument("--rows", type=Path, help="with --write: the report per row (JSONL)")
    parser.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="FOLDS",
        help="compare the levers by cross-validation on the training rows only",
    )
    args = parser.parse_args(argv)
    folder: Path = args.features or features_folder(args.model)
    if args.cv:
        return compare_by_cv(folder, args.cv)
    if args.write:
        record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        model = ModelIdentity(**{key: record[key] for key in
                                 ("name", "sha256", "hidden_size", "vocab_size")})  # fmt: skip
        neutral_path = folder / f"{args.frame}-neutral.npz"
        neutral = Features.load(neutral_path) if neutral_path.is_file() else None
        features = Features.load(folder / f"{args.frame}.npz")
        head = replace(fit_head(features, neutral), model=model)
        if neutral is not None:
            felt = fit_nothing_felt(features, neutral, LmHead.read(Path(record["gguf"])))
            head = replace(head, nothing_felt=felt)
            cap = fit_max_confidence(head, neutral)
            note = "; nothing-felt readout and its confidence cap on the same DEV messages"
            head = replace(head, neutral_max_confidence=cap, fitted_on=head.fitted_on + note)
        args.write.mkdir(parents=True, exist_ok=True)
        head.save(head_file(model.name, args.write))
        shown = {key: value for key, value in asdict(head).items() if key != "nothing_felt"}
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        print(f"written to {head_file(model.name, args.write)}")
        table_rows, per_row = head_report(head, features, neutral)
        headers = ["rows (never fitted on)", "n", "accuracy", "recall+", "recall-", "AUC",
                   "ECE", "shown neutral"]  # fmt: skip
        print(table(headers, table_rows, digits=3))
        if args.rows:
            args.rows.parent.mkdir(parents=True, exist_ok=True)
            args.rows.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n"
                                         for row in per_row), encoding="utf-8")  # fmt: skip
        return 0
    rows: list[list[object]] = []
    for path in sorted(folder.glob("*.npz")):
        if path.stem.endswith("-neutral"):
            continue
        rows += evaluate(Features.load(path))
    headers = ["frame", "lang", "rows", "lever", "n", "accuracy", "recall+", "recall-", "AUC",
               "ECE"]  # fmt: skip
    print(table(headers, rows, digits=3))
    return 0


def label_directions(features: Features, w: np.ndarray) -> dict[str, np.ndarray]:
    """Per language, w_pos − w_neg for the words the frame's readout compares. The features
    keep the words' scores, not their token ids: each word's row of W is the one whose
    scores W·h reproduce that word's column on a few rows (exact up to float rounding)."""
    predicted = w @ features.hidden[:4].T  # (vocab, 4)
    directions = {}
    for language in ("en", "zh"):
        pair = FRAME_WORDS.get(features.frame, ("正面", "负面"))
        if features.frame == "native" and language == "en":
            pair = ("positive", "negative")
        ids = [int(np.abs(predicted - features.column(word)[:4]).sum(axis=1).argmin())
               for word in pair]  # fmt: skip
        directions[language] = w[ids[0]] - w[ids[1]]
    return directions


def compare_by_cv(folder: Path, folds: int) -> int:
    """Every frame's levers by cross-validation on its training rows (`--cv FOLDS`)."""
    from scripts.fitting.label_features import lm_head_matrix

    record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    w = lm_head_matrix(Path(record["gguf"]))
    rows: list[list[object]] = []
    for path in sorted(folder.glob("*.npz")):
        if path.stem.endswith("-neutral"):
            continue
        features = Features.load(path)
        features.directions = label_directions(features, w)
        rows += cross_validate(features, folds)
    headers = ["frame", "lang", "rows", "lever", "n", "accuracy", "recall+", "recall-", "AUC",
               "ECE"]  # fmt: skip
    print(table(headers, rows, digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())

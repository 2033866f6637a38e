"""Sentiment accuracy of the one model against the original design and a classical baseline.

    python -m benchmarks.accuracy.sentiment --data benchmarks/results/data/en.jsonl --data
    benchmarks/results/data/zh.jsonl
        [--method logits|generate|baseline|all] [--limit N] [--json OUT]

Methods, on the same rows:
- logits: the bot's default, one forward pass comparing the scores of 正面 and 负面, through
  the shipped calibration and "nothing felt" readout (engine/model/label_head.py, fitted on
  training rows only by scripts.fitting.label_fit);
- generate: the original design, 5 greedy tokens then parsed (an answer naming neither or
  both labels is "unparsable" and counted as wrong; `accuracy_with_fallback` is what the bot
  does in SENTIMENT_METHOD=generate, which falls back to the scores);
- baseline: no LLM, TF-IDF over character 1-3-grams + logistic regression, trained on the
  `train_<lang>.jsonl` file beside each data file (written by `python -m benchmarks.data.datasets`).
Input rows are JSONL {"text", "label": "positive"|"negative"}; other fields are ignored.

Reported per file: `accuracy` (two-way: the side the scores favour, also for a message shown
as neutral), recall per label, AUC, `ECE` (expected calibration error of the shown
confidence over 10 bins) and `neutral share` (the rows shown as neutral; it must stay small).
With the logits method it also reports benchmarks.accuracy.neutral's messages that nobody fitted on:
the
`neutral rate` on TEST (greetings, questions, facts: should be shown as neutral) and on FELT
(short felt messages: should not be), and draws the reliability diagram
(benchmarks/results/sentiment-reliability.png).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy import neutral as neutral_messages
from benchmarks.common import (
    auc,
    bench_settings,
    classification_metrics,
    describe_machine,
    ece,
    percentile,
    read_jsonl,
    runner_factory,
    table,
    write_json,
)

RELIABILITY_PNG = Path("benchmarks/results/sentiment-reliability.png")
DEFAULT_DATA = ("benchmarks/results/data/en.jsonl", "benchmarks/results/data/zh.jsonl")
METHODS = ("logits", "generate", "baseline")
# label (None = unparsable), p_positive or score, shown as neutral
Prediction = tuple[str | None, float, bool]


def balanced_head(rows: Sequence[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """The first rows in file order, at most limit/2 per label (all rows when limit is None)."""
    if limit is None:
        return list(rows)
    taken: dict[str, int] = {}
    out = []
    for row in rows:
        if taken.get(row["label"], 0) < limit // 2:
            taken[row["label"]] = taken.get(row["label"], 0) + 1
            out.append(row)
    return out


def train_file_for(data: Path) -> Path:
    return data.with_name(f"train_{data.name}")


def train_baseline(train_rows: Sequence[dict[str, Any]]) -> Callable[[str], Prediction]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2),
        LogisticRegression(max_iter=2000),
    )
    model.fit([r["text"] for r in train_rows], [r["label"] for r in train_rows])
    positive = list(model.classes_).index("positive")

    def predict(text: str) -> Prediction:
        p = float(model.predict_proba([text])[0][positive])
        return ("positive" if p >= 0.5 else "negative"), p, False

    return predict


def llm_predictors(runner: Any) -> dict[str, Callable[[str], Prediction]]:
    def logits(text: str) -> Prediction:
        # The bot's own tag() path (prefix-cached label pass when the runner has one).
        sentiment = runner.tag([text])[0]
        return sentiment.label, sentiment.p_positive, sentiment.neutral

    def generate(text: str) -> Prediction:
        label, _raw = runner.generate_label(text)
        return label, float("nan"), False

    return {"logits": logits, "generate": generate}


def evaluate(
    rows: Sequence[dict[str, Any]], predict: Callable[[str], Prediction], tag: str
) -> dict[str, Any]:
    labels: list[str | None] = []
    scores: list[float] = []
    neutral: list[bool] = []
    latencies: list[float] = []
    for index, row in enumerate(rows, start=1):
        start = time.perf_counter()
        label, score, shown_neutral = predict(row["text"])
        latencies.append((time.perf_counter() - start) * 1000.0)
        labels.append(label)
        scores.append(score)
        neutral.append(shown_neutral)
        if index % 50 == 0:
            print(f"  {tag}: {index}/{len(rows)}", file=sys.stderr, flush=True)
    truth = [row["label"] for row in rows]
    metrics = classification_metrics(truth, labels).as_dict()
    metrics.update(
        unparsable=sum(label is None for label in labels),
        latency_ms_p50=percentile(latencies, 50),
        latency_ms_p95=percentile(latencies, 95),
        neutral_share=sum(neutral) / len(neutral) if neutral else None,
        predictions=labels,
        scores=scores,
        neutral=neutral,
    )
    if all(s == s for s in scores):  # no NaN: a score is available for the ranking metrics
        gold = np.array([t == "positive" for t in truth])
        metrics["roc_auc"] = auc(gold, np.array(scores))
        metrics["ece"] = ece(gold, np.array(scores))
    return metrics


def neutral_rates(predict: Callable[[str], Prediction]) -> dict[str, Any]:
    """How benchmarks.accuracy.neutral's report-only messages are shown (none of them was fitted
    on)."""
    quiet = [predict(text) for text in neutral_messages.TEST]
    felt = [predict(text) for text, _label in neutral_messages.FELT]
    right = [p[0] == label for p, (_text, label) in zip(felt, neutral_messages.FELT, strict=True)]
    return {
        "neutral_rate_test": sum(p[2] for p in quiet) / len(quiet),
        "neutral_rate_felt": sum(p[2] for p in felt) / len(felt),
        "felt_accuracy": sum(right) / len(right),
        "test": [
            {"text": text, "label": p[0], "p_positive": p[1], "neutral": p[2]}
            for text, p in zip(neutral_messages.TEST, quiet, strict=True)
        ],
        "felt": [
            {"text": text, "gold": gold, "label": p[0], "p_positive": p[1], "neutral": p[2]}
            for (text, gold), p in zip(neutral_messages.FELT, felt, strict=True)
        ],
    }


def reliability_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Shown confidence against how often the shown side was right, per 10 bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0.5, 1.0], [0.5, 1.0], color="grey", linestyle="--", label="perfect")
    edges = np.linspace(0.5, 1.0, 11)
    for name, (gold, p_positive) in curves.items():
        predicted = p_positive >= 0.5
        confidence = np.where(predicted, p_positive, 1 - p_positive)
        right = predicted == gold
        xs, ys = [], []
        for low, high in itertools.pairwise(edges):
            inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
            if inside.sum() >= 5:
                xs.append(confidence[inside].mean())
                ys.append(right[inside].mean())
        axes.plot(xs, ys, marker="o", label=name)
    axes.set_xlabel("shown confidence")
    axes.set_ylabel("share right")
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def add_fallback(results: dict[str, dict[str, Any]], truth: Sequence[str]) -> None:
    """What SENTIMENT_METHOD=generate does: an unparsable answer falls back to the scores."""
    if "generate" in results and "logits" in results:
        merged = [g if g is not None else lg for g, lg in
                  zip(results["generate"]["predictions"], results["logits"]["predictions"],
                      strict=True)]  # fmt: skip
        results["generate"]["accuracy_with_fallback"] = classification_metrics(
            truth, merged
        ).accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy.sentiment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        action="append",
        type=Path,
        help=f"JSONL file (repeatable; default: {' and '.join(DEFAULT_DATA)})",
    )
    parser.add_argument("--method", choices=(*METHODS, "all"), default="all")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N rows of each file, N/2 per label"
    )
    parser.add_argument("--json", default=None, help="default: benchmarks/results/sentiment.json")
    parser.add_argument(
        "--no-neutral-messages",
        action="store_true",
        help="skip benchmarks.accuracy.neutral's TEST/FELT (e.g. when another run of the same "
        "head reports them)",
    )
    args = parser.parse_args(argv)
    files = args.data or [Path(p) for p in DEFAULT_DATA]
    methods = list(METHODS) if args.method == "all" else [args.method]

    runner = None
    if "logits" in methods or "generate" in methods:
        settings = bench_settings()
        started = time.perf_counter()
        runner = runner_factory(settings, sentiment_method="logits")()
        print(f"model loaded in {time.perf_counter() - started:.1f} s ({runner.name})",
              file=sys.stderr)  # fmt: skip

    report: dict[str, Any] = {"machine": describe_machine(), "limit": args.limit, "files": {}}
    rows_out: list[list[object]] = []
    confusions: list[str] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in files:
        rows = balanced_head(read_jsonl(path), args.limit)
        truth = [row["label"] for row in rows]
        results: dict[str, dict[str, Any]] = {}
        for method in methods:
            if method == "baseline":
                train_path = train_file_for(path)
                if not train_path.is_file():
                    print(f"skipping baseline for {path}: no {train_path}", file=sys.stderr)
                    continue
                predict = train_baseline(read_jsonl(train_path))
            elif method == "generate" and not hasattr(runner, "generate_label"):
                print("skipping generate: it needs BACKEND=transformers", file=sys.stderr)
                continue
            else:
                predict = llm_predictors(runner)[method]
            results[method] = evaluate(rows, predict, f"{path.name} {method}")
        add_fallback(results, truth)
        report["files"][str(path)] = results
        for method, m in results.items():
            rows_out.append([path.name, method, m["n"], m["accuracy"], m["recall"]["positive"],
                             m["recall"]["negative"], m.get("roc_auc"), m.get("ece"),
                             m["neutral_share"], m["unparsable"] if method == "generate" else None,
                             m["latency_ms_p50"], m["latency_ms_p95"]])  # fmt: skip
            if method == "logits":
                gold = np.array([t == "positive" for t in truth])
                curves[path.stem] = (gold, np.array(m["scores"]))
            c = m["confusion"]
            confusions.append(
                f"{path.name} {method}: true pos -> pred pos/neg/none "
                f"{c['positive']['positive']}/{c['positive']['negative']}/{c['positive']['none']};"
                f" true neg -> {c['negative']['positive']}/{c['negative']['negative']}/"
                f"{c['negative']['none']}"
            )
    headers = ["data", "method", "n", "accuracy", "recall+", "recall-", "AUC", "ECE",
               "neutral share", "unparsable", "p50 ms", "p95 ms"]  # fmt: skip
    print(table(headers, rows_out, digits=3))
    print("\nconfusion matrices:\n" + "\n".join(confusions))
    if "logits" in methods and not args.no_neutral_messages:
        rates = neutral_rates(llm_predictors(runner)["logits"])
        report["neutral"] = rates
        print(f"\nneutral rate: {rates['neutral_rate_test']:.2f} of the neutral bench's TEST "
              f"({len(rates['test'])} messages), {rates['neutral_rate_felt']:.2f} of FELT "
              f"({len(rates['felt'])} short felt messages; their two-way accuracy "
              f"{rates['felt_accuracy']:.2f})")  # fmt: skip
        if curves:
            reliability_png(curves, RELIABILITY_PNG)
            print(f"reliability diagram: {RELIABILITY_PNG}")
    write_json(args.json, "sentiment", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

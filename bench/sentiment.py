"""Sentiment accuracy of the one model against the original design and a classical baseline.

    python -m bench.sentiment --data bench/results/data/en.jsonl --data bench/results/data/zh.jsonl
        [--method logits|generate|baseline|all] [--limit N] [--json OUT]

Methods, on the same rows:
- logits: the bot's default, one forward pass comparing the scores of 正面 and 负面;
- generate: the original design, 5 greedy tokens then parsed (an answer naming neither or
  both labels is "unparsable" and counted as wrong; `accuracy_with_fallback` is what the bot
  does in SENTIMENT_METHOD=generate, which falls back to the scores);
- baseline: no LLM, TF-IDF over character 1-3-grams + logistic regression, trained on the
  `train_<lang>.jsonl` file beside each data file (written by `python -m bench.datasets`).
Input rows are JSONL {"text", "label": "positive"|"negative"}; other fields are ignored.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    bench_settings,
    classification_metrics,
    describe_machine,
    percentile,
    read_jsonl,
    runner_factory,
    table,
    write_json,
)

DEFAULT_DATA = ("bench/results/data/en.jsonl", "bench/results/data/zh.jsonl")
METHODS = ("logits", "generate", "baseline")
Prediction = tuple[str | None, float]  # label (None = unparsable), p_positive or score


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
        return ("positive" if p >= 0.5 else "negative"), p

    return predict


def llm_predictors(runner: Any) -> dict[str, Callable[[str], Prediction]]:
    def logits(text: str) -> Prediction:
        # The bot's own tag() path (prefix-cached label pass when the runner has one).
        sentiment = runner.tag([text])[0]
        return sentiment.label, sentiment.p_positive

    def generate(text: str) -> Prediction:
        label, _raw = runner.generate_label(text)
        return label, float("nan")

    return {"logits": logits, "generate": generate}


def evaluate(
    rows: Sequence[dict[str, Any]], predict: Callable[[str], Prediction], tag: str
) -> dict[str, Any]:
    labels: list[str | None] = []
    scores: list[float] = []
    latencies: list[float] = []
    for index, row in enumerate(rows, start=1):
        start = time.perf_counter()
        label, score = predict(row["text"])
        latencies.append((time.perf_counter() - start) * 1000.0)
        labels.append(label)
        scores.append(score)
        if index % 50 == 0:
            print(f"  {tag}: {index}/{len(rows)}", file=sys.stderr, flush=True)
    truth = [row["label"] for row in rows]
    metrics = classification_metrics(truth, labels).as_dict()
    metrics.update(
        unparsable=sum(label is None for label in labels),
        latency_ms_p50=percentile(latencies, 50),
        latency_ms_p95=percentile(latencies, 95),
        predictions=labels,
        scores=scores,
    )
    if all(s == s for s in scores):  # no NaN: a score is available for a ranking metric
        from sklearn.metrics import roc_auc_score

        metrics["roc_auc"] = float(roc_auc_score([t == "positive" for t in truth], scores))
    return metrics


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
        prog="python -m bench.sentiment",
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
    parser.add_argument("--json", default=None, help="default: bench/results/sentiment.json")
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
                             m["recall"]["negative"], m["macro_f1"], m.get("roc_auc"),
                             m["unparsable"] if method == "generate" else None,
                             m["latency_ms_p50"], m["latency_ms_p95"]])  # fmt: skip
            c = m["confusion"]
            confusions.append(
                f"{path.name} {method}: true pos -> pred pos/neg/none "
                f"{c['positive']['positive']}/{c['positive']['negative']}/{c['positive']['none']};"
                f" true neg -> {c['negative']['positive']}/{c['negative']['negative']}/"
                f"{c['negative']['none']}"
            )
    headers = ["data", "method", "n", "accuracy", "recall+", "recall-", "macro-F1", "AUC",
               "unparsable", "p50 ms", "p95 ms"]  # fmt: skip
    print(table(headers, rows_out, digits=3))
    print("\nconfusion matrices:\n" + "\n".join(confusions))
    write_json(args.json, "sentiment", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `/mood why` costs, and what it says, on the configured backend.

    python -m benchmarks.quality.why [--json OUT] [--scripted]

/mood why labels a message and the message with each clause left out (engine/chat/why.py).
Through the runner's own interface, per message of benchmarks/messages.py plus a few with
contrasting clauses (MIXED), this times those texts in one `tag` call (the batched pass the bot
makes) against one `tag` call per text, in the same run, and prints each explanation's strongest
clause. The ratio (sequential / batched) is what batching saves; absolute times depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import (
    bench_settings,
    describe_machine,
    mean,
    runner_factory,
    table,
    write_json,
)
from benchmarks.messages import MESSAGES
from engine.chat.why import MAX_CLAUSES, attribute, leave_out, split_clauses

MIXED: tuple[str, ...] = (
    "考试没考好，但是朋友们都来安慰我，很温暖。",
    "The hotel was lovely, but the flight home was a nightmare.",
    "下了一整天的雨，不过晚上看到了彩虹，心情一下子好了。",
    "I got the job! Although the commute will be long and tiring.",
)


def variants(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    spans = split_clauses(text)[:MAX_CLAUSES]
    return spans, [text, *(leave_out(text, span) for span in spans)] if len(spans) > 1 else [text]


def measure(runner: Any, texts: Sequence[str]) -> dict[str, Any]:
    runner.tag(["warm-up", "预热"])  # the analyst head's cache is built once, not timed
    rows: list[dict[str, Any]] = []
    for text in texts:
        spans, batch = variants(text)
        start = time.perf_counter()
        batched = runner.tag(batch)
        batched_s = time.perf_counter() - start
        start = time.perf_counter()
        one_by_one = [runner.tag([variant])[0] for variant in batch]
        sequential_s = time.perf_counter() - start
        row: dict[str, Any] = {
            "text": text,
            "texts_labelled": len(batch),
            "batched_ms": 1000 * batched_s,
            "sequential_ms": 1000 * sequential_s,
            # A batch runs another floating-point path than one text alone.
            "score_gap": max(
                abs(a.p_positive - b.p_positive) for a, b in zip(batched, one_by_one, strict=True)
            ),
            "p_positive": batched[0].p_positive,
        }
        if len(batch) > 1:
            strongest = attribute(text, spans, batched[0], batched[1:]).strongest()
            row["strongest"] = [(e.clause, round(e.shift, 2)) for e in strongest]
        rows.append(row)
    multi = [row for row in rows if row["texts_labelled"] > 1]
    return {
        "backend": runner.name,
        "messages": len(rows),
        "mean_texts_labelled": mean([row["texts_labelled"] for row in rows]),
        "batched_ms_per_message": mean([row["batched_ms"] for row in multi]),
        "sequential_ms_per_message": mean([row["sequential_ms"] for row in multi]),
        "sequential_over_batched": (
            sum(row["sequential_ms"] for row in multi) / sum(row["batched_ms"] for row in multi)
            if multi
            else None
        ),
        "max_score_gap": max(row["score_gap"] for row in rows),
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--scripted", action="store_true", help="the tests' scripted model")
    args = parser.parse_args(argv)
    if args.scripted:
        from tests.scripted import ScriptedRunner

        runner: Any = ScriptedRunner()
    else:
        runner = runner_factory(bench_settings())()
    texts = [message.text for message in MESSAGES] + list(MIXED)
    results = measure(runner, texts)
    results["machine"] = describe_machine()
    print(f"backend {results['backend']}: {results['messages']} messages, "
          f"{results['mean_texts_labelled']:.2f} texts labelled each; largest p_positive gap "
          f"batched vs alone {results['max_score_gap']:.3f}")  # fmt: skip
    print(table(
        ["batched ms / message", "one by one ms / message", "one by one / batched"],
        [[results["batched_ms_per_message"], results["sequential_ms_per_message"],
          results["sequential_over_batched"]]],
    ))  # fmt: skip
    for row in results["rows"]:
        if row.get("strongest"):
            print(
                f"  {row['text']}\n    p {row['p_positive']:.2f}; moved most by {row['strongest']}"
            )
    if args.json:
        write_json(args.json, "why", results)


if __name__ == "__main__":
    main()

"""What one batched step saves, and so how far concurrency can raise throughput at all.

    python -m benchmarks.speed.batching [--replies 1,2,4,8] [--json OUT]

benchmarks.load.load measures "throughput vs sequential" end to end; this shows where its ceiling
comes from, for the configured backend (settings from the environment, as the bot reads
them). Through the runner's own interface (tag, start_reply, step_many), for k = 1, 2, 4, 8:
- k messages are labelled in one `tag` call (time per label);
- k replies start (the bot's prompts for a first message: no history, and no kept
  conversation to continue); each one's prompt runs alone up to its first token (time per
  prompt), then all k decode together, one `step_many` per token, to
  their ends. A step counts for k only while all k replies are still decoding;
- decode speed-up = tokens/s of k replies together over tokens/s of one alone.

The ceiling for benchmarks.load.load follows from these: one message alone costs a label, a prompt
and R decode steps of one reply (R: the mean reply length measured here); with k users it costs
a k-th of a k-label pass, the same prompt (a prompt is already many tokens per pass, so
batching it with others saves little) and R k-th parts of a k-reply step. Real load never
keeps all k replies in step, so benchmarks.load.load lands below this figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import (
    bench_settings,
    describe_machine,
    mean,
    runner_factory,
    table,
    write_json,
)
from benchmarks.messages import messages
from engine.chat.prompts import reply_request
from engine.types import GenerationParams

MIN_STEPS = 8  # steps with all k replies decoding, for a figure worth reporting
MAX_EXTRA_ROUNDS = 4  # rounds added to reach MIN_STEPS when replies end early


@dataclass
class BatchFigures:
    replies: int
    label_s: float = 0.0  # per message, labelled k at a time
    prompt_s: list[float] = field(default_factory=list)  # each reply's prompt, run alone
    step_s: list[float] = field(default_factory=list)  # step_many calls with all k decoding
    reply_tokens: list[int] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        mean_step = mean(self.step_s)
        return self.replies / mean_step if mean_step else None


def measure(runner: Any, replies: int, params: GenerationParams) -> BatchFigures:
    figures = BatchFigures(replies)
    texts = [message.text for message in messages(replies)]
    start = time.perf_counter()
    runner.tag(texts)
    figures.label_s = (time.perf_counter() - start) / replies
    live = []
    counts: dict[int, int] = {}  # stream → tokens it has decoded
    for text in texts:
        # A first message (no history); the label only changes a line of the prompt.
        stream = runner.start_reply(reply_request("positive", text, (), params))
        start = time.perf_counter()
        delta = runner.step_many([stream])[0]
        while delta == "":  # the middle of its prompt (or of a character)
            delta = runner.step_many([stream])[0]
        figures.prompt_s.append(time.perf_counter() - start)
        counts[id(stream)] = 0 if delta is None else 1
        if delta is not None:
            live.append(stream)
    first = True
    while live:
        start = time.perf_counter()
        deltas = runner.step_many(live)
        elapsed = time.perf_counter() - start
        if len(live) == replies and not first:  # the first may regroup caches: not a step
            figures.step_s.append(elapsed)
        first = False
        for stream, delta in zip(live, deltas, strict=True):
            if delta is not None:
                counts[id(stream)] += 1
        live = [stream for stream, delta in zip(live, deltas, strict=True) if delta is not None]
    figures.reply_tokens = list(counts.values())
    return figures


def ceiling(alone: BatchFigures, together: BatchFigures) -> float | None:
    """benchmarks.load.load's best possible "throughput vs sequential" with `together.replies`
    users."""
    tokens = mean(alone.reply_tokens)
    step_alone, step_together = mean(alone.step_s), mean(together.step_s)
    prompt = mean(alone.prompt_s)
    if tokens is None or step_alone is None or step_together is None or prompt is None:
        return None
    sequential = alone.label_s + prompt + tokens * step_alone
    concurrent = together.label_s + prompt + tokens * step_together / together.replies
    return sequential / concurrent


def run(sizes: Sequence[int], max_new_tokens: int | None, seed: int) -> dict[str, Any]:
    """`sizes` must include 1: every figure is relative to one reply alone."""
    from engine.model.backends import llama_cpp as llama_cpp_runner

    # Every prompt must cost what a first message costs: on llama.cpp a prompt that repeats
    # an earlier one would continue its kept KV and run almost nothing.
    llama_cpp_runner.CONVERSATIONS_KEPT = 0
    settings = bench_settings(max_new_tokens=max_new_tokens, seed=seed)
    runner = runner_factory(settings)()
    params = settings.chat.generation
    measure(runner, 2, params)  # warm-up: caches both languages' reply prompt openings
    results: list[BatchFigures] = []
    for size in sizes:
        figures = measure(runner, size, params)
        for _ in range(MAX_EXTRA_ROUNDS):
            if len(figures.step_s) >= MIN_STEPS:
                break
            more = measure(runner, size, params)  # a reply ended early: another round
            figures.step_s += more.step_s
            figures.reply_tokens += more.reply_tokens
        results.append(figures)
        print(f"  {size} together: done", file=sys.stderr, flush=True)
    alone = next(figures for figures in results if figures.replies == 1)
    rows = []
    for figures in results:
        speed, base = figures.tokens_per_s, alone.tokens_per_s
        rows.append({
            "replies": figures.replies,
            "label_ms_each": 1000 * figures.label_s,
            "prompt_ms_each": 1000 * (mean(figures.prompt_s) or 0.0),
            "step_ms": 1000 * (mean(figures.step_s) or 0.0),
            "decode_tokens_per_s": speed,
            "decode_speedup": speed / base if speed and base else None,
            "load_ceiling": ceiling(alone, figures),
        })  # fmt: skip
    return {
        "backend": runner.name,
        "reply_tokens_mean": mean([n for f in results for n in f.reply_tokens]),
        "rows": rows,
        "machine": describe_machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replies", default="1,2,4,8", help="batch sizes, comma-separated")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sizes = sorted({int(size) for size in args.replies.split(",")})
    if 1 not in sizes:
        parser.error("--replies must include 1: every figure is relative to one reply alone")
    report = run(sizes, args.max_new_tokens, args.seed)
    print(f"{report['backend']}; mean reply {report['reply_tokens_mean']:.0f} tokens")
    headers = list(report["rows"][0])
    print(table(headers, [[row[key] for key in headers] for row in report["rows"]]))
    write_json(args.json, "batching", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

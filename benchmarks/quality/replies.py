"""Reply quality guard: language, echoing, stopping by itself, length.

    python -m benchmarks.quality.replies [--dtype auto|float32|bfloat16] [--max-new-tokens N]
    [--seed 0]
        [--messages 20] [--json OUT]

Sends every message of benchmarks.messages once (each as a new user, so no history) through
ChatService.handle with the real model, and reports:
- same language: engine.prompts.detect_language(reply) == detect_language(message);
- echo: the reply merely repeats the user: character-bigram Jaccard similarity (letters,
  digits and CJK only, lower-cased) >= 0.5, or the longest common substring covers >= 80%
  of the user's message;
- copies the example: bigram Jaccard >= 0.5 with the fixed example answer of the prompt;
- finished: ReplyDone.finished (the model ended its turn before MAX_NEW_TOKENS);
- mean length in characters and in tokens.
Run it for every speed option and compare with the plain path (the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.common import (
    bench_service,
    bench_settings,
    describe_machine,
    mean,
    recording_runner_factory,
    table,
    weights_of,
    write_json,
)
from benchmarks.messages import messages
from engine.chat.prompts import FIRST_LAYOUT, detect_language, reply_examples

ECHO_JACCARD = 0.5
ECHO_SUBSTRING = 0.8
EXAMPLE_JACCARD = 0.5


def _normalized(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def char_bigrams(text: str) -> set[str]:
    norm = _normalized(text)
    return {norm[i : i + 2] for i in range(len(norm) - 1)} if len(norm) > 1 else {norm} - {""}


def bigram_jaccard(a: str, b: str) -> float:
    x, y = char_bigrams(a), char_bigrams(b)
    return len(x & y) / len(x | y) if x | y else 0.0


def substring_ratio(reply: str, message: str) -> float:
    """Longest common substring of the two (normalized) texts, over the message's length."""
    a, b = _normalized(reply), _normalized(message)
    if not a or not b:
        return 0.0
    best = 0
    previous = [0] * (len(b) + 1)
    for ch in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, start=1):
            if ch == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best / len(b)


def is_echo(reply: str, message: str) -> bool:
    return (bigram_jaccard(reply, message) >= ECHO_JACCARD
            or substring_ratio(reply, message) >= ECHO_SUBSTRING)  # fmt: skip


def same_language(reply: str, message: str) -> bool:
    return detect_language(reply) == detect_language(message)


def copies_example(reply: str, message: str, label: str) -> bool:
    example = reply_examples(label, message, FIRST_LAYOUT)[1].content  # type: ignore[arg-type]
    return bigram_jaccard(reply, example) >= EXAMPLE_JACCARD


def quality(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rows of {message, reply, label, finished, tokens} into the shares and means."""

    def share(flags: list[bool]) -> float | None:
        return mean([float(f) for f in flags])

    return {
        "n": len(rows),
        "same_language": share([same_language(r["reply"], r["message"]) for r in rows]),
        "echo": share([is_echo(r["reply"], r["message"]) for r in rows]),
        "copies_example": share(
            [copies_example(r["reply"], r["message"], r["label"]) for r in rows]
        ),
        "finished": share([bool(r["finished"]) for r in rows]),
        "mean_chars": mean([len(r["reply"]) for r in rows]),
        "mean_tokens": mean([r["tokens"] for r in rows]),
    }


async def collect(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from engine.model.config import WorkerConfig
    from engine.model.worker import ModelWorker
    from engine.types import IncomingMessage, ReplyDone, ReplyFailed

    settings = bench_settings(max_new_tokens=args.max_new_tokens, dtype=args.dtype,
                              seed=args.seed)  # fmt: skip
    factory, streams = recording_runner_factory(settings)
    rows: list[dict[str, Any]] = []
    worker = ModelWorker(factory, WorkerConfig(request_timeout_s=1800.0))
    async with bench_service("replies", worker, settings.chat) as service:
        for i, m in enumerate(messages(args.messages)):
            user = f"user{i}"
            async for event in service.handle(IncomingMessage("bench", user, user, m.text)):
                if isinstance(event, ReplyDone):
                    rows.append({"message": m.text, "reply": event.text,
                                 "label": event.sentiment.label, "finished": event.finished,
                                 "tokens": len(streams[-1].generated)})  # fmt: skip
                elif isinstance(event, ReplyFailed):
                    print(f"message {i} failed: {event.reason}", file=sys.stderr)
            print(f"  {i + 1}/{args.messages}", file=sys.stderr, flush=True)
        dtype = weights_of(worker.runner)
    return rows, {"dtype": dtype, "generation": settings.chat.generation.__dict__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality.replies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default=None,
        help="default: MODEL_DTYPE",
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: MAX_NEW_TOKENS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--json", default=None, help="default: benchmarks/results/replies.json")
    args = parser.parse_args(argv)
    rows, config = asyncio.run(collect(args))
    groups = {"all": rows, **{lang: [r for r in rows if detect_language(r["message"]) == lang]
                              for lang in ("zh", "en")}}  # fmt: skip
    results = {name: quality(group) for name, group in groups.items()}
    keys = ["n", "same_language", "echo", "copies_example", "finished", "mean_chars", "mean_tokens"]
    print(
        f"dtype {config['dtype']}, max_new_tokens "
        f"{config['generation']['max_new_tokens']}, seed {args.seed}"
    )
    print(table(["group", *keys], [[name, *(r[k] for k in keys)] for name, r in results.items()]))
    write_json(
        args.json,
        "replies",
        {
            "machine": describe_machine(),
            "args": vars(args),
            "config": config,
            "results": results,
            "replies": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

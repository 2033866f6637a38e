"""One user's long conversation: does the time to the first reply token grow with the history?

    python -m benchmarks.speed.conversation [--no-reuse] [--no-shift] [--max-new-tokens N]
        [--seed 0] [--json OUT]

Sends the messages of CONVERSATION one after another as the same user in the same chat
through ChatService.handle (real model from the environment's settings, temporary SQLite
store), so every prompt carries the stored history, as in a real chat. Reports per message:
its label, the time to the label and to the first reply token. On the llama.cpp backend a
finished reply's KV is kept, so a message that continues the conversation runs only its own
tokens; `--no-reuse` turns that off (CONVERSATIONS_KEPT = 0) to show what it saves. Once the
history window moves on (past HISTORY_TURNS), the kept KV is shifted over the turns that left
it instead of read again; `--no-shift` turns that off (SHIFT_KEPT = False). Compare runs by
the ratio of late to early messages' first token, each against its own run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from benchmarks.common import (
    bench_service,
    bench_settings,
    describe_machine,
    runner_factory,
    table,
    write_json,
)

CONVERSATION = (
    "I failed my driving test this morning.",
    "I practised every weekend for three months.",
    "The examiner said I hesitated too much at the roundabout.",
    "Now I have to wait six weeks to book another test.",
    "My friends all passed on their first try.",
    "I feel like I'm just bad at this.",
    "Maybe I should take a few more lessons first.",
    "Thanks, I'll call the driving school tomorrow.",
    # Past HISTORY_TURNS (12 turns: 6 exchanges) the history window moves with every message.
    "The school has a free slot on Thursday evening.",
    "My instructor says roundabouts are where most people hesitate.",
    "We practised the big roundabout near the station three times.",
    "The second and third time went smoothly.",
    "I booked the new test for the end of next month.",
    "My sister offered to drive with me on Sundays.",
    "I feel a lot calmer about it now.",
    "Thanks for listening to all of this.",
)


async def converse(args: argparse.Namespace) -> list[dict[str, Any]]:
    from engine.model.config import WorkerConfig
    from engine.model.worker import ModelWorker
    from engine.types import IncomingMessage, ReplyDone, SentimentTagged, TextDelta

    settings = bench_settings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    if args.no_reuse:
        from engine.model.backends import llama_cpp as llama_cpp_runner

        llama_cpp_runner.CONVERSATIONS_KEPT = 0
    if args.no_shift:
        from engine.model.backends import llama_cpp as llama_cpp_runner

        llama_cpp_runner.SHIFT_KEPT = False
    rows: list[dict[str, Any]] = []
    worker = ModelWorker(runner_factory(settings), WorkerConfig(max_active_replies=1))
    async with bench_service("conversation", worker, settings.chat) as service:
        for index, text in enumerate(CONVERSATION, start=1):
            row: dict[str, Any] = {"message": index, "text": text}
            start = time.perf_counter()
            async for event in service.handle(IncomingMessage("bench", "u1", "c1", text)):
                now = time.perf_counter() - start
                if isinstance(event, SentimentTagged):
                    row.update(label=event.sentiment.label, label_s=now)
                elif isinstance(event, TextDelta) and "first_token_s" not in row:
                    row["first_token_s"] = now
                elif isinstance(event, ReplyDone):
                    row["total_s"] = now
            rows.append(row)
            print(f"  {index}/{len(CONVERSATION)}", file=sys.stderr, flush=True)
        backend = worker.runner.name
    reuse = "off" if args.no_reuse else "on"
    print(f"{backend}; reuse {reuse}, shift {'off' if args.no_shift else 'on'}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-reuse", action="store_true")
    parser.add_argument("--no-shift", action="store_true")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", default=None, help="default: benchmarks/results/conversation.json"
    )
    args = parser.parse_args(argv)
    rows = asyncio.run(converse(args))
    print(table(["message", "label", "label s", "first token s", "total s"],
                [[r["message"], r.get("label"), r.get("label_s"), r.get("first_token_s"),
                  r.get("total_s")] for r in rows]))  # fmt: skip
    firsts: dict[int, float] = {r["message"]: r["first_token_s"] for r in rows
                                if r.get("first_token_s") is not None}  # fmt: skip
    early = [firsts[m] for m in range(2, 8) if m in firsts]
    late = [firsts[m] for m in range(9, len(rows) + 1) if m in firsts]
    if early and late:
        before, after = statistics.median(early), statistics.median(late)
        print(f"first token p50: messages 2-7 {before:.2f} s, 9-{len(rows)} {after:.2f} s "
              f"(late/early {after / before:.2f})")  # fmt: skip
    write_json(args.json, "conversation", {"machine": describe_machine(),
                                           "no_reuse": args.no_reuse,
                                           "no_shift": args.no_shift, "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

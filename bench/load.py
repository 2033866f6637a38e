"""Concurrent users through the engine's public async API, with a check that nothing is lost.

    python -m bench.load --users 8 --messages 3 [--compare-sequential] [--max-new-tokens N]

N simulated users run concurrently; each sends its M messages one after another (the next
once the previous reply has ended), through ChatService.handle — the path the adapters use —
with the real model (settings from the environment) and a temporary SQLite store.
Reported: throughput (replies per minute), p50/p95 time from sending to the label and to the
end of the reply, how many got a "busy" answer. Afterwards every message must have ended in
exactly one ReplyDone or one ReplyFailed("busy"), and the store must hold exactly one mood
event per tagged message. `--compare-sequential` also sends the same messages one at a
time (same per-user order, fresh store, same loaded model) for "throughput vs sequential".

    python -m bench.load --flood --users 4 --messages 3 [--flood-messages 50 --flood-seconds 10]

`--flood` first runs the N users alone, then again while one more user sends 50 messages in
10 s without waiting for answers. Reported: the others' label and reply p50/p95 in both runs
and their ratio (one process, one loaded model: the ratio says more than the seconds on a
shared machine), whether anything of theirs was lost, and what the flooder got (answered,
"slow down", busy). Past USER_QUEUE_MAX waiting messages the flooder is told to slow down;
nothing else may fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    bench_engine,
    bench_settings,
    describe_engine,
    describe_machine,
    percentile,
    table,
    write_json,
)
from bench.messages import messages
from chat.service import ChatService
from core.ports import MoodStore
from core.types import IncomingMessage, ReplyDone, ReplyFailed, SentimentTagged, UserKey

PLATFORM = "bench"
FLOODER = "flooder"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class Outcome:
    user: str
    index: int
    text: str
    label_s: float | None = None
    end_s: float | None = None
    tagged: int = 0  # SentimentTagged events seen
    done: int = 0  # ReplyDone events seen
    failures: list[str] = field(default_factory=list)  # ReplyFailed reasons seen
    reply_chars: int = 0
    finished: bool | None = None  # ReplyDone.finished: False when MAX_NEW_TOKENS cut it


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plan(users: int, per_user: int) -> dict[str, list[str]]:
    texts = [m.text for m in messages(users * per_user)]
    return {f"user{u}": texts[u * per_user : (u + 1) * per_user] for u in range(users)}


async def send(service: ChatService, outcome: Outcome) -> None:
    start = time.perf_counter()
    message = IncomingMessage(PLATFORM, outcome.user, outcome.user, outcome.text)
    async for event in service.handle(message):
        if isinstance(event, SentimentTagged):
            outcome.tagged += 1
            outcome.label_s = time.perf_counter() - start
        elif isinstance(event, ReplyDone):
            outcome.done += 1
            outcome.reply_chars, outcome.finished = len(event.text), event.finished
        elif isinstance(event, ReplyFailed):
            outcome.failures.append(event.reason)
    outcome.end_s = time.perf_counter() - start


async def run_concurrent(service: ChatService, work: dict[str, list[str]]) -> list[Outcome]:
    outcomes = {user: [Outcome(user, i, text) for i, text in enumerate(texts)]
                for user, texts in work.items()}  # fmt: skip

    async def user_session(items: list[Outcome]) -> None:
        for outcome in items:
            await send(service, outcome)

    await asyncio.gather(*(user_session(items) for items in outcomes.values()))
    return [o for items in outcomes.values() for o in items]


async def run_sequential(service: ChatService, work: dict[str, list[str]]) -> list[Outcome]:
    outcomes = []
    for index in range(max(len(texts) for texts in work.values())):
        for user, texts in work.items():
            if index < len(texts):
                outcome = Outcome(user, index, texts[index])
                await send(service, outcome)
                outcomes.append(outcome)
    return outcomes


async def stored_events(store: MoodStore, users: Sequence[str]) -> dict[str, int]:
    return {u: len(await store.mood_events(UserKey(PLATFORM, u), EPOCH)) for u in users}


def check_nothing_lost(
    work: dict[str, list[str]],
    outcomes: Sequence[Outcome],
    stored: dict[str, int],
    allowed: Sequence[str] = ("busy",),
) -> list[str]:
    """Every sent message ended exactly once (ReplyDone or an `allowed` failure, by default
    busy); one stored event per label."""
    problems = []
    seen = {(o.user, o.index): o for o in outcomes}
    for user, texts in work.items():
        for index in range(len(texts)):
            o = seen.get((user, index))
            if o is None:
                problems.append(f"{user}#{index}: no outcome at all")
                continue
            ends = o.done + len(o.failures)
            if ends != 1:
                problems.append(f"{user}#{index}: {ends} final events (want exactly 1)")
            elif o.failures and o.failures[0] not in allowed:
                problems.append(f"{user}#{index}: failed with {o.failures[0]!r}")
            if o.tagged > 1:
                problems.append(f"{user}#{index}: tagged {o.tagged} times")
        tagged = sum(o.tagged for o in outcomes if o.user == user)
        if stored.get(user, 0) != tagged:
            problems.append(f"{user}: {stored.get(user, 0)} stored mood events for "
                            f"{tagged} tagged messages")  # fmt: skip
    return problems


def summarize(outcomes: Sequence[Outcome], wall_s: float) -> dict[str, Any]:
    labels = [o.label_s for o in outcomes if o.label_s is not None]
    ends = [o.end_s for o in outcomes if o.done and o.end_s is not None]
    replies = sum(o.done for o in outcomes)
    return {
        "messages": len(outcomes),
        "cut_by_token_cap": sum(o.finished is False for o in outcomes),
        "replies": replies,
        "busy": sum(o.failures.count("busy") for o in outcomes),
        "other_failures": sum(len(o.failures) - o.failures.count("busy") for o in outcomes),
        "wall_s": wall_s,
        "replies_per_min": replies / wall_s * 60.0 if wall_s > 0 else None,
        "label_s_p50": percentile(labels, 50),
        "label_s_p95": percentile(labels, 95),
        "reply_s_p50": percentile(ends, 50),
        "reply_s_p95": percentile(ends, 95),
    }


async def measure(
    worker: Any, settings: Any, work: dict[str, list[str]], sequential: bool
) -> dict[str, Any]:
    from storage.store import SqlMoodStore

    with tempfile.TemporaryDirectory(prefix="bench-load-") as temp:
        store = await SqlMoodStore.open(Path(temp) / "load.db")
        try:
            service = ChatService(worker, store, settings.chat)
            load_before, cpu_before = os.getloadavg()[0], cpu_seconds()
            start = time.perf_counter()
            run = run_sequential if sequential else run_concurrent
            outcomes = await run(service, work)
            wall = time.perf_counter() - start
            cpu = cpu_seconds() - cpu_before
            stored = await stored_events(store, list(work))
        finally:
            await store.close()
    result = summarize(outcomes, wall)
    result["problems"] = check_nothing_lost(work, outcomes, stored)
    result["stored_events"] = sum(stored.values())
    # The machine may be shared: the load average says how much, and CPU seconds per reply
    # is far less sensitive to other processes than wall time is.
    result["cpu_s_per_reply"] = cpu / result["replies"] if result["replies"] else None
    result["load_avg_before_after"] = [load_before, os.getloadavg()[0]]
    result["outcomes"] = [asdict(o) for o in outcomes]
    return result


async def run_flood(
    service: ChatService, work: dict[str, list[str]], flood: list[str], seconds: float
) -> list[Outcome]:
    """The others' sessions as in run_concurrent, while FLOODER sends `flood` evenly over
    `seconds`, each message without waiting for the answer to the one before."""
    outcomes = [Outcome(FLOODER, i, text) for i, text in enumerate(flood)]

    async def flooder() -> None:
        sent = []
        for outcome in outcomes:
            sent.append(asyncio.create_task(send(service, outcome)))
            await asyncio.sleep(seconds / len(flood))
        await asyncio.gather(*sent)

    others, _ = await asyncio.gather(run_concurrent(service, work), flooder())
    return [*others, *outcomes]


def summarize_flood(outcomes: Sequence[Outcome], wall_s: float) -> dict[str, Any]:
    flood = [o for o in outcomes if o.user == FLOODER]
    failures = [reason for o in flood for reason in o.failures]
    return {
        "others": summarize([o for o in outcomes if o.user != FLOODER], wall_s),
        "flooder": {
            "sent": len(flood),
            "answered": sum(o.done for o in flood),
            "slow_down": failures.count("slow_down"),
            "busy": failures.count("busy"),
            "other_failures": len(failures) - failures.count("slow_down") - failures.count("busy"),
            "label_s_p95": percentile([o.label_s for o in flood if o.label_s is not None], 95),
        },
    }


async def measure_flood(
    worker: Any, settings: Any, work: dict[str, list[str]], flood: list[str], seconds: float
) -> dict[str, Any]:
    from storage.store import SqlMoodStore

    with tempfile.TemporaryDirectory(prefix="bench-flood-") as temp:
        store = await SqlMoodStore.open(Path(temp) / "flood.db")
        try:
            service = ChatService(worker, store, settings.chat)
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            outcomes = await run_flood(service, work, flood, seconds)
            wall = time.perf_counter() - start
            stored = await stored_events(store, [*work, FLOODER])
        finally:
            await store.close()
    result = summarize_flood(outcomes, wall)
    others = [o for o in outcomes if o.user != FLOODER]
    # The others may lose nothing and fail nothing; the flooder may only be told to slow down.
    result["problems"] = check_nothing_lost(work, others, stored, allowed=()) + check_nothing_lost(
        {FLOODER: flood}, [o for o in outcomes if o.user == FLOODER], stored, ("slow_down",)
    )
    result["user_queue_max"] = settings.chat.user_queue_max
    result["load_avg_before_after"] = [load_before, os.getloadavg()[0]]
    result["outcomes"] = [asdict(o) for o in outcomes]
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = bench_settings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    engine, _ = bench_engine(settings, settings.worker)  # the bot's own, BACKEND=openai too
    await engine.start()
    work = plan(args.users, args.messages)
    results: dict[str, Any] = {"engine": describe_engine(engine)}
    try:
        if getattr(args, "flood", False):
            # The flooder's texts follow the others' in the message list: none is shared.
            texts = [m.text for m in messages(args.users * args.messages + args.flood_messages)]
            print(f"{args.users} users x {args.messages} messages alone…", file=sys.stderr)
            results["alone"] = await measure(engine, settings, work, sequential=False)
            what = f"one user sends {args.flood_messages} in {args.flood_seconds:g} s"
            print(f"the same while {what}…", file=sys.stderr)
            results["flood"] = await measure_flood(
                engine, settings, work, texts[-args.flood_messages :], args.flood_seconds
            )
        else:
            print(f"{args.users} users x {args.messages} messages, concurrently…", file=sys.stderr)
            results["concurrent"] = await measure(engine, settings, work, sequential=False)
        if args.compare_sequential and "flood" not in results:
            print("the same messages one at a time…", file=sys.stderr)
            results["sequential"] = await measure(engine, settings, work, sequential=True)
    finally:
        await engine.stop()
    results["settings"] = {**settings.worker.model_dump(), "backend": settings.model.backend,
                           "openai": settings.openai.model_dump(exclude={"api_key"}),
                           "generation": settings.chat.generation.__dict__}  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--messages", type=int, default=3, help="messages per user")
    parser.add_argument("--compare-sequential", action="store_true")
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="reply token cap (default: MAX_NEW_TOKENS)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flood", action="store_true", help="one more user floods meanwhile")
    parser.add_argument("--flood-messages", type=int, default=50)
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument(
        "--json", default=None, help="default: bench/results/load.json (load-flood.json)"
    )
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    results["machine"] = describe_machine()
    results["args"] = vars(args)
    if "flood" in results:
        return report_flood(results, args.json)
    modes = [m for m in ("concurrent", "sequential") if m in results]
    keys = [
        "messages",
        "replies",
        "busy",
        "other_failures",
        "stored_events",
        "cut_by_token_cap",
        "wall_s",
        "cpu_s_per_reply",
        "replies_per_min",
        "label_s_p50",
        "label_s_p95",
        "reply_s_p50",
        "reply_s_p95",
    ]
    rows = [[key, *(results[m][key] for m in modes)] for key in keys]
    loads = ["{:.1f}/{:.1f}".format(*results[m]["load_avg_before_after"]) for m in modes]
    rows.append(["load avg before/after", *loads])
    if "sequential" in results:
        ratio = results["concurrent"]["replies_per_min"] / results["sequential"]["replies_per_min"]
        rows.append(["throughput vs sequential", ratio, 1.0])
    print(f"engine: {results['engine']}")
    print(table(["figure", *modes], rows))
    for mode in modes:
        problems = results[mode]["problems"]
        print(f"{mode}: " + ("nothing lost" if not problems else "PROBLEMS:\n  "
                             + "\n  ".join(problems)))  # fmt: skip
    write_json(args.json, "load", results)
    return 1 if any(results[m]["problems"] for m in modes) else 0


def report_flood(results: dict[str, Any], json_path: str | None) -> int:
    alone, flood = results["alone"], results["flood"]
    others = flood["others"]
    keys = ["messages", "replies", "busy", "other_failures", "wall_s", "label_s_p50",
            "label_s_p95", "reply_s_p50", "reply_s_p95"]  # fmt: skip
    rows: list[list[object]] = [[f"others: {key}", alone[key], others[key]] for key in keys]
    rows += [[f"others: {key} with flood / alone", None, others[key] / alone[key]]
             for key in ("label_s_p95", "reply_s_p95") if alone[key] and others[key]]  # fmt: skip
    rows += [[f"flooder: {key}", None, value] for key, value in flood["flooder"].items()]
    loads = ["{:.1f}/{:.1f}".format(*r["load_avg_before_after"]) for r in (alone, flood)]
    rows += [["USER_QUEUE_MAX", None, flood["user_queue_max"]], ["load avg before/after", *loads]]
    print(f"engine: {results['engine']}")
    print(table(["figure", "alone", "with flood"], rows))
    problems = [*alone["problems"], *flood["problems"]]
    print("nothing lost" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems))
    write_json(json_path, "load-flood", results)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

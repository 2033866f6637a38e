"""Concurrent users, with a check that nothing is lost and where the time went.

    python -m benchmarks.load.load [--via service|telegram] [--users 8] [--messages 3] [--reference
    K]
                         [--compare-sequential] [--max-new-tokens N] [--mixed-language]
                         [--out FOLDER]

N simulated users send M messages each: every user's first message at the same moment (the
first wave), then each follow-up once the previous answer is complete (so it carries the
conversation as history). Each user writes in one language, Chinese or English by turns
across users; `--mixed-language` makes each user's messages alternate instead (the former
default, used by the runs in docs/benchmarks.md). `--via service` (default) goes through
ChatService.handle, the path the adapters use, in this process with the real model (settings
from the environment) and a temporary SQLite store. `--via telegram` runs `python -m bot`
itself, default settings, against the tests' loopback Telegram fake, and measures what a user
would see there (benchmarks.load.load_telegram).

Reported: replies per minute, p50/p95 time from sending to the label (all messages and the
first wave), to the first reply text and to the end, busy answers and lost messages; a
per-stage breakdown from the model worker's engine.model.timings records
(benchmarks.load.load_stages). Service mode checks that every message ended in exactly one ReplyDone
or one ReplyFailed("busy") and that the store holds one mood event per tagged message; telegram mode
that every message got a complete answer in --timeout-s and that each chat's stored turns
follow the order the messages were sent in. `--compare-sequential` (service) sends the same
messages one at a time through the same engine; `--reference K` runs the original design
(benchmarks.speed.reference, fp32 transformers, a fresh process) on the first K messages one at a
time, after the concurrent run, for the rate the issue compares against.

    python -m benchmarks.load.load --flood --users 4 --messages 3 [--flood-messages 50
    --flood-seconds 10]

`--flood` first runs the N users alone, then again while one more user sends 50 messages in
10 s without waiting for answers. Reported: the others' label and reply p50/p95 in both runs
and their ratio (one process, one loaded model: the ratio says more than the seconds on a
shared machine), whether anything of theirs was lost, and what the flooder got (answered,
"slow down", busy). Past USER_QUEUE_MAX waiting messages the flooder is told to slow down;
nothing else may fail. The
flood runs through the service only; the timings of its "alone" run are in timings.jsonl.

    python -m benchmarks.load.load --flood --flood-command "/mood why" --users 2 --messages 6
    [--flood-messages 60 --flood-seconds 45]

`--flood-command` makes the flooder send that command instead of messages, after one message
of twelve clauses (each /mood why of it is one label pass of 13 texts): the others' added label
latency is reported in seconds and in label passes of the same run
(benchmarks.load.flood_command); the flood run's worker records are in flood-timings.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    bench_model,
    bench_settings,
    describe_engine,
    describe_machine,
    fmt,
    percentile,
    table,
    temporary_store,
    write_json,
    write_jsonl,
)
from benchmarks.load.flood_command import (
    FLOOD_SAYS,
    check_commands,
    label_delay,
    label_passes,
    send_command,
)
from benchmarks.load.load_stages import (
    KV_HEADERS,
    SPLIT_HEADERS,
    STAGE_HEADERS,
    breakdown,
    compute_lines,
    kv_rows,
    split_rows,
    stage_rows,
)
from benchmarks.load.outcome import Outcome
from benchmarks.messages import MESSAGES, messages
from engine.chat.commands import Commands
from engine.chat.service import ChatService
from engine.ports import MoodStore
from engine.types import (
    IncomingMessage,
    ReplyDone,
    ReplyFailed,
    SentimentTagged,
    TextDelta,
    UserKey,
)

PLATFORM = "bench"
FLOODER = "flooder"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plan(users: int, per_user: int, mixed_language: bool = False) -> dict[str, list[str]]:
    """Each user's messages, in order. By default every user keeps to one language, as real
    users do (users alternate zh, en), with mixed moods still; `mixed_language`: the fixed
    messages in turn, so a user's messages alternate between Chinese and English (each switch
    changes the reply prompt's opening: persona and examples follow the message's language)."""
    if mixed_language:
        texts = [m.text for m in messages(users * per_user)]
        return {f"user{u}": texts[u * per_user : (u + 1) * per_user] for u in range(users)}
    work = {}
    for u in range(users):
        own = [m.text for m in MESSAGES if m.language == ("zh", "en")[u % 2]]
        work[f"user{u}"] = [own[(u // 2 * per_user + i) % len(own)] for i in range(per_user)]
    return work


async def send(service: ChatService, outcome: Outcome) -> None:
    start = outcome.sent_at = time.monotonic()
    message = IncomingMessage(PLATFORM, outcome.user, outcome.user, outcome.text)
    async for event in service.handle(message):
        if isinstance(event, SentimentTagged):
            outcome.tagged += 1
            outcome.label_s = time.monotonic() - start
            outcome.tone = event.sentiment.tone
        elif isinstance(event, TextDelta) and outcome.first_text_s is None and event.text.strip():
            outcome.first_text_s = time.monotonic() - start
        elif isinstance(event, ReplyDone):
            outcome.done += 1
            outcome.reply_chars, outcome.finished = len(event.text), event.finished
        elif isinstance(event, ReplyFailed):
            outcome.failures.append(event.reason)
    outcome.end_s = time.monotonic() - start


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
    first_wave = [o.label_s for o in outcomes if o.index == 0 and o.label_s is not None]
    first_texts = [o.first_text_s for o in outcomes if o.first_text_s is not None]
    ends = [o.end_s for o in outcomes if o.done and o.end_s is not None]
    replies = sum(o.done for o in outcomes)
    return {
        "messages": len(outcomes),
        "cut_by_token_cap": sum(o.finished is False for o in outcomes),
        "replies": replies,
        "busy": sum(o.failures.count("busy") for o in outcomes),
        "lost": sum(o.failures.count("lost") for o in outcomes),
        "other_failures": sum(
            len(o.failures) - o.failures.count("busy") - o.failures.count("lost") for o in outcomes
        ),
        "wall_s": wall_s,
        "replies_per_min": replies / wall_s * 60.0 if wall_s > 0 else None,
        "label_s_p50": percentile(labels, 50),
        "label_s_p95": percentile(labels, 95),
        "first_wave_label_s_p50": percentile(first_wave, 50),
        "first_wave_label_s_p95": percentile(first_wave, 95),
        "first_text_s_p50": percentile(first_texts, 50),
        "first_text_s_p95": percentile(first_texts, 95),
        "reply_s_p50": percentile(ends, 50),
        "reply_s_p95": percentile(ends, 95),
    }


class Collect(logging.Handler):
    """The engine.model.timings records of an in-process worker, as benchmarks.timed_bot writes
    them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and is_dataclass(record.args[0]):
            item: Any = record.args[0]
            self.records.append({"type": type(item).__name__, **asdict(item)})


@contextlib.contextmanager
def collecting() -> Iterator[Collect]:
    logger, handler = logging.getLogger("engine.model.timings"), Collect()
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


async def measure(
    worker: Any, settings: Any, work: dict[str, list[str]], sequential: bool
) -> dict[str, Any]:
    async with temporary_store("load") as store:
        with collecting() as timings:
            service = ChatService(worker, store, settings.chat)
            load_before, cpu_before = os.getloadavg()[0], cpu_seconds()
            start = time.perf_counter()
            run = run_sequential if sequential else run_concurrent
            outcomes = await run(service, work)
            wall = time.perf_counter() - start
            cpu = cpu_seconds() - cpu_before
            stored = await stored_events(store, list(work))
    result = summarize(outcomes, wall)
    result["problems"] = check_nothing_lost(work, outcomes, stored)
    result["stored_events"] = sum(stored.values())
    # The machine may be shared: the load average says how much, and CPU seconds per reply
    # is far less sensitive to other processes than wall time is.
    result["cpu_s_per_reply"] = cpu / result["replies"] if result["replies"] else None
    result["load_avg_before_after"] = [load_before, os.getloadavg()[0]]
    result["stages"] = breakdown([asdict(o) for o in outcomes], timings.records)
    result["timings"] = timings.records
    result["outcomes"] = [asdict(o) for o in outcomes]
    return result


async def measure_telegram(args: argparse.Namespace, work: dict[str, list[str]]) -> dict[str, Any]:
    from benchmarks.load.load_telegram import run_telegram

    run = await run_telegram(args, work)
    outcomes = run["outcomes"]
    result = summarize(outcomes, run["wall_s"])
    lost = [f"{o.user}#{o.index}: no complete answer in {args.timeout_s:.0f} s"
            for o in outcomes if "lost" in o.failures]  # fmt: skip
    other = [f"{o.user}#{o.index}: failed with {o.failures[0]!r}"
             for o in outcomes if o.failures and o.failures[0] not in ("busy", "lost")]  # fmt: skip
    result["problems"] = lost + other + run["problems"]
    result["stored_events"] = None  # not read: the order check reads the stored turns instead
    result["cpu_s_per_reply"] = None  # another process's
    result["platform_calls"] = run["platform_calls"]
    result["load_avg_before_after"] = run["load_avg_before_after"]
    result["stages"] = breakdown([asdict(o) for o in outcomes], run["records"])
    result["timings"] = run["records"]
    result["outcomes"] = [asdict(o) for o in outcomes]
    result["transcripts"] = run["transcripts"]
    return result


# --- the original design, one message at a time (benchmarks.speed.reference), in its own process --


def reference_child(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.common import model_folder
    from benchmarks.speed.reference import ReferenceBot

    settings = bench_settings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    bot = ReferenceBot.load(model_folder(settings), settings.chat.generation,
                            threads=settings.model.threads)  # fmt: skip
    work = plan(args.users, args.messages, args.mixed_language)
    batch = reference_texts(work, args.reference)
    bot.answer(batch[0])  # warm-up, not counted (the bot's own run starts warm too)
    start = time.perf_counter()
    samples = [bot.answer(text) for text in batch]
    return {"samples": samples, "wall_s": time.perf_counter() - start}


def reference_texts(work: dict[str, list[str]], count: int) -> list[str]:
    """The first `count` messages in sending order: the first wave first."""
    ordered = [texts[i] for i in range(max(map(len, work.values()))) for texts in work.values()
               if i < len(texts)]  # fmt: skip
    return ordered[:count]


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.load.load", "--reference-child",
               "--users", str(args.users), "--messages", str(args.messages),
               "--reference", str(args.reference), "--seed", str(args.seed)]  # fmt: skip
    if args.max_new_tokens is not None:
        command += ["--max-new-tokens", str(args.max_new_tokens)]
    if args.mixed_language:
        command.append("--mixed-language")
    print(f"the original design, {args.reference} messages one at a time…", file=sys.stderr)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    samples = child["samples"]
    return {
        "messages": len(samples),
        "replies": len(samples),
        "wall_s": child["wall_s"],
        "replies_per_min": len(samples) / child["wall_s"] * 60.0,
        "label_s_p50": percentile([s["sentiment_s"] for s in samples], 50),
        "label_s_p95": percentile([s["sentiment_s"] for s in samples], 95),
        "first_text_s_p50": percentile([s["first_token_s"] for s in samples], 50),
        "first_text_s_p95": percentile([s["first_token_s"] for s in samples], 95),
        "reply_s_p50": percentile([s["total_s"] for s in samples], 50),
        "reply_s_p95": percentile([s["total_s"] for s in samples], 95),
        "samples": samples,
    }


async def run_flood(
    service: ChatService,
    work: dict[str, list[str]],
    flood: list[str],
    seconds: float,
    commands: bool = False,
    lead_s: float = 0.0,
) -> list[Outcome]:
    """The others' sessions as in run_concurrent, while FLOODER sends `flood` evenly over
    `seconds`, each message (`commands`: each a command, "/mood why") without waiting for
    the answer to the one before; the others start `lead_s` after the flood (so that their
    first labels meet it at the worker, not race it there)."""
    outcomes = [Outcome(FLOODER, i, text) for i, text in enumerate(flood)]
    runner = Commands(service)

    async def flooder() -> None:
        sent = []
        for outcome in outcomes:
            step = send_command(runner, PLATFORM, outcome) if commands else send(service, outcome)
            sent.append(asyncio.create_task(step))
            await asyncio.sleep(seconds / len(flood))
        await asyncio.gather(*sent)

    async def others() -> list[Outcome]:
        await asyncio.sleep(lead_s)
        return await run_concurrent(service, work)

    theirs, _ = await asyncio.gather(others(), flooder())
    return [*theirs, *outcomes]


def flood_label_delay(results: dict[str, Any]) -> dict[str, Any]:
    """The others' added label latency, in label passes of the flood run: those that held
    the flooder's command when there were any, else all of them."""
    passes = results["flood"]["label_passes"]
    unit = passes["flood_pass_s_p50"] or passes["pass_s_p50"]

    def labels(outcomes: list[dict[str, Any]]) -> list[float]:
        return [o["label_s"] for o in outcomes if o["user"] != FLOODER and o["label_s"]]

    return label_delay(
        labels(results["alone"]["outcomes"]), labels(results["flood"]["outcomes"]), unit
    )


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
    worker: Any,
    settings: Any,
    work: dict[str, list[str]],
    flood: list[str],
    seconds: float,
    commands: bool = False,
    lead_s: float = 0.0,
) -> dict[str, Any]:
    """The flood run; `commands`: `flood` are commands, sent after the flooder's one message
    (FLOOD_SAYS, for /mood why to explain), with the label passes of the run measured."""
    async with temporary_store("flood") as store:
        service = ChatService(worker, store, settings.chat)
        if commands:
            await send(service, Outcome(FLOODER, -1, FLOOD_SAYS))
        load_before = os.getloadavg()[0]
        with collecting() as timings:
            start = time.perf_counter()
            outcomes = await run_flood(service, work, flood, seconds, commands, lead_s)
            wall = time.perf_counter() - start
        stored = await stored_events(store, [*work, FLOODER])
    result = summarize_flood(outcomes, wall)
    others = [o for o in outcomes if o.user != FLOODER]
    flooder = [o for o in outcomes if o.user == FLOODER]
    # The others may lose nothing and fail nothing; the flooder may only be told to slow down.
    result["problems"] = check_nothing_lost(work, others, stored, allowed=()) + (
        check_commands(flooder, stored[FLOODER]) if commands
        else check_nothing_lost({FLOODER: flood}, flooder, stored, ("slow_down",))
    )  # fmt: skip
    if commands:
        result["label_passes"] = label_passes(timings.records, FLOOD_SAYS)
        result["timings"] = timings.records
    result["user_queue_max"] = settings.chat.user_queue_max
    result["load_avg_before_after"] = [load_before, os.getloadavg()[0]]
    result["outcomes"] = [asdict(o) for o in outcomes]
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = plan(args.users, args.messages, getattr(args, "mixed_language", False))
    via = getattr(args, "via", "service")
    results: dict[str, Any] = {"via": via}
    if via == "telegram":
        print(f"{args.users} users x {args.messages} messages through python -m bot and the "
              "Telegram fake…", file=sys.stderr)  # fmt: skip
        results["engine"] = "python -m bot (its own settings)"
        results["concurrent"] = await measure_telegram(args, work)
        return results
    settings = bench_settings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    engine, _ = bench_model(settings, settings.worker)  # the bot's own, BACKEND=openai too
    await engine.start()
    results["engine"] = describe_engine(engine)
    try:
        if getattr(args, "flood", False):
            # Which of the fixed messages (cycling) the flooder repeats does not matter,
            # only how fast it sends them.
            texts = [m.text for m in messages(args.users * args.messages + args.flood_messages)]
            command = getattr(args, "flood_command", None)
            flood = [command] * args.flood_messages if command else texts[-args.flood_messages :]
            print(f"{args.users} users x {args.messages} messages alone…", file=sys.stderr)
            results["alone"] = await measure(engine, settings, work, sequential=False)
            what = f"one user sends {args.flood_messages} {command or 'messages'} in " \
                   f"{args.flood_seconds:g} s"  # fmt: skip
            print(f"the same while {what}…", file=sys.stderr)
            results["flood"] = await measure_flood(
                engine, settings, work, flood, args.flood_seconds, commands=bool(command),
                lead_s=getattr(args, "flood_lead_s", 0.0),
            )  # fmt: skip
            if command:
                results["flood"]["label_delay"] = flood_label_delay(results)
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


KEYS = ["messages", "replies", "busy", "lost", "other_failures", "stored_events",
        "cut_by_token_cap", "wall_s", "cpu_s_per_reply", "replies_per_min", "label_s_p50",
        "label_s_p95", "first_wave_label_s_p50", "first_wave_label_s_p95", "first_text_s_p50",
        "first_text_s_p95", "reply_s_p50", "reply_s_p95"]  # fmt: skip


def report(results: dict[str, Any]) -> str:
    """The figures per mode side by side, then the stage tables of the concurrent run."""
    modes = [m for m in ("concurrent", "sequential", "reference") if m in results]
    rows = [[key, *(results[m].get(key) for m in modes)] for key in KEYS]
    loads = ["{:.1f}/{:.1f}".format(*results[m]["load_avg_before_after"])
             for m in modes if "load_avg_before_after" in results[m]]  # fmt: skip
    rows.append(["load avg before/after", *loads, *[None] * (len(modes) - len(loads))])
    base = results["concurrent"]["replies_per_min"]
    rows.append(["throughput vs this column", *((base / results[m]["replies_per_min"])
                 if results[m]["replies_per_min"] else None for m in modes)])  # fmt: skip
    names = {"concurrent": f"concurrent ({results['via']})", "sequential": "one at a time",
             "reference": "original design, one at a time"}  # fmt: skip
    out = [f"engine: {results['engine']}", table(["figure", *(names[m] for m in modes)], rows)]
    stages = results["concurrent"]["stages"]
    out += [f"\nstages ({stages['matched']} of {results['concurrent']['messages']} messages "
            "matched to worker records):", table(STAGE_HEADERS, stage_rows(stages)),
            "\nwhat the worker was doing meanwhile (mean s per message):",
            table(SPLIT_HEADERS, split_rows(stages)),
            "\nreply prompts (tokens, mean):", table(KV_HEADERS, kv_rows(stages)),
            "\nworker busy (s): " + ", ".join(
                f"{k} {v:.1f} ({stages['worker_spans'][k]} spans)"
                for k, v in stages["worker_busy_s"].items())]  # fmt: skip
    reference = results.get("reference", {}).get("replies_per_min")
    out += compute_lines(stages.get("compute", {}), reference)
    for mode in ("concurrent", "sequential"):
        if mode in results:
            problems = results[mode]["problems"]
            out.append(f"{mode}: " + ("nothing lost" if not problems else "PROBLEMS:\n  "
                                      + "\n  ".join(problems)))  # fmt: skip
    return "\n".join(out)


def write_transcripts(path: Path, results: dict[str, Any]) -> None:
    chats = results["concurrent"].get("transcripts") or {}
    lines = [f"# benchmarks.load.load transcripts ({results['via']})", ""]
    for chat_id, shown in chats.items():
        lines += [f"## chat {chat_id}", "", *(f"- {line!r}" for line in shown), ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--via", choices=("service", "telegram"), default="service")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--messages", type=int, default=3, help="messages per user")
    parser.add_argument("--compare-sequential", action="store_true")
    parser.add_argument("--mixed-language", action="store_true",
                        help="each user's messages alternate zh/en (default: one language "
                             "per user, users alternating)")  # fmt: skip
    parser.add_argument("--reference", type=int, default=0, metavar="K",
                        help="also run the original design on the first K messages")  # fmt: skip
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="reply token cap (default: MAX_NEW_TOKENS)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=600.0,
                        help="--via telegram: no complete answer by then = lost")  # fmt: skip
    parser.add_argument("--scripted", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None,
                        help="a folder for results.json and transcripts.md "
                             "(default: benchmarks/results/load/<via>-<users>x<messages>)"
                        )  # fmt: skip
    parser.add_argument("--flood", action="store_true", help="one more user floods meanwhile")
    parser.add_argument("--flood-messages", type=int, default=50)
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--flood-lead-s", type=float, default=0.0,
                        help="the others start this long after the flood")  # fmt: skip
    parser.add_argument("--flood-command", default=None, metavar='"/mood why"',
                        help="the flooder sends this command instead of messages (after one "
                             "message of twelve clauses for /mood why to explain)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.reference_child:
        print(json.dumps(reference_child(args)))
        return 0
    if args.compare_sequential and args.via != "service":
        parser.error("--compare-sequential runs through the service: use --reference")
    if args.flood and (args.via != "service" or args.reference):
        parser.error("--flood runs through the service, without --reference")
    if args.flood_command and not args.flood:
        parser.error("--flood-command goes with --flood")
    results = asyncio.run(run(args))
    if args.reference:
        results["reference"] = run_reference(args)
    flood = "flood" in results
    print(report_flood(results) if flood else report(results))
    results["machine"] = describe_machine()
    results["args"] = vars(args)
    modes = [m for m in ("concurrent", "sequential", "alone", "flood") if m in results]
    name = f"{args.via}-{args.users}x{args.messages}" + ("-flood" if flood else "")
    if flood and args.flood_command:  # "/mood why" -> -mood-why
        name += "-" + "-".join(args.flood_command.strip().lstrip("/").split())
    folder = Path(args.out or RESULTS_DIR / "load" / name)
    flooded = results["flood"].pop("timings", None) if flood else None
    records = [r for m in modes for r in results[m].pop("timings", [])]
    write_json(folder / "results.json", "load-flood" if flood else "load", results)
    write_jsonl(folder / "timings.jsonl", records)  # the worker's raw stage records
    if flooded is not None:  # a command flood's run, for its label passes
        write_jsonl(folder / "flood-timings.jsonl", flooded)
    if results.get("concurrent", {}).get("transcripts"):
        write_transcripts(folder / "transcripts.md", results)
    return 1 if any(results[m]["problems"] for m in modes) else 0


def report_flood(results: dict[str, Any]) -> str:
    """The others' figures alone and with the flood side by side, and what the flooder got."""
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
    rows += delay_rows(flood)
    problems = [*alone["problems"], *flood["problems"]]
    verdict = "nothing lost" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems)
    return "\n".join(
        [f"engine: {results['engine']}", table(["figure", "alone", "with flood"], rows), verdict]
    )


def delay_rows(flood: dict[str, Any]) -> list[list[object]]:
    """A command flood's figures: its label passes, and the others' added label latency in
    seconds and in those passes."""
    if "label_delay" not in flood:
        return []
    passes, delay = flood["label_passes"], flood["label_delay"]
    rows: list[list[object]] = [
        ["label passes in the run / holding the flood's command", None,
         f"{passes['passes']} / {passes['flood_passes']}"],
        ["texts in a pass of the flood's command (p50)", None, passes["flood_pass_texts_p50"]],
        ["one label pass (s, p50 of the flood's)", None, delay["label_pass_s"]],
    ]  # fmt: skip
    for name in ("p50", "p95", "max"):
        rows.append(
            [f"others: label {name} (s)", delay[f"alone_{name}_s"], delay[f"flood_{name}_s"]]
        )
        added = fmt(delay[f"added_{name}_s"]), fmt(delay[f"added_{name}_passes"])
        rows.append([f"others: label {name} added (s / label passes)", None, " / ".join(added)])
    return rows


if __name__ == "__main__":
    sys.exit(main())

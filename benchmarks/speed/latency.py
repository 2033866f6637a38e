"""Cold start, latency, decode speed and peak memory: the bot against the original design.

    python -m benchmarks.speed.latency [--messages 20] [--max-new-tokens N] [--seed 0] [--json OUT]

Each implementation runs in its own fresh subprocess (so peak RSS and cold start do not mix):
- ours: the engine as configured (bot.settings.Settings.from_env(): MODEL, MODEL_DTYPE,
  MODEL_CACHE_DIR, TORCH_THREADS, MAX_NEW_TOKENS, ...), driven through ChatService.handle with
  the ModelWorker and a temporary SQLite store, exactly as the adapters use it;
- reference: benchmarks.speed.reference.ReferenceBot (fp32 weights of the same cached folder,
generate()
  for the label and generate() for the reply).
Cold start = from spawning the process to the first complete reply (model already converted
in the cache). Then every message of benchmarks.messages is sent once, each as a new user (so no
history and both sides build the same prompts). `--max-new-tokens` lowers the reply cap for
both sides (default: the configured MAX_NEW_TOKENS). Sampling uses a fixed seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import (
    bench_model,
    bench_service,
    bench_settings,
    describe_engine,
    describe_machine,
    mean,
    peak_rss_mb,
    percentile,
    table,
    write_json,
)
from benchmarks.messages import messages

IMPLEMENTATIONS = ("ours", "reference")


def summarize(samples: list[dict[str, float]]) -> dict[str, float | None]:
    """Per-message samples (sentiment_s, first_token_s, total_s, tokens) into the figures."""
    decode_tokens = sum(max(s["tokens"] - 1, 0) for s in samples)
    decode_time = sum(s["total_s"] - s["first_token_s"] for s in samples)
    out: dict[str, float | None] = {}
    for key in ("sentiment_s", "first_token_s", "total_s"):
        values = [s[key] for s in samples]
        out[f"{key}_p50"] = percentile(values, 50)
        out[f"{key}_p95"] = percentile(values, 95)
    out["decode_tokens_per_s"] = decode_tokens / decode_time if decode_time > 0 else None
    out["reply_tokens_mean"] = mean([s["tokens"] for s in samples])
    out["finished_share"] = mean([float(s["finished"]) for s in samples])
    return out


# --- the child processes ------------------------------------------------------------------


async def child_ours(args: argparse.Namespace, t0: float) -> dict[str, Any]:
    from engine.types import IncomingMessage, ReplyDone, ReplyFailed, SentimentTagged, TextDelta

    settings = bench_settings(max_new_tokens=args.max_new_tokens, seed=args.seed)

    async def one(user: str, text: str) -> dict[str, float]:
        sample: dict[str, float] = {}
        start = time.perf_counter()
        async for event in service.handle(IncomingMessage("bench", user, user, text)):
            elapsed = time.perf_counter() - start
            if isinstance(event, SentimentTagged):
                sample["sentiment_s"] = elapsed
            elif isinstance(event, TextDelta) and "first_token_s" not in sample:
                sample["first_token_s"] = elapsed
            elif isinstance(event, ReplyDone):
                sample.update(total_s=elapsed, finished=event.finished,
                              tokens=len(streams[-1].generated))  # fmt: skip
            elif isinstance(event, ReplyFailed):
                raise RuntimeError(f"the engine failed: {event.reason}")
        return sample

    timeout = max(settings.worker.request_timeout_s, 1800.0)
    # The bot's own engine: the worker on a local runner, or BACKEND=openai's client.
    engine, streams = bench_model(
        settings, settings.worker.model_copy(update={"request_timeout_s": timeout})
    )
    async with bench_service("latency", engine, settings.chat) as service:
        loaded_at = time.time()
        batch = messages(args.messages)
        await one("cold", batch[0].text)
        cold = time.time() - t0
        samples = [await one(f"user{i}", m.text) for i, m in enumerate(batch)]
    return {"load_s": loaded_at - t0, "cold_start_s": cold, "samples": samples,
            "dtype": describe_engine(engine), "settings": {
                "backend": settings.model.backend,
                "openai": settings.openai.model_dump(exclude={"api_key"}),
                "model_dtype": settings.model.dtype, "torch_threads": settings.model.threads,
                "generation": settings.chat.generation.__dict__}}  # fmt: skip


def child_reference(args: argparse.Namespace, t0: float) -> dict[str, Any]:
    from benchmarks.common import model_folder
    from benchmarks.speed.reference import ReferenceBot

    settings = bench_settings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    bot = ReferenceBot.load(model_folder(settings), settings.chat.generation,
                            threads=settings.model.threads)  # fmt: skip
    load_s = time.time() - t0
    batch = messages(args.messages)
    bot.answer(batch[0].text)
    cold = time.time() - t0
    samples = [bot.answer(m.text) for m in batch]
    return {"load_s": load_s, "cold_start_s": cold, "samples": samples, "dtype": "torch.float32"}


def run_child(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.speed.latency", "--child", impl,
               "--messages", str(args.messages), "--seed", str(args.seed)]  # fmt: skip
    if args.max_new_tokens is not None:
        command += ["--max-new-tokens", str(args.max_new_tokens)]
    print(f"running {impl} in a fresh process…", file=sys.stderr, flush=True)
    t0 = time.time()
    done = subprocess.run([*command, "--t0", repr(t0)], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {impl} subprocess failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="reply token cap for both sides (default: MAX_NEW_TOKENS)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="default: benchmarks/results/latency.json")
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        t0 = args.t0 if args.t0 is not None else time.time()
        if args.child == "ours":
            result = asyncio.run(child_ours(args, t0))
        else:
            result = child_reference(args, t0)
        result["peak_rss_mb"] = peak_rss_mb()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["cpu_s"] = usage.ru_utime + usage.ru_stime
        result["load_avg_at_end"] = os.getloadavg()[0]
        print(json.dumps(result))
        return 0

    results = {impl: run_child(impl, args) for impl in IMPLEMENTATIONS}
    figures = {}
    for impl, result in results.items():
        figures[impl] = {
            "cold_start_s": result["cold_start_s"],
            "load_s": result["load_s"],
            **summarize(result["samples"]),
            "peak_rss_mb": result["peak_rss_mb"],
            "cpu_s_total": result["cpu_s"],
        }
    rows = []
    for key in figures["ours"]:
        ours, ref = figures["ours"][key], figures["reference"][key]
        ratio = ref / ours if isinstance(ours, float | int) and ours and ref is not None else None
        rows.append([key, ref, ours, ratio])
    print(f"ours: {results['ours']['dtype']}, reference: {results['reference']['dtype']}; "
          f"{args.messages} messages; seed {args.seed}; load average (1 min) at the end of "
          f"each run: reference {results['reference']['load_avg_at_end']:.1f}, "
          f"ours {results['ours']['load_avg_at_end']:.1f}")  # fmt: skip
    print(table(["figure", "reference", "ours", "ratio ref/ours"], rows))
    print("(times in seconds; for decode_tokens_per_s and finished_share higher is better)")
    write_json(args.json, "latency", {"machine": describe_machine(), "args": vars(args),
                                      "figures": figures, "raw": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

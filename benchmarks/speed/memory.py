"""Peak memory of the llama.cpp runner, weights read into memory (the bot's way) or mapped.

    python -m benchmarks.speed.memory [--model packaged-1.5b] [--history-turns 12]

Each way runs in its own subprocess: load, a label pass of 8 texts, then one reply to a
conversation of `--history-turns` turns (the prompt the bot reads late in a chat). Prints the
peak RSS after load and at the end, the label pass and the reply's time. Timings are only
comparable within one run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from benchmarks.common import add_model_argument, table

HAPPY = "今天终于考完试了，晚上和朋友去吃火锅！"
TIRED = "今天工作很忙，开了很多会，晚上还要加班写报告，真的好累。"


def peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def measure(model: str, mapped: bool, history_turns: int) -> dict[str, object]:
    from engine.chat.prompts import reply_request
    from engine.model.backends.llama_cpp import LlamaCppRunner
    from engine.model.model_files import default_cache_dir, resolve_gguf
    from engine.types import GenerationParams, Turn

    path, name = resolve_gguf(model, default_cache_dir())
    runner = LlamaCppRunner(path, name, map_weights=mapped)
    loaded = peak_mib()
    start = time.perf_counter()
    runner.tag([HAPPY, TIRED] * 4)
    label_s = time.perf_counter() - start
    history = tuple(
        Turn("user", TIRED, "negative")
        if i % 2 == 0
        else Turn("assistant", "听起来你今天真的很累。")
        for i in range(history_turns)
    )
    params = GenerationParams(max_new_tokens=20, temperature=0.0)
    reply = runner.start_reply(reply_request("negative", "我好累啊", history, params))
    start = time.perf_counter()
    while reply.step() is not None:
        pass
    reply_s = time.perf_counter() - start
    runner.close()
    return {"weights": "mapped" if mapped else "read", "after_load_mib": loaded,
            "peak_mib": peak_mib(), "label_pass_s": round(label_s, 2),
            "reply_s": round(reply_s, 2), "prompt_tokens": len(reply.prompt_ids)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--history-turns", type=int, default=12)
    parser.add_argument("--child", choices=["read", "mapped"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    from engine.model.model_files import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    if args.child:
        print(json.dumps(measure(model, args.child == "mapped", args.history_turns)))
        return
    rows = []
    for way in ("read", "mapped"):
        command = [sys.executable, "-m", "benchmarks.speed.memory", "--child", way,
                   "--history-turns", str(args.history_turns), "--model", model]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    print(f"model: {model}")
    print(table(list(rows[0]), [list(row.values()) for row in rows]))


if __name__ == "__main__":
    main()

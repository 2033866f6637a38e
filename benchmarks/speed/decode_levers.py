"""transformers decode levers the bot does not use, measured: a static KV cache, torch.compile.

    python -m benchmarks.speed.decode_levers [--tokens 64] [--repeats 2]

Loads the bot's model folder (MODEL, MODEL_DTYPE from the environment) in plain transformers
and greedily generates `--tokens` tokens for one fixed prompt with `generate()`, three ways,
each in the same process one after the other:
- dynamic: the default DynamicCache (what the engine's runner uses);
- static: `cache_implementation="static"` (preallocated KV, no growing tensors);
- compiled: static cache plus `torch.compile(model.forward)`; its first run includes the
  compilation, reported separately, as a bot would pay it at every start.
Decode tokens/s = (tokens - 1) / (time for all tokens - time for the first one alone).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import bench_settings, describe_machine, model_folder, table, write_json

MESSAGES = [
    {"role": "system", "content": "You are a warm, empathetic AI companion."},
    {"role": "user", "content": "My dog is sick and the vet bill is more than I can afford."},
]


def timed_generate(model: Any, ids: Any, tokens: int, **options: Any) -> tuple[float, list[int]]:
    import torch

    start = time.perf_counter()
    output = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        **options,
    )
    return time.perf_counter() - start, output[0, ids.shape[1] :].tolist()


def decode_rate(model: Any, ids: Any, tokens: int, repeats: int, **options: Any) -> dict[str, Any]:
    rates: list[float] = []
    generated: list[int] = []
    for _repeat in range(repeats):
        whole, generated = timed_generate(model, ids, tokens, **options)
        first, _first_ids = timed_generate(model, ids, 1, **options)
        rates.append((tokens - 1) / (whole - first))
    return {"decode_tokens_per_s": max(rates), "all_runs": rates, "ids": generated}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.model.backends.transformers_runner import resolve_dtype

    settings = bench_settings()
    folder = model_folder(settings)
    tokenizer = AutoTokenizer.from_pretrained(folder, fix_mistral_regex=False)  # as the bot
    dtype = resolve_dtype(settings.model.dtype)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    ids = torch.tensor([tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)])
    results: dict[str, dict[str, Any]] = {}
    with torch.inference_mode():
        results["dynamic"] = decode_rate(model, ids, args.tokens, args.repeats)
        results["static"] = decode_rate(
            model, ids, args.tokens, args.repeats, cache_implementation="static"
        )
        model.forward = torch.compile(model.forward, dynamic=False)
        start = time.perf_counter()
        timed_generate(model, ids, args.tokens, cache_implementation="static")
        compile_s = time.perf_counter() - start
        results["compiled"] = decode_rate(
            model, ids, args.tokens, args.repeats, cache_implementation="static"
        )
        results["compiled"]["first_run_s"] = compile_s
    same = {name: result["ids"] == results["dynamic"]["ids"] for name, result in results.items()}
    print(f"{folder} in {dtype}, {args.tokens} greedy tokens")
    rows = [
        [name, result["decode_tokens_per_s"], result.get("first_run_s"), same[name]]
        for name, result in results.items()
    ]
    print(table(["cache", "decode tok/s", "first run s (compiling)", "same tokens"], rows))
    write_json(args.json, "decode_levers", {"machine": describe_machine(), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

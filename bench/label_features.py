"""What the model computes at the label position, for fitting and comparing label heads offline.

    python -m bench.label_features --out bench/results/features [--frames analyst,fewshot]
        [--train-per-domain 600] [--seed 7]

For every text of the evaluation files and of a sample of the training files (both written by
`python -m bench.datasets`), and for every analyst frame variant asked for, it runs the label
pass of the llama.cpp backend once and keeps:
- the scores (logits) of every candidate label word that is one token (CANDIDATE_WORDS);
- the final hidden state h at the label position, the vector the LM head W multiplies (the
  readout the bot uses today is `(w_正面 - w_负面) · h`). llama.cpp hands out the scores
  `W h` of the whole vocabulary; W has full column rank, so h = W⁺ (W h) is read back from
  them exactly (lm_head_pseudo_inverse).
The rows are saved as `<frame>.npz` with their language, domain, split and gold label, so
`bench.label_fit` can compare label-word sets, calibrations and linear probes without
running the model again. The training sample is balanced per domain and label.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import read_jsonl

CANDIDATE_WORDS = ("正面", "负面", "积极", "消极", "正", "负", "好", "坏",
                   "positive", "negative", "Positive", "Negative", "good", "bad")  # fmt: skip
DATA = Path("bench/results/data")


def domain_of(row: dict[str, Any]) -> str:
    """amazon / movie (English) or hotel / laptop (Chinese), from the row's source file and
    line: ChnSentiCorp's hotel block ends at line 10,650 of pos.txt and 12,650 of neg.txt."""
    source = row["source"]
    if "amazon" in source:
        return "amazon"
    if "movie" in source:
        return "movie"
    boundary = 10_650 if source.endswith("pos.txt") else 12_650
    return "hotel" if row["line"] < boundary else "laptop"


def sample(rows: Sequence[dict[str, Any]], per_domain: int, seed: int) -> list[dict[str, Any]]:
    """`per_domain` rows of each domain, half of each label."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((domain_of(row), row["label"]), []).append(row)
    picked: list[dict[str, Any]] = []
    for key in sorted(groups):
        group = groups[key][:]
        rng.shuffle(group)
        picked += group[: per_domain // 2]
    return picked


def lm_head_matrix(gguf_path: Path) -> np.ndarray:
    """The LM head W of a GGUF, dequantised to float32, shape (vocab, n_embd)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensors = {tensor.name: tensor for tensor in GGUFReader(gguf_path).tensors}
    # Models with tied embeddings store no separate output matrix.
    tensor = tensors.get("output.weight") or tensors["token_embd.weight"]
    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)


def lm_head_pseudo_inverse(gguf_path: Path) -> np.ndarray:
    """W⁺ = (WᵀW)⁻¹Wᵀ, shape (n_embd, vocab): h = W⁺ @ scores, since W has full column rank."""
    w = lm_head_matrix(gguf_path).astype(np.float64)
    return np.linalg.solve(w.T @ w, w.T).astype(np.float32)


def cached_pseudo_inverse(gguf_path: Path, folder: Path) -> np.ndarray:
    """W⁺, kept in `folder` (545 MB for the 0.5B model): it takes minutes on 2 cores."""
    path = folder / f"lm_head_inverse-{gguf_path.stem}.npy"
    if path.is_file():
        return np.load(path)
    inverse = lm_head_pseudo_inverse(gguf_path)
    np.save(path, inverse)
    return inverse


def neutral_rows() -> list[dict[str, Any]]:
    """bench.neutral's messages, and content-free inputs (Zhao et al. 2021's "N/A")."""
    from bench import neutral
    from core.language import detect_language

    rows = [{"text": text, "split": split, "label": "neutral"}
            for split, texts in (("neutral-dev", neutral.DEV), ("neutral-test", neutral.TEST))
            for text in texts]  # fmt: skip
    for split, felt in (("felt-dev", neutral.FELT_DEV), ("felt", neutral.FELT)):
        rows += [{"text": text, "split": split, "label": label} for text, label in felt]
    rows += [{"text": text, "split": "content-free", "label": "neutral"}
             for text in ("N/A", "", "[MASK]", "无")]  # fmt: skip
    return [{**row, "language": detect_language(row["text"]), "domain": row["split"]}
            for row in rows]  # fmt: skip


def rows_to_score(per_domain: int, seed: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for language in ("en", "zh"):
        evaluation = read_jsonl(DATA / f"{language}.jsonl")
        train = sample(read_jsonl(DATA / f"train_{language}.jsonl"), per_domain, seed)
        out += [{**row, "language": language, "split": "eval"} for row in evaluation]
        out += [{**row, "language": language, "split": "train"} for row in train]
    return [{**row, "domain": domain_of(row)} for row in out]


def main(argv: list[str] | None = None) -> int:
    from runtime.backends.llama_cpp import LlamaCppRunner
    from runtime.labelling import FRAMES

    parser = argparse.ArgumentParser(
        prog="python -m bench.label_features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/features"))
    parser.add_argument("--frames", default=",".join(FRAMES))
    parser.add_argument("--train-per-domain", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all)")
    parser.add_argument(
        "--neutral",
        action="store_true",
        help="score bench.neutral's messages instead (written as <frame>-neutral.npz)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = neutral_rows() if args.neutral else rows_to_score(args.train_per_domain, args.seed)
    runner = LlamaCppRunner.load("packaged", threads=args.threads)
    inverse = cached_pseudo_inverse(runner.model_path, args.out)  # (n_embd, vocab)
    candidates = {word: runner.single_token_or_none(word) for word in CANDIDATE_WORDS}
    words = [word for word, token in candidates.items() if token is not None]
    ids = [token for token in candidates.values() if token is not None]
    for frame in args.frames.split(","):
        started = time.perf_counter()
        scores = np.zeros((len(rows), len(ids)), np.float32)
        hidden = np.zeros((len(rows), inverse.shape[0]), np.float32)
        for start in range(0, len(rows), 16):
            batch = rows[start : start + 16]
            texts = [row["text"] for row in batch]
            full = np.stack(runner.label_rows(texts, frame, [row["language"] for row in batch]))
            scores[start : start + len(batch)] = full[:, ids]
            hidden[start : start + len(batch)] = full @ inverse.T
            if start % 320 == 0:
                print(f"  {frame}: {start}/{len(rows)}", file=sys.stderr, flush=True)
        meta = [{key: row[key] for key in ("language", "domain", "split", "label", "text")}
                for row in rows]  # fmt: skip
        name = f"{frame}-neutral" if args.neutral else frame
        np.savez_compressed(args.out / f"{name}.npz", scores=scores, hidden=hidden,
                            words=np.array(words), meta=np.array(json.dumps(meta)))  # fmt: skip
        took = time.perf_counter() - started
        print(f"{frame}: {len(rows)} rows in {took:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

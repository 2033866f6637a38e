"""What the model computes at the label position, for fitting and comparing label heads offline.

    MODEL=packaged-1.5b python -m scripts.fitting.label_features [--model SPEC] [--out FOLDER]
        [--frames analyst,fewshot] [--train-per-domain 600] [--seed 7] [--neutral]

The model is the one MODEL names (as for the bot; a GGUF: a packaged one or a path), or
--model. Its features go to `benchmarks/results/features/<GGUF stem>/` unless --out says otherwise,
with `model.json` recording which model they came from (name, SHA-256, sizes, file), so that
`scripts.fitting.label_fit --write` writes the head of that model and of no other.

For every text of the evaluation files and of a sample of the training files (both written by
`python -m benchmarks.data.datasets`), and for every analyst frame variant asked for, it runs the
label pass of the llama.cpp backend once and keeps:
- the scores (logits) of every candidate label word that is one token (CANDIDATE_WORDS);
- the final hidden state h at the label position, the vector the LM head W multiplies (the
  readout the bot uses today is `(w_正面 - w_负面) · h`). llama.cpp hands out the scores
  `s = W h` of the whole vocabulary; W has full column rank, so h is read back from them
  exactly by least squares, h = (WᵀW)⁻¹Wᵀs (LmHead). Only (WᵀW)⁻¹ (n_embd², seconds)
  is computed, never the pseudo-inverse W⁺ itself (n_embd × vocab: 0.9 GB for the
  1.5B model in float32, ~6 GB of float64 while solving for it); W is dequantised from the
  GGUF each run (seconds).
The rows are saved as `<frame>.npz` with their language, domain, split and gold label, so
`scripts.fitting.label_fit` can compare label-word sets, calibrations and linear probes without
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

from benchmarks.common import add_model_argument, read_jsonl

CANDIDATE_WORDS = ("正面", "负面", "积极", "消极", "正", "负", "好", "坏",
                   "positive", "negative", "Positive", "Negative", "good", "bad")  # fmt: skip
DATA = Path("benchmarks/results/data")
FEATURES = Path("benchmarks/results/features")
PROJECT_ROWS = 256  # logits rows turned into hidden states together (256 × vocab × 4 B: 155 MB)


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


class LmHead:
    """The LM head W of a GGUF (vocab, n_embd) and (WᵀW)⁻¹ (n_embd², float64): what turns a
    logits row back into the hidden state, and a readout on h into the same readout on the
    logits row."""

    def __init__(self, w: np.ndarray) -> None:
        self.w = np.ascontiguousarray(w, np.float32)
        gram = np.zeros((self.w.shape[1], self.w.shape[1]))
        for start in range(0, len(self.w), 16384):  # WᵀW in float64, a block of rows at a time
            block = self.w[start : start + 16384].astype(np.float64)
            gram += block.T @ block
        self._inverse_gram = np.linalg.inv(gram)

    @classmethod
    def read(cls, gguf_path: Path) -> LmHead:
        return cls(lm_head_matrix(gguf_path))

    @property
    def n_embd(self) -> int:
        return int(self.w.shape[1])

    def hidden(self, rows: np.ndarray) -> np.ndarray:
        """h for each logits row s: the least-squares solution of W h = s."""
        projected = (rows.astype(np.float32) @ self.w).astype(np.float64)  # (rows, n_embd)
        return np.asarray(projected @ self._inverse_gram, np.float32)  # the Gram is symmetric

    def logit_weights(self, v: np.ndarray) -> np.ndarray:
        """u with u·s = v·h for every s = W h: u = W (WᵀW)⁻¹ v (= W⁺ᵀv)."""
        return np.asarray(self.w @ (self._inverse_gram @ v.astype(np.float64)), np.float32)


def model_record(gguf_path: Path, n_embd: int, n_vocab: int) -> dict[str, Any]:
    """Which model the features came from (model.json beside them)."""
    from engine.model.label_head import gguf_identity

    identity = gguf_identity(gguf_path, n_embd, n_vocab)
    sha256 = identity.sha256 or _sha256(gguf_path)
    return {"name": identity.name, "sha256": sha256, "hidden_size": n_embd,
            "vocab_size": n_vocab, "gguf": str(gguf_path)}  # fmt: skip


def _sha256(path: Path) -> str:
    from engine.model.label_head import _sha256 as stamped_or_hashed

    return stamped_or_hashed(path)


def features_folder(spec: str) -> Path:
    """benchmarks/results/features/<GGUF stem>/ for the model `spec` names."""
    from engine.model.model_files import default_cache_dir, resolve_gguf

    path, _ = resolve_gguf(spec, default_cache_dir())
    return FEATURES / path.stem


def neutral_rows() -> list[dict[str, Any]]:
    """benchmarks.accuracy.neutral's messages, and content-free inputs (Zhao et al. 2021's
    "N/A")."""
    from benchmarks.accuracy import neutral
    from engine.language import detect_language

    rows = [{"text": text, "split": split, "label": "neutral"}
            for split, texts in (("neutral-dev", neutral.DEV), ("neutral-test", neutral.TEST))
            for text in texts]  # fmt: skip
    for split, felt in (("felt-dev", neutral.FELT_DEV), ("felt", neutral.FELT)):
        rows += [{"text": text, "split": split, "label": label} for text, label in felt]
    rows += [{"text": text, "split": "content-free", "label": "neutral"}
             for text in ("N/A", "", "[MASK]", "无")]  # fmt: skip
    return [{**row, "language": detect_language(row["text"]), "domain": row["split"]}
            for row in rows]  # fmt: skip


def rows_to_score(
    per_domain: int, seed: int, evaluation: bool = True, languages: Sequence[str] = ("en", "zh")
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for language in languages:
        train = sample(read_jsonl(DATA / f"train_{language}.jsonl"), per_domain, seed)
        if evaluation:
            rows = read_jsonl(DATA / f"{language}.jsonl")
            out += [{**row, "language": language, "split": "eval"} for row in rows]
        out += [{**row, "language": language, "split": "train"} for row in train]
    return [{**row, "domain": domain_of(row)} for row in out]


def main(argv: list[str] | None = None) -> int:
    from engine.model.backends.llama_cpp import LlamaCppRunner
    from engine.model.labelling import FRAMES

    parser = argparse.ArgumentParser(
        prog="python -m scripts.fitting.label_features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(parser)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/features/<GGUF stem>")
    parser.add_argument("--frames", default=",".join(FRAMES))
    parser.add_argument("--train-per-domain", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: all)")
    parser.add_argument(
        "--neutral",
        action="store_true",
        help="score the neutral bench's messages instead (written as <frame>-neutral.npz)",
    )
    parser.add_argument(
        "--no-eval",
        action="store_true",
        help="training rows only (all a head is fitted on; the sentiment bench reports the "
        "eval rows)",
    )
    parser.add_argument(
        "--languages",
        default="en,zh",
        help="score these languages' rows only (the `native` frame differs from `analyst` in "
        "English only)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out or features_folder(args.model)
    out.mkdir(parents=True, exist_ok=True)
    if args.neutral:
        rows = neutral_rows()
    else:
        rows = rows_to_score(args.train_per_domain, args.seed, evaluation=not args.no_eval,
                             languages=args.languages.split(","))  # fmt: skip
    runner = LlamaCppRunner.load(args.model, threads=args.threads)
    started = time.perf_counter()
    lm_head = LmHead.read(runner.model_path)
    print(f"LM head {lm_head.w.shape} read and factored in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)  # fmt: skip
    record = model_record(runner.model_path, lm_head.n_embd, runner.n_vocab)
    (out / "model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    candidates = {word: runner.single_token_or_none(word) for word in CANDIDATE_WORDS}
    words = [word for word, token in candidates.items() if token is not None]
    ids = [token for token in candidates.values() if token is not None]
    for frame in args.frames.split(","):
        started = time.perf_counter()
        scores = np.zeros((len(rows), len(ids)), np.float32)
        hidden = np.zeros((len(rows), lm_head.n_embd), np.float32)
        pending: list[np.ndarray] = []  # logits rows not yet projected to h
        for start in range(0, len(rows), 16):
            batch = rows[start : start + 16]
            texts = [row["text"] for row in batch]
            full = np.stack(runner.label_rows(texts, frame, [row["language"] for row in batch]))
            scores[start : start + len(batch)] = full[:, ids]
            pending.append(full)
            done = start + len(batch)
            # Projecting reads all of W (0.5-0.9 GB): a few hundred rows at a time.
            if sum(map(len, pending)) >= PROJECT_ROWS or done == len(rows):
                block = np.concatenate(pending)
                hidden[done - len(block) : done] = lm_head.hidden(block)
                pending = []
            if start % 320 == 0:
                print(f"  {frame}: {start}/{len(rows)}", file=sys.stderr, flush=True)
        meta = [{key: row[key] for key in ("language", "domain", "split", "label", "text")}
                for row in rows]  # fmt: skip
        name = f"{frame}-neutral" if args.neutral else frame
        np.savez_compressed(out / f"{name}.npz", scores=scores, hidden=hidden,
                            words=np.array(words), meta=np.array(json.dumps(meta)))  # fmt: skip
        took = time.perf_counter() - started
        print(f"{frame}: {len(rows)} rows in {took:.0f} s -> {out / name}.npz", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

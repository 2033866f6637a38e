"""Choosing the next token from a row of scores, the same way for every backend.

NumPy rather than torch so the llama.cpp backend needs no torch at all (it starts faster and
stays smaller); the transformers backend hands over its row as an array.
"""

from __future__ import annotations

import numpy as np

from core.types import GenerationParams


def sample_next_token(
    logits: np.ndarray,
    previous: list[int],
    params: GenerationParams,
    rng: np.random.Generator | None = None,
) -> int:
    """Repetition penalty, then greedy or top_k → top_p → temperature sampling.

    `logits` is changed in place by the repetition penalty (callers pass a row they own).
    """
    if params.repetition_penalty != 1.0 and previous:
        seen = np.fromiter(set(previous), dtype=np.int64)
        scores = logits[seen]
        logits[seen] = np.where(
            scores > 0, scores / params.repetition_penalty, scores * params.repetition_penalty
        )
    if params.temperature <= 0:
        return int(np.argmax(logits))
    # Sort only the candidates: top_k first, so top_p works on k values rather than on the
    # whole vocabulary (a full 151k-entry sort cost ~7 ms a token, per reply in a batch).
    if 0 < params.top_k < logits.shape[-1]:
        ids = np.argpartition(logits, -params.top_k)[-params.top_k :]
    else:
        ids = np.arange(logits.shape[-1])
    ids = ids[np.argsort(-logits[ids], kind="stable")]  # highest first
    scaled = logits[ids].astype(np.float64) / params.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if 0 < params.top_p < 1:
        cumulative = np.cumsum(probs)
        probs[cumulative - probs > params.top_p] = 0.0  # keep the token that crosses top_p
        probs /= probs.sum()
    rng = rng or np.random.default_rng()
    return int(ids[rng.choice(len(ids), p=probs)])

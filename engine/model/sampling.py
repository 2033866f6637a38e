"""Choosing the next token from a row of scores, the same way for every backend.

NumPy rather than torch so the llama.cpp backend needs no torch at all (it starts faster and
stays smaller); the transformers backend hands over its row as an array.

A reply's `ReplySampler` applies, in order: the repetition penalty, presence and frequency
penalties, the DRY penalty against the texts the reply must not copy, then greedy or
top_k → top_p → temperature sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.types import GenerationParams

# Runs longer than this count as this long (the penalty is already prohibitive by then).
DRY_MAX_RUN = 48


def sample_next_token(
    logits: np.ndarray,
    previous: list[int],
    params: GenerationParams,
    rng: np.random.Generator | None = None,
) -> int:
    """Repetition, presence and frequency penalties, then greedy or top_k → top_p →
    temperature sampling.

    `logits` is changed in place by the penalties (callers pass a row they own).
    """
    if previous and (params.repetition_penalty != 1.0 or params.presence_penalty
                     or params.frequency_penalty):  # fmt: skip
        seen, counts = np.unique(np.asarray(previous, dtype=np.int64), return_counts=True)
        scores = logits[seen]
        if params.repetition_penalty != 1.0:
            scores = np.where(scores > 0, scores / params.repetition_penalty,
                              scores * params.repetition_penalty)  # fmt: skip
        logits[seen] = scores - params.presence_penalty - params.frequency_penalty * counts
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


class DryPenalty:
    """Penalise the tokens that would continue a run copied from `sources` or from the reply.

    After the reply's last tokens t[-L:], every place where the same L tokens occur in a
    source (or earlier in the reply) names the token that followed them there; taking it
    would make the copied run L + 1 long. Each such token loses
    multiplier * base ** (L - allowed_length) for its longest L >= allowed_length. So a word
    or a name may be repeated, a clause hardly, a sentence not at all. (After DRY by p-e-w,
    as in llama.cpp and text-generation-webui, limited to the given sources.)
    """

    def __init__(
        self, sources: Sequence[Sequence[int]], multiplier: float, base: float, allowed: int
    ) -> None:
        self.multiplier, self.base, self.allowed = multiplier, base, max(allowed, 1)
        joined: list[int] = []
        for source in sources:  # -1 between sources: no run crosses from one to the next
            joined += [*source, -1]
        self._sources = np.asarray(joined, dtype=np.int64)

    def __call__(self, logits: np.ndarray, generated: Sequence[int]) -> None:
        if len(generated) < self.allowed:
            return
        text = np.concatenate([self._sources, np.asarray(generated, dtype=np.int64)])
        # The reply's last tokens, newest first.
        tail = text[-min(len(generated), DRY_MAX_RUN) :][::-1]
        # Where the newest token occurs with a token after it (not the reply's own last one).
        ends = np.flatnonzero(text[:-1] == tail[0])
        ends = ends[text[ends + 1] >= 0]
        if not len(ends):
            return
        runs = np.ones(len(ends), dtype=np.int64)
        alive = np.ones(len(ends), dtype=bool)
        for back in range(1, len(tail)):
            before = ends - back
            alive &= (before >= 0) & (text[np.maximum(before, 0)] == tail[back])
            if not alive.any():
                break
            runs += alive
        long = runs >= self.allowed
        if not long.any():
            return
        penalties: dict[int, float] = {}
        for token, run in zip(text[ends[long] + 1].tolist(), runs[long].tolist(), strict=True):
            penalties[token] = max(penalties.get(token, 0.0), float(run))
        tokens = np.fromiter(penalties, dtype=np.int64)
        runs_kept = np.fromiter(penalties.values(), dtype=np.float64)
        logits[tokens] -= self.multiplier * self.base ** (runs_kept - self.allowed)


class ReplySampler:
    """One reply's sampler: its parameters, its seeded generator and what it must not copy."""

    def __init__(self, params: GenerationParams, avoid: Sequence[Sequence[int]] = ()) -> None:
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self.dry = (DryPenalty(avoid, params.dry_multiplier, params.dry_base,
                               params.dry_allowed_length)
                    if params.dry_multiplier > 0 else None)  # fmt: skip

    def __call__(self, logits: np.ndarray, generated: list[int]) -> int:
        """The next token after `generated`; `logits` (a row the caller owns) is changed."""
        if self.dry is not None:
            self.dry(logits, generated)
        return sample_next_token(logits, generated, self.params, self.rng)

"""The blocking model interface that the worker thread drives: what every backend implements.

A runner is only ever touched from the model worker thread, so implementations need no locks.
Replies are step-wise objects rather than generators, so that the worker can run label passes
between decode steps of long replies (a label never waits for a whole reply), and every
active reply advances in one batched call (`step_many`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from engine.types import ReplyRequest, Sentiment

SentimentMethod = Literal["logits", "generate"]


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner builds its prompts; the same keys for every backend."""

    sentiment_method: SentimentMethod = "logits"
    sentiment_max_tokens: int = 256  # user text budget for tagging
    reply_input_max_tokens: int = 1024  # user text budget for replying
    history_max_tokens: int = 1024  # earlier turns kept in the reply prompt
    # Reuse the analyst head's KV cache and score only the two label rows
    # (engine/model/backends/transformers_labeller.py); False runs the whole prompt through the
    # whole model, as a reference (transformers only).
    label_prefix_cache: bool = True


class ReplyStream(Protocol):
    finished: bool  # True once the model ended its turn by itself

    def close(self) -> None:
        """Free the KV cache early (the request was cancelled)."""


class ModelRunner(Protocol):
    name: str

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        """Label each non-empty text; must always return one of the two labels."""

    def start_reply(self, request: ReplyRequest) -> ReplyStream: ...

    def step_many(self, streams: Sequence[ReplyStream]) -> list[str | None]:
        """Advance each of this runner's streams by one token, in one model pass; per stream
        the new text ("" mid-character), or None once it has ended.

        The runner decides what a step holds (a prompt may be fed in chunks over several
        steps). If it raises, every stream passed is over (the worker fails their callers).
        """

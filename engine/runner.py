"""The blocking model interface that the worker thread drives.

A runner is only ever touched from the model worker thread, so implementations need no locks.
Replies are step-wise objects rather than generators so that the worker can interleave label
passes between decode steps of long replies (a label never waits for a whole reply).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from engine.types import Sentiment, Turn

SentimentMethod = Literal["logits", "generate"]


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 160
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.05
    seed: int | None = None


@dataclass(frozen=True)
class ReplyRequest:
    system: str  # persona plus the tone instruction for this message's label
    history: tuple[Turn, ...]  # oldest first; the runner drops the oldest to fit its budget
    user_text: str
    params: GenerationParams
    examples: tuple[Turn, ...] = ()  # fixed example exchange, before the history, never trimmed


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner builds its prompts; the same keys for every backend."""

    sentiment_method: SentimentMethod = "logits"
    sentiment_max_tokens: int = 256  # user text budget for tagging
    reply_input_max_tokens: int = 1024  # user text budget for replying
    history_max_tokens: int = 1024  # earlier turns kept in the reply prompt
    # Reuse the analyst head's KV cache and score only the two label rows (engine/labeller.py);
    # False runs the whole prompt through the whole model, as a reference (transformers only).
    label_prefix_cache: bool = True


class ReplyStream(Protocol):
    finished: bool  # True once the model ended its turn by itself

    def step(self) -> str | None:
        """Decode one token; return its text ("" mid-character), or None when done."""

    def close(self) -> None:
        """Free the KV cache early (the request was cancelled)."""


class ModelRunner(Protocol):
    name: str

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        """Label each non-empty text; must always return one of the two labels."""

    def start_reply(self, request: ReplyRequest) -> ReplyStream: ...


class BatchStepper(Protocol):
    """Optional runner capability, found with getattr(runner, "step_many", None)."""

    def step_many(self, streams: Sequence[ReplyStream]) -> list[str | None]:
        """Same as step() on each of this runner's streams, in order, but in one model pass.

        If it raises, every stream passed is over (the worker fails all their callers).
        """


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why and what to do."""

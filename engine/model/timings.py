"""Where the model worker's time goes: when each job passed each point, and what the worker
thread was busy with. For benchmarks (benchmarks.load.load); off unless someone listens.

Records go to the `engine.model.timings` logger at DEBUG, each as the one argument of its log
record (`record.args[0]`, a plain dataclass), so the normal log never shows them and the
worker builds none while nobody listens. Times are `time.monotonic()`, which on Linux is one
clock for every process of the machine: a bench can line them up with what it saw itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("engine.model.timings")

SpanKind = Literal["tag", "start", "step"]


@dataclass
class JobTimes:
    """One tag or reply job. `started`: its label pass began / the reply got an active slot.
    `first_text`: the reply's first non-empty delta (its prompt has been read, one token out)."""

    kind: Literal["tag", "reply"]
    text_id: str  # a short hash of the user's text (a tag_many job: its first), for matching
    enqueued: float
    started: float | None = None
    first_text: float | None = None
    done: float | None = None
    outcome: str = ""  # ok | failed | cancelled
    batch: int = 0  # tag: texts in its label pass; reply: most replies in one of its steps
    steps: int = 0  # reply: step_many calls it was in
    prompt_tokens: int | None = None  # reply, when the runner's stream tells
    cached_tokens: int | None = None  # of which already in the KV cache at start


@dataclass
class WorkerSpan:
    """A stretch of the worker thread's time: a label pass, a reply's start_reply (which may
    run a prompt opening), or one step_many. `reading`: replies in it with no text yet."""

    kind: SpanKind
    start: float
    end: float
    size: int  # texts in the label pass, or replies in the step
    reading: int = 0


def enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)


def emit(record: JobTimes | WorkerSpan) -> None:
    log.debug("%s", record)


def text_id(text: str) -> str:
    import hashlib

    return hashlib.blake2s(text.strip().encode(), digest_size=4).hexdigest()

"""A scripted stand-in for the model, behind the same ModelRunner interface.

Used by the fast test suites (engine, console, adapters) where the real model's seconds of
latency would only slow the tests down. It is deterministic and records what it was asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from engine.chat.prompts import TONES
from engine.model.runner import ReplyStream
from engine.types import ReplyRequest, Sentiment, Tone

POSITIVE_HINTS = (
    "好", "棒", "开心", "成功", "喜欢", "高兴", "太好",
    "happy", "great", "love", "good", "awesome", "yay", "excellent", "glad",
)  # fmt: skip


def _tone_word(request: ReplyRequest) -> str:
    # The tone is in the system prompt or in the note before the message, by layout.
    where = f"{request.system}\n{request.note}"
    words: dict[Tone, str] = {"negative": "comforting", "neutral": "friendly"}
    for tone, word in words.items():
        if any(tones[tone] in where for tones in TONES.values()):
            return word
    return "cheerful"


NEUTRAL_HINTS = ("你好", "what time is it")  # shown as neutral, as the real head would


def scripted_p_positive(text: str) -> float:
    lowered = text.lower()
    return 0.9 if any(hint in lowered for hint in POSITIVE_HINTS) else 0.1


def scripted_sentiment(text: str) -> Sentiment:
    if any(hint in text.lower() for hint in NEUTRAL_HINTS):
        return Sentiment("positive", 0.55, neutral=True)
    return Sentiment.from_p_positive(scripted_p_positive(text))


@dataclass
class ScriptedReply:
    chunks: list[str]
    delay_s: float
    fail_at: int | None
    hold: threading.Event | None = None  # steps after the first wait for it
    finished: bool = False
    closed: bool = False
    closed_signal: threading.Event = field(default_factory=threading.Event)  # set by close()
    _index: int = 0

    def step(self) -> str | None:
        if self.closed or self._index >= len(self.chunks):
            self.finished = not self.closed
            return None
        if self.fail_at is not None and self._index == self.fail_at:
            raise RuntimeError("scripted decode failure")
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.hold is not None and self._index > 0:
            self.hold.wait()
        chunk = self.chunks[self._index]
        self._index += 1
        return chunk

    def close(self) -> None:
        self.closed = True
        self.closed_signal.set()


@dataclass
class ScriptedRunner:
    """Labels by keyword; replies with a fixed text (or one naming the tone), a word per step."""

    reply_text: str | None = None
    delay_s: float = 0.0  # per decode step, to simulate a slow model
    tag_delay_s: float = 0.0
    fail_tag: bool = False
    fail_reply_at: int | None = None  # raise on this decode step
    # A reply that outlives whatever the test does until it sets this: its first word
    # comes at once, each later one waits for the event (no timing involved).
    hold: threading.Event | None = None
    name: str = "scripted"
    tag_calls: list[list[str]] = field(default_factory=list)
    reply_calls: list[ReplyRequest] = field(default_factory=list)
    replies: list[ScriptedReply] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)  # streams per step_many call

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        self.tag_calls.append(list(texts))
        if self.tag_delay_s:
            time.sleep(self.tag_delay_s)
        if self.fail_tag:
            raise RuntimeError("scripted tagging failure")
        return [scripted_sentiment(text) for text in texts]

    def start_reply(self, request: ReplyRequest) -> ScriptedReply:
        self.reply_calls.append(request)
        text = self.reply_text
        if text is None:
            tone = _tone_word(request)
            text = f"A {tone} reply to: {request.user_text}"
        words = text.split(" ")
        chunks = [word + " " for word in words[:-1]] + [words[-1]]
        reply = ScriptedReply(chunks, self.delay_s, self.fail_reply_at, self.hold)
        self.replies.append(reply)
        return reply

    def step_many(self, streams: Sequence[ReplyStream]) -> list[str | None]:
        # No real batching to do: what the worker tests need is the record of the batches.
        self.batch_sizes.append(len(streams))
        # Every stream here came from a start_reply of this runner (or a test's subclass).
        return [cast(ScriptedReply, stream).step() for stream in streams]


@dataclass
class GatedRunner(ScriptedRunner):
    """A ScriptedRunner whose label passes wait while `gate` is clear: a test holds the worker
    thread inside one pass, so that whatever else is asked of the model meanwhile piles up at
    the worker (or is refused before it) where the test can look."""

    gate: threading.Event = field(default_factory=threading.Event)
    gate_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self.gate.set()  # open until a test closes it

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        if not self.gate.wait(self.gate_timeout_s):
            raise RuntimeError("the test never opened the gate")
        return super().tag(texts)

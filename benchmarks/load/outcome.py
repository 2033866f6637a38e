"""What happened to one message of a load run, as the bench saw it: shared by the in-process
run (benchmarks.load.load) and the run through Telegram (benchmarks.load.load_telegram)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    user: str
    index: int  # 0: the first wave
    text: str
    sent_at: float = 0.0  # time.monotonic(), the clock of engine.model.timings too
    label_s: float | None = None  # from sending, as are the next two
    first_text_s: float | None = None  # the first reply text shown
    end_s: float | None = None  # the end (final text shown, or the failure)
    tone: str | None = None  # the label's tone as shown (positive, negative, neutral)
    tagged: int = 0  # SentimentTagged events seen
    done: int = 0  # ReplyDone events seen
    failures: list[str] = field(default_factory=list)  # ReplyFailed reasons seen
    reply_chars: int = 0
    finished: bool | None = None  # ReplyDone.finished: False when MAX_NEW_TOKENS cut it

"""The reader's side of one streamed reply, shared by the in-process worker and the remote
engine: text deltas from a queue, then the end (`finished`, the token ids) or a failure.

Whoever produces the reply (the worker thread, a task reading an SSE stream) puts `str`
deltas, then one `StreamEnd` or `StreamFailure`, into the queue. The reader gets every delta
already produced even when it comes back late (e.g. after waiting out a 429); the deadline
bounds the producer's work, and is each subclass's `_next_item`'s to apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from engine.errors import ModelTimeout


@dataclass(frozen=True)
class StreamEnd:
    finished: bool
    tokens: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class StreamFailure:
    error: BaseException


class DeltaStream:
    """Async iterator over the text deltas of one reply; `finished` and `generated` (the
    reply's token ids, when the producer knows them) are set at its end."""

    def __init__(self, on_done: Callable[[], None]) -> None:
        self.finished = False
        self.generated: list[int] = []
        self._on_done = on_done
        self._done = False

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._next_item()
        except TimeoutError:
            self.cancel()
            raise ModelTimeout("the reply took too long") from None
        except BaseException:
            self.cancel()
            raise
        if isinstance(item, str):
            return item
        self._finish()
        if isinstance(item, StreamFailure):
            raise item.error
        assert isinstance(item, StreamEnd)
        self.finished, self.generated = item.finished, item.tokens
        raise StopAsyncIteration

    async def _next_item(self) -> object:
        """The next delta, StreamEnd or StreamFailure; TimeoutError past the deadline."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop the reply (the caller gave up)."""
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._on_done()

"""The streamed-reply renderer that every platform adapter shares.

The renderer turns the engine's event stream into platform messages: the label goes out at
once, the reply grows by editing that message (throttled, since platforms rate-limit edits),
overflow moves to a new message at the platform's length limit, and a rate-limit answer is
waited out and retried so no text is ever lost. A support note (ReplyDone.support, engine/chat/
safety.py) follows the reply as a message of its own. Adapters only supply a `MessageSink`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Generic, Protocol, TypeVar

from engine.chat import texts
from engine.types import (
    AlreadyHandled,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    Sentiment,
    SentimentTagged,
    TextDelta,
)

log = logging.getLogger(__name__)

Handle = TypeVar("Handle")
T = TypeVar("T")


class RateLimited(Exception):
    """Raised by a sink when the platform said 429; the renderer waits and retries."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after} s")
        self.retry_after = retry_after


class MessageSink(Protocol[Handle]):
    async def send(self, text: str) -> Handle: ...

    async def edit(self, handle: Handle, text: str) -> None: ...

    async def typing(self) -> None:
        """Show the typing indicator (platforms expire it after a few seconds)."""


def split_text(text: str, limit: int) -> list[str]:
    """Split into chunks of at most `limit` characters, preferring line, then word breaks."""
    chunks: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit + 1)
        if cut <= 0:
            cut = text.rfind(" ", limit // 2, limit + 1)
        if cut <= 0:
            cut = limit
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text or not chunks:
        chunks.append(text)
    return chunks


@dataclass(frozen=True)
class RenderLimits:
    max_chars: int  # Telegram 4096, Discord 2000
    edit_interval_s: float = 1.0  # at most one edit per message per interval
    typing_interval_s: float = 4.0  # renew the typing indicator this often
    max_retries: int = 5  # 429s waited out per send/edit before giving up on that call


async def _with_retry(call: Callable[[], Awaitable[T]], limits: RenderLimits) -> T:
    for attempt in range(limits.max_retries + 1):
        try:
            return await call()
        except RateLimited as limited:
            if attempt == limits.max_retries:
                raise
            log.info("platform rate limit: waiting %.1f s", limited.retry_after)
            await asyncio.sleep(limited.retry_after)
    raise AssertionError("unreachable")


@dataclass
class RenderResult(Generic[Handle]):
    text: str  # the full text shown, label line included
    messages: int  # how many platform messages it took
    failure: ReplyFailed | None
    # The label, and the message that shows it (the first): where correction buttons go.
    sentiment: Sentiment | None = None
    first: Handle | None = None
    support: Handle | None = None  # the support note's message, when one was sent


class ReplyRenderer(Generic[Handle]):
    """`existing`: a message begun before a restart, completed by editing it (its shown text
    is unknown, so the first update always edits). `note`: a line above the label (a retry's).
    `on_posted`: called with the first message once sent, so a restart can find it."""

    def __init__(
        self,
        sink: MessageSink[Handle],
        limits: RenderLimits,
        *,
        existing: Handle | None = None,
        note: str = "",
        on_posted: Callable[[Handle], Awaitable[None]] | None = None,
    ) -> None:
        self.sink = sink
        self.limits = limits
        self._handles: list[Handle] = [] if existing is None else [existing]
        # what each platform message currently shows
        self._shown: list[str | None] = [] if existing is None else [None]
        self._last_edit = 0.0
        self._note = note
        self._on_posted = on_posted

    async def render(self, events: AsyncIterator[ReplyEvent]) -> RenderResult[Handle]:
        header = ""
        sentiment: Sentiment | None = None
        body = ""
        support = ""
        failure: ReplyFailed | None = None
        typing_task = asyncio.create_task(self._keep_typing())
        try:
            async for event in events:
                if isinstance(event, SentimentTagged):
                    sentiment = event.sentiment
                    header = texts.label_line(sentiment)
                    if self._note:
                        header = f"{self._note}\n{header}"
                    await self._show(header, force=True)
                elif isinstance(event, TextDelta):
                    body += event.text
                    await self._show(self._compose(header, body), force=False)
                elif isinstance(event, ReplyDone):
                    body = event.text
                    support = event.support
                elif isinstance(event, ReplyFailed):
                    failure = event
                    body = f"{body.strip()}\n\n{event.message}" if body.strip() else event.message
                elif isinstance(event, AlreadyHandled):
                    break  # answered by another delivery of the message: show nothing
        finally:
            typing_task.cancel()
        final = self._compose(header, body)
        await self._show(final, force=True)
        first = self._handles[0] if self._handles else None
        note = None
        if support:
            # Its own message, after the whole reply: never edited into it, never split off.
            note = await _with_retry(partial(self.sink.send, support), self.limits)
        return RenderResult(final, len(self._handles), failure, sentiment, first, note)

    @staticmethod
    def _compose(header: str, body: str) -> str:
        body = body.strip()
        if header and body:
            return f"{header}\n\n{body}"
        return header or body

    async def _show(self, text: str, force: bool) -> None:
        """Bring the platform messages up to `text`; intermediate updates are throttled."""
        if not text:
            return
        chunks = split_text(text, self.limits.max_chars)
        now = time.monotonic()
        if not force and now - self._last_edit < self.limits.edit_interval_s:
            return
        if force and self._last_edit > now:
            # An intermediate edit was rate-limited until then: editing sooner would only earn
            # another 429 and spend one of the final frame's retries.
            await asyncio.sleep(self._last_edit - now)
            now = time.monotonic()
        for index, chunk in enumerate(chunks):
            if index < len(self._handles):
                if self._shown[index] == chunk:
                    continue
                handle = self._handles[index]
                if force:
                    await _with_retry(partial(self.sink.edit, handle, chunk), self.limits)
                else:
                    try:
                        await self.sink.edit(handle, chunk)
                    except RateLimited as limited:
                        # An intermediate frame can be skipped (the final one cannot): hold
                        # further edits until the platform's window has passed.
                        self._last_edit = now + limited.retry_after
                        return
                self._shown[index] = chunk
            else:
                handle = await _with_retry(partial(self.sink.send, chunk), self.limits)
                self._handles.append(handle)
                self._shown.append(chunk)
                if len(self._handles) == 1 and self._on_posted is not None:
                    await self._on_posted(handle)
        self._last_edit = time.monotonic()

    async def _keep_typing(self) -> None:
        while True:
            try:
                await self.sink.typing()
            except Exception as error:  # noqa: BLE001 - a missing indicator is cosmetic
                log.debug("typing indicator failed: %s", error)
            await asyncio.sleep(self.limits.typing_interval_s)

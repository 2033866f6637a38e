"""The streamed-reply renderer that every platform adapter shares.

The renderer turns the engine's event stream into platform messages: the label goes out at
once, the reply grows by editing that message (throttled, since platforms rate-limit edits),
overflow moves to a new message at the platform's length limit, and a rate-limit answer
or a transient fault (a timeout, a 5xx, a reset connection) is waited out and retried so no
text is ever lost. A support note (ReplyDone.support, engine/chat/safety.py) follows the reply
as a message of its own. Adapters only supply a `MessageSink`.

Crash-safe delivery: every message of a reply is reported (`on_messages`) as it is sent, its
send key before the send and its id right after, so a restart edits those messages in place
instead of posting new ones; `on_delivered` runs once the whole reply (and its note), or the
failure note that stands for it, is on the platform, which is when the inbox row may be done
(docs/reliability.md). A send under way at a restart, or retried after a transient fault, on
a platform that cannot give its message back (Telegram) may have left a message the bot
cannot find: the answer then says so.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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


class Transient(Exception):
    """Raised by a sink for a fault worth trying again (a timeout, a 5xx, a reset connection):
    the renderer retries it with a growing pause, like a 429."""


class MessageSink(Protocol[Handle]):
    # Whether the platform deduplicates sends by `key`: then a restart repeats a send that was
    # under way under its key and gets back the message made then. Without, that message
    # cannot be found again (the recorded key only says a send may have happened).
    keyed_sends: bool

    async def send(self, text: str, key: str | None = None) -> Handle:
        """Post a message. `key` identifies this send: a platform that deduplicates sends by
        such a key (Discord's enforced nonce) returns the message posted before under it."""

    async def edit(self, handle: Handle, text: str) -> None: ...

    async def delete(self, handle: Handle) -> None:
        """Remove a message the reply no longer needs (best effort: failures are logged)."""

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
    max_retries: int = 5  # 429s or transient faults retried per send/edit before giving up
    backoff_s: float = 0.5  # the first pause after a transient fault, doubled each time


async def _with_retry(call: Callable[[], Awaitable[T]], limits: RenderLimits) -> T:
    for attempt in range(limits.max_retries + 1):
        try:
            return await call()
        except RateLimited as limited:
            if attempt == limits.max_retries:
                raise
            log.info("platform rate limit: waiting %.1f s", limited.retry_after)
            await asyncio.sleep(limited.retry_after)
        except Transient as fault:
            if attempt == limits.max_retries:
                raise
            pause = limits.backoff_s * 2**attempt
            log.warning("platform fault (%s): trying again in %.1f s", fault, pause)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")


def new_send_key() -> str:
    """A send's key: Discord takes a nonce of up to 25 characters."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Messages(Generic[Handle]):
    """The messages of one reply so far, as recorded for a restart: every chunk in order, the
    support note once sent, and the key of a send under way (its message not known yet)."""

    chunks: Sequence[Handle] = ()
    support: Handle | None = None
    sending: str | None = None


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
    """`existing`: the messages of a reply begun before a restart, completed by editing them
    (their shown text is unknown, so the first update edits each), its support note not sent
    again, and a send that was under way repeated under its key. `note`: a line above the
    label (a retry's). `doubt`: a line added below it when the platform cannot give back the
    message of a send that may have happened (not `keyed_sends`): a send under way before the
    restart, or one retried after a transient fault (its first try may have been made, its
    answer lost); the user may see that message, cut off, beside the answer. `on_messages`:
    called with what is posted before each send (its key) and after it (its message), so a
    restart can find every message. `on_delivered`: called once the whole reply is shown, or
    a failure note that answers the message (ReplyFailed.answers); not for AlreadyHandled."""

    def __init__(
        self,
        sink: MessageSink[Handle],
        limits: RenderLimits,
        *,
        existing: Messages[Handle] | None = None,
        note: str = "",
        doubt: str = "",
        on_messages: Callable[[Messages[Handle]], Awaitable[None]] | None = None,
        on_delivered: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.sink = sink
        self.limits = limits
        existing = existing or Messages()
        self._handles: list[Handle] = list(existing.chunks)
        # what each platform message currently shows
        self._shown: list[str | None] = [None] * len(self._handles)
        self._support = existing.support
        self._resend_key = existing.sending  # the next send repeats it
        self._last_edit = 0.0
        self._note = note
        self._doubt = doubt if not sink.keyed_sends else ""
        self._doubted = existing.sending is not None  # shown only with a `doubt` to show
        self._on_messages = on_messages
        self._on_delivered = on_delivered

    async def render(self, events: AsyncIterator[ReplyEvent]) -> RenderResult[Handle]:
        label = ""
        sentiment: Sentiment | None = None
        body = ""
        support = ""
        failure: ReplyFailed | None = None
        done = False
        typing_task = asyncio.create_task(self._keep_typing())
        try:
            async for event in events:
                if isinstance(event, SentimentTagged):
                    sentiment = event.sentiment
                    label = texts.label_line(sentiment)
                    await self._show(self._header(label), force=True)
                elif isinstance(event, TextDelta):
                    body += event.text
                    await self._show(self._compose(self._header(label), body), force=False)
                elif isinstance(event, ReplyDone):
                    body = event.text
                    support = event.support
                    done = True
                elif isinstance(event, ReplyFailed):
                    failure = event
                    body = f"{body.strip()}\n\n{event.message}" if body.strip() else event.message
                elif isinstance(event, AlreadyHandled):
                    break  # answered by another delivery of the message: show nothing
        finally:
            typing_task.cancel()
        final = self._compose(self._header(label), body)
        await self._show(final, force=True)
        if final:
            await self._drop_extra(len(split_text(final, self.limits.max_chars)))
        first = self._handles[0] if self._handles else None
        if support and self._support is None:
            # Its own message, after the whole reply: never edited into it, never split off.
            self._support = await self._send(support)
            await self._report(None)
            if self._compose(self._header(label), body) != final:  # its send was retried
                final = self._compose(self._header(label), body)
                await self._show(final, force=True)
        answered = done or (failure is not None and failure.answers)
        if answered and self._on_delivered is not None:
            await self._on_delivered()
        note = self._support if support else None
        return RenderResult(final, len(self._handles), failure, sentiment, first, note)

    async def _drop_extra(self, needed: int) -> None:
        """Delete messages beyond the `needed` ones: the rest of a longer reply begun before a
        restart (the model answered shorter this time), or a streamed reply replaced by a
        shorter one (engine/chat/safety.py)."""
        if len(self._handles) <= needed:
            return
        extra = self._handles[needed:]
        del self._handles[needed:], self._shown[needed:]
        await self._report(None)
        for handle in extra:
            await self.sink.delete(handle)

    async def _send(self, text: str) -> Handle:
        """Post a new message of this reply, recorded before (its key) and after (its id).
        The key is recorded on every platform: where a repeat cannot find the message made
        under it (Telegram), a restart still learns that one may exist (`doubt`)."""
        key, self._resend_key = self._resend_key or new_send_key(), None
        await self._report(key)

        async def attempt() -> Handle:
            try:
                return await self.sink.send(text, key)
            except Transient:
                self._doubted = True  # it may have been made all the same
                raise

        return await _with_retry(attempt, self.limits)

    def _header(self, label: str) -> str:
        """The lines above the reply: the note, the doubt when due, the label."""
        if not label:
            return ""
        doubt = self._doubt if self._doubted else ""
        return "\n".join(line for line in (self._note, doubt, label) if line)

    async def _report(self, sending: str | None) -> None:
        if self._on_messages is not None:
            posted = Messages(tuple(self._handles), self._support, sending)
            await self._on_messages(posted)

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
                    except Transient as fault:
                        log.info("platform fault on an intermediate edit (%s): skipped", fault)
                        self._last_edit = now
                        return
                self._shown[index] = chunk
            else:
                repeated = self._resend_key is not None and self.sink.keyed_sends
                handle = await self._send(chunk)
                self._handles.append(handle)
                self._shown.append(chunk)
                await self._report(None)
                if repeated:
                    # A send repeated under its key may have returned the message posted
                    # before the restart, showing what it showed then.
                    await _with_retry(partial(self.sink.edit, handle, chunk), self.limits)
        self._last_edit = time.monotonic()

    async def _keep_typing(self) -> None:
        while True:
            try:
                await self.sink.typing()
            except Exception as error:  # noqa: BLE001 - a missing indicator is cosmetic
                log.debug("typing indicator failed: %s", error)
            await asyncio.sleep(self.limits.typing_interval_s)

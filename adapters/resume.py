"""Finishing what a dead process left unanswered: at start-up, then every RESUME_INTERVAL_S,
and at once when a user's new message finds an earlier one of theirs left by a dead process.

The chat service lists the platform's unfinished messages whose process is gone (a crash,
kill -9, a stop that cut a reply short; with PostgreSQL also another bot process sharing the
database), and this process's own that failed here (the database was away), and `resume`
answers each once. The later sweeps matter because a database server may notice a killed
process's connection only after this process has started, and because with several
processes the one that died may not be the one that restarts. Each message is handed to the
adapter's `answer` at most once at a time; all that one sweep finds are taken on together,
at most RESUME_CONCURRENCY answering at a time, oldest first (a user's later message waits
for their earlier ones in the chat service, whichever process has them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from adapters.streaming import RenderResult, ReplyRenderer
from engine.chat import texts
from engine.chat.service import ChatService
from engine.errors import StorageError
from engine.types import MessageKey, ReplyMessages, Unfinished

log = logging.getLogger(__name__)

Handle = TypeVar("Handle")
# Runs a coroutine as a task: PTB's Application.create_task, or asyncio.create_task.
Spawn = Callable[[Coroutine[Any, Any, None]], object]
# Messages taken over that are answered at once; the others wait their turn, oldest first.
RESUME_CONCURRENCY = 8


class Resumer:
    def __init__(
        self,
        service: ChatService,
        platform: str,
        answer: Callable[[Unfinished], Awaitable[None]],
    ) -> None:
        self.service = service
        self.platform = platform
        self._answer = answer
        # What is being answered, and its task (held: asyncio keeps only weak references).
        self._active: dict[MessageKey, object] = {}
        self._loop: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(RESUME_CONCURRENCY)
        # Set when a message found an earlier one to take over: the next sweep runs at once.
        self._woken = asyncio.Event()
        service.watch_takeovers(platform, self._woken.set)

    async def sweep(self, spawn: Spawn) -> int:
        """Hand each unfinished message not already being answered to `spawn` (which runs it
        as a task of the platform's kind); returns how many were handed on."""
        try:
            pending = await self.service.unfinished(self.platform)
        except StorageError as error:  # the database is away: the next sweep looks again
            log.warning("%s: could not read the unfinished messages: %s", self.platform, error)
            return 0
        except Exception:
            log.exception("%s: could not read the unfinished messages", self.platform)
            return 0
        fresh = [item for item in pending if item.key not in self._active]
        if fresh:
            log.info("%s: answering %d message(s) left unfinished", self.platform, len(fresh))
        for item in fresh:
            self._active[item.key] = spawn(self._run(item))
        return len(fresh)

    def start(self, spawn: Spawn) -> None:
        """Sweep every RESUME_INTERVAL_S from now on (0: never again after start-up)."""
        interval = self.service.config.resume_interval_s
        if interval > 0 and self._loop is None:
            self._loop = asyncio.create_task(self._every(interval, spawn), name="resume-sweeps")

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _every(self, interval: float, spawn: Spawn) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), interval)
            self._woken.clear()
            await self.sweep(spawn)

    async def _run(self, item: Unfinished) -> None:
        try:
            async with self._slots:
                await self._answer(item)
        finally:
            self._active.pop(item.key, None)


async def answer_late(
    service: ChatService,
    pending: Unfinished,
    renderer: Callable[[ReplyMessages, str, str], ReplyRenderer[Handle]],
    refused: type[Exception],
    failed: tuple[type[Exception], ...],
) -> RenderResult[Handle] | None:
    """Answer one message a dead process left unfinished, the same way on every platform.

    `renderer(begun, note, doubt)` renders into the chat: the reply messages the dead process
    had begun (`begun`: their platform ids, every chunk's, and a send under way) are completed
    in place; with none, a fresh answer opens with the note that it is a retry. `doubt` (in
    the user's language) joins the note when a send was under way that the platform cannot
    give back (ReplyRenderer decides: Telegram yes, Discord's keyed sends no). An answer
    already stored comes back from the chat service as it was (no model, no second mood
    event). A user the platform says is out of reach (`refused`: blocked the bot, closed
    their DMs) is stored and done all the same, as a live reply would be; any of `failed`
    leaves the message for a later sweep. Returns what was shown, or None when nothing
    complete was."""
    key = pending.key
    begun = pending.messages
    begun = replace(begun, chunks=tuple(ref for ref in begun.chunks if ref.isdigit()))
    if begun.support is not None and not begun.support.isdigit():
        begun = replace(begun, support=None)
    doubt = texts.cut_off_copy(pending.message.text)
    shown = renderer(begun, "" if begun.chunks else texts.RETRY_NOTE, doubt)
    try:
        async with contextlib.aclosing(service.resume(pending, confirm=True)) as events:
            try:
                result = await shown.render(events)
            except refused as error:
                log.warning("%s: chat %s refused the late reply to message %s (%s)",
                            key.platform, key.chat_id, key.message_id, error)  # fmt: skip
                async for _ in events:  # the rest is stored, the row done
                    pass
                await service.delivered(key)
                return None
    except failed as error:
        log.warning("%s: could not answer unfinished message %s in chat %s: %s",
                    key.platform, key.message_id, key.chat_id, error)  # fmt: skip
        return None
    if result.failure is not None:
        log.info("%s: resumed reply failed (%s)", key.platform, result.failure.reason)
        return None
    return result

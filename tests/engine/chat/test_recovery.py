"""ChatService.resume: a message recorded by a process that died is answered once, by one
process, after a restart; one that a live process holds is left to it.

A second store on the same file stands for the other process: open, it lives; closed, it
is gone (its owner file's lock dropped, as its death would)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

from engine.chat import texts
from engine.chat.service import MAX_RESUMES, WAITING_WINDOW
from engine.types import (
    AlreadyHandled,
    IncomingMessage,
    MessageKey,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    ReplyMessages,
    SentimentTagged,
    Unfinished,
)
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine
from tests.support import EPOCH

MESSAGE = IncomingMessage("telegram", "42", "chat-1", "I am so happy today", "7", "{}")
KEY = MessageKey("telegram", "chat-1", "7")


async def events_of(stream: AsyncIterator[ReplyEvent]) -> list[ReplyEvent]:
    async def consume() -> list[ReplyEvent]:
        return [event async for event in stream]

    return await asyncio.wait_for(consume(), 10)


async def claimed_by_another_process(engine: ScriptedEngine, *, alive: bool) -> SqlMoodStore:
    other = await SqlMoodStore.open(engine.db_path)
    assert await other.claim_message(KEY, MESSAGE.user, EPOCH, MESSAGE)
    if not alive:
        await other.close()
    return other


def inbox_row(engine: ScriptedEngine) -> tuple[object, ...]:
    with sqlite3.connect(engine.db_path) as conn:
        return tuple(conn.execute("SELECT state, text, attempts FROM inbox").fetchone())


async def test_a_dead_processs_message_is_resumed_once(scripted_engine: ScriptedEngine) -> None:
    await claimed_by_another_process(scripted_engine, alive=False)
    service = scripted_engine.service
    [pending] = await service.unfinished("telegram")
    assert pending.message == MESSAGE

    events = await events_of(service.resume(pending))
    assert isinstance(events[0], SentimentTagged)
    assert isinstance(events[-1], ReplyDone)
    assert events[-1].text == "A cheerful reply to: I am so happy today"
    # Once: not again by a second resume, nor by the message delivered again.
    assert await events_of(service.resume(pending)) == [AlreadyHandled(KEY)]
    assert await events_of(service.handle(MESSAGE)) == [AlreadyHandled(KEY)]
    assert await service.unfinished("telegram") == []
    assert len(await scripted_engine.store.mood_events(MESSAGE.user, EPOCH)) == 1
    assert len(scripted_engine.runner.reply_calls) == 1
    assert inbox_row(scripted_engine) == ("done", None, 1)


async def test_a_live_processs_message_is_left_to_it(scripted_engine: ScriptedEngine) -> None:
    other = await claimed_by_another_process(scripted_engine, alive=True)
    try:
        assert await scripted_engine.service.unfinished("telegram") == []
        # Listed while its owner seemed gone, say: taking it, under the turn, still refuses.
        pending = Unfinished(MESSAGE, EPOCH)
        assert await events_of(scripted_engine.service.resume(pending)) == [AlreadyHandled(KEY)]
        assert scripted_engine.runner.tag_calls == []
        assert inbox_row(scripted_engine) == ("received", MESSAGE.text, 0)
    finally:
        await other.close()


async def test_a_message_that_keeps_killing_its_process_gets_an_apology(
    scripted_engine: ScriptedEngine,
) -> None:
    await claimed_by_another_process(scripted_engine, alive=False)
    with sqlite3.connect(scripted_engine.db_path) as conn:
        conn.execute("UPDATE inbox SET attempts = ?", (MAX_RESUMES,))
    [pending] = await scripted_engine.service.unfinished("telegram")
    events = await events_of(scripted_engine.service.resume(pending))
    assert events == [ReplyFailed("model_error", texts.MODEL_ERROR)]
    assert scripted_engine.runner.tag_calls == []
    assert inbox_row(scripted_engine) == ("done", None, MAX_RESUMES + 1)


async def test_handle_keeps_the_text_while_answering_and_notes_the_reply(
    scripted_engine: ScriptedEngine,
) -> None:
    scripted_engine.runner.delay_s = 0.05
    service = scripted_engine.service
    stream = service.handle(MESSAGE, confirm=True)
    first = await anext(stream)
    assert isinstance(first, SentimentTagged)
    await service.note_reply(KEY, ReplyMessages(("9001",)))
    assert await service.unfinished("telegram") == []  # its process (this one) lives
    with sqlite3.connect(scripted_engine.db_path) as conn:
        row = conn.execute("SELECT text, origin, reply_ref FROM inbox").fetchone()
    assert row == (MESSAGE.text, MESSAGE.origin, "9001")
    rest = await events_of(stream)
    assert isinstance(rest[-1], ReplyDone)
    # Stored, but done only once the adapter has shown it all.
    assert inbox_row(scripted_engine) == ("received", MESSAGE.text, 0)
    await service.delivered(KEY)
    assert inbox_row(scripted_engine) == ("done", None, 0)


async def test_a_later_message_waits_for_the_earlier_one_a_dead_process_left(
    scripted_engine: ScriptedEngine,
) -> None:
    await claimed_by_another_process(scripted_engine, alive=False)  # message 7
    service = scripted_engine.service
    later = replace(MESSAGE, text="and then?", message_id="8")
    # What the adapter's Resumer does when woken: take over what is unfinished, at once.
    takeovers: list[asyncio.Task[list[list[ReplyEvent]]]] = []

    async def take_over() -> list[list[ReplyEvent]]:
        found = await service.unfinished("telegram")
        return [await events_of(service.resume(pending)) for pending in found]

    service.watch_takeovers("telegram", lambda: takeovers.append(asyncio.create_task(take_over())))
    events = await events_of(service.handle(later))
    assert isinstance(events[-1], ReplyDone)
    assert takeovers, "the earlier message was not taken over"
    resumed = [events for task in takeovers for events in await task]
    assert [type(events[-1]) for events in resumed if len(events) > 1] == [ReplyDone]
    turns = await scripted_engine.store.export_turns(MESSAGE.user)
    assert [t.content for t in turns if t.role == "user"] == [MESSAGE.text, "and then?"]
    assert len(await scripted_engine.store.mood_events(MESSAGE.user, EPOCH)) == 2


async def test_a_message_that_failed_here_is_retried_here(scripted_engine: ScriptedEngine) -> None:
    service = scripted_engine.service
    # Recorded by this process, and not being answered: its answer failed here (say the
    # database was away when the exchange was to be stored).
    assert await scripted_engine.store.claim_message(KEY, MESSAGE.user, service.now(), MESSAGE)
    [pending] = await service.unfinished("telegram")
    assert pending.held_by == "here"
    events = await events_of(service.resume(pending))
    assert isinstance(events[-1], ReplyDone)
    assert inbox_row(scripted_engine) == ("done", None, 1)  # counted: no endless retries


async def test_a_message_that_failed_here_long_ago_is_given_up(
    scripted_engine: ScriptedEngine,
) -> None:
    service = scripted_engine.service
    long_ago = service.now() - WAITING_WINDOW - timedelta(minutes=1)
    assert await scripted_engine.store.claim_message(KEY, MESSAGE.user, long_ago, MESSAGE)
    assert await service.unfinished("telegram") == []
    assert inbox_row(scripted_engine) == ("done", None, 0)
    # And it holds up none of the user's later messages.
    later = replace(MESSAGE, text="and then?", message_id="8")
    assert isinstance((await events_of(service.handle(later)))[-1], ReplyDone)

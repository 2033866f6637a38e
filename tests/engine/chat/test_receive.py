"""ChatService.receive: an adapter records messages on arrival, before its platform is told
they arrived (Telegram, #18); `handle` then answers each one once, as this process's own.
What another process holds, and what is done, stays AlreadyHandled.

A second store on the same file stands for another bot process: open, it lives."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest

from engine.chat.service import ChatService
from engine.errors import StorageError
from engine.types import (
    AlreadyHandled,
    IncomingMessage,
    MessageKey,
    ReplyDone,
    ReplyEvent,
    SentimentTagged,
)
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine
from tests.support import EPOCH

KEY = MessageKey("telegram", "chat-1", "7")


def msg(text: str = "I am so happy today", message_id: str = "7") -> IncomingMessage:
    return IncomingMessage("telegram", "42", "chat-1", text, message_id, '{"private": true}')


async def run(service: ChatService, message: IncomingMessage) -> list[ReplyEvent]:
    async def consume() -> list[ReplyEvent]:
        return [event async for event in service.handle(message)]

    return await asyncio.wait_for(consume(), 10)


def inbox(engine: ScriptedEngine) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(engine.db_path) as conn:
        rows = conn.execute("SELECT message_id, state, text FROM inbox ORDER BY rowid")
        return [tuple(row) for row in rows]


async def mood_rows(engine: ScriptedEngine) -> int:
    return len(await engine.store.mood_events(msg().user, EPOCH))


async def test_a_received_message_is_recorded_then_answered_once(
    scripted_engine: ScriptedEngine,
) -> None:
    service = scripted_engine.service
    # Cleaned and cut as `handle` would keep it: what a restart answers.
    assert await service.receive([msg("I am\x00 so happy today")]) == 1
    assert inbox(scripted_engine) == [("7", "received", "I am so happy today")]
    assert scripted_engine.runner.tag_calls == []  # recorded only: no work yet

    events = await run(service, msg("I am\x00 so happy today"))
    again = await run(service, msg("I am\x00 so happy today"))

    assert isinstance(events[0], SentimentTagged)
    assert isinstance(events[-1], ReplyDone)
    assert again == [AlreadyHandled(KEY)]
    assert inbox(scripted_engine) == [("7", "done", None)]
    assert await mood_rows(scripted_engine) == 1


async def test_a_copy_received_twice_is_answered_once(scripted_engine: ScriptedEngine) -> None:
    service = scripted_engine.service
    scripted_engine.runner.delay_s = 0.01  # the first is still replying when the copy runs
    assert await service.receive([msg(), msg()]) == 1
    assert await service.receive([msg()]) == 0
    results = await asyncio.gather(run(service, msg()), run(service, msg()))

    finals = sorted(type(events[-1]).__name__ for events in results)
    assert finals == ["AlreadyHandled", "ReplyDone"]
    assert await mood_rows(scripted_engine) == 1


async def test_a_message_another_live_process_recorded_is_not_received_here(
    scripted_engine: ScriptedEngine,
) -> None:
    other = await SqlMoodStore.open(scripted_engine.db_path)
    try:
        assert await other.claim_message(KEY, msg().user, EPOCH, msg())
        assert await scripted_engine.service.receive([msg()]) == 0
        assert await run(scripted_engine.service, msg()) == [AlreadyHandled(KEY)]
    finally:
        await other.close()
    assert scripted_engine.runner.tag_calls == []


async def test_a_done_message_delivered_again_is_not_received(
    scripted_engine: ScriptedEngine,
) -> None:
    service = scripted_engine.service
    assert isinstance((await run(service, msg()))[-1], ReplyDone)
    assert await service.receive([msg()]) == 0
    assert await run(service, msg()) == [AlreadyHandled(KEY)]
    assert await mood_rows(scripted_engine) == 1


async def test_a_received_message_taken_over_by_another_process_is_left_to_it(
    scripted_engine: ScriptedEngine,
) -> None:
    # This process recorded it, then lost it (its owner lock dropped, say, and a live
    # neighbour took the message over): its own later `handle` must not answer it too.
    assert await scripted_engine.service.receive([msg()]) == 1
    other = await SqlMoodStore.open(scripted_engine.db_path)
    try:
        with sqlite3.connect(scripted_engine.db_path) as conn:
            conn.execute("UPDATE inbox SET owner = ?", (other.owner,))
        assert await run(scripted_engine.service, msg()) == [AlreadyHandled(KEY)]
    finally:
        await other.close()
    assert scripted_engine.runner.tag_calls == []
    assert inbox(scripted_engine) == [("7", "received", "I am so happy today")]


async def test_a_database_that_cannot_record_on_arrival_leaves_it_to_handle(
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = scripted_engine.store
    claim = store.claim_message
    failures = [StorageError("the database is locked by another process")]

    async def flaky_claim(*args: object, **kwargs: object) -> bool:
        if failures:
            raise failures.pop()
        return await claim(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "claim_message", flaky_claim)
    caplog.set_level(logging.WARNING, logger="engine.chat.service")
    assert await scripted_engine.service.receive([msg()]) == 0
    assert "could not record an incoming message on arrival" in caplog.text
    assert inbox(scripted_engine) == []

    events = await run(scripted_engine.service, msg())  # records it itself, then answers
    assert isinstance(events[-1], ReplyDone)
    assert inbox(scripted_engine) == [("7", "done", None)]

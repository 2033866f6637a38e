"""A platform message is handled at most once: the chat service claims it in the store's
inbox before any work, so a redelivery (or the same message at a second bot process) makes
no second mood row and no second reply."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

from engine.chat import texts
from engine.chat.config import ChatConfig
from engine.chat.service import ChatService
from engine.errors import StorageError
from engine.types import (
    AlreadyHandled,
    IncomingMessage,
    MessageKey,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    Sentiment,
    SentimentTagged,
)
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
KEY = MessageKey("telegram", "chat-1", "7")


def msg(
    text: str = "I am happy", message_id: str | None = "7", chat: str = "chat-1"
) -> IncomingMessage:
    return IncomingMessage("telegram", "42", chat, text, message_id=message_id)


async def run(service: ChatService, message: IncomingMessage) -> list[ReplyEvent]:
    async def consume() -> list[ReplyEvent]:
        return [event async for event in service.handle(message)]

    return await asyncio.wait_for(consume(), 10)


def inbox(engine: ScriptedEngine) -> list[tuple[str, str, str]]:
    with sqlite3.connect(engine.db_path) as conn:
        rows = conn.execute("SELECT chat_id, message_id, state FROM inbox ORDER BY rowid")
        return [tuple(row) for row in rows]


async def mood_rows(engine: ScriptedEngine) -> int:
    return len(await engine.store.mood_events(msg().user, EPOCH))


async def test_a_message_delivered_twice_is_answered_once(scripted_engine: ScriptedEngine) -> None:
    first = await run(scripted_engine.service, msg())
    again = await run(scripted_engine.service, msg())

    assert isinstance(first[0], SentimentTagged)
    assert isinstance(first[-1], ReplyDone)
    assert again == [AlreadyHandled(KEY)]
    assert await mood_rows(scripted_engine) == 1
    assert len(scripted_engine.runner.tag_calls) == 1  # no model work for the copy
    assert len(scripted_engine.runner.reply_calls) == 1
    assert inbox(scripted_engine) == [("chat-1", "7", "done")]


async def test_copies_arriving_together_are_answered_once(scripted_engine: ScriptedEngine) -> None:
    scripted_engine.runner.delay_s = 0.01  # the first is still replying when the copies come
    results = await asyncio.gather(*(run(scripted_engine.service, msg()) for _ in range(3)))
    finals = sorted(type(events[-1]).__name__ for events in results)
    assert finals == ["AlreadyHandled", "AlreadyHandled", "ReplyDone"]
    assert await mood_rows(scripted_engine) == 1


async def test_two_bot_processes_on_one_database_answer_a_message_once(
    scripted_engine: ScriptedEngine,
) -> None:
    # A second service with its own store on the same file: another process's view.
    other_store = await SqlMoodStore.open(scripted_engine.db_path)
    other = ChatService(scripted_engine.worker, other_store, ChatConfig())
    scripted_engine.runner.delay_s = 0.01
    try:
        results = await asyncio.gather(run(scripted_engine.service, msg()), run(other, msg()))
    finally:
        await other_store.close()
    assert sorted(type(events[-1]).__name__ for events in results) == [
        "AlreadyHandled",
        "ReplyDone",
    ]
    assert await mood_rows(scripted_engine) == 1


async def test_the_same_id_in_another_chat_is_another_message(
    scripted_engine: ScriptedEngine,
) -> None:
    assert isinstance((await run(scripted_engine.service, msg(chat="chat-1")))[-1], ReplyDone)
    assert isinstance((await run(scripted_engine.service, msg(chat="chat-2")))[-1], ReplyDone)
    assert await mood_rows(scripted_engine) == 2


async def test_messages_without_a_platform_id_are_all_answered(
    scripted_engine: ScriptedEngine,
) -> None:
    for _ in range(2):  # the console's lines have no id: each one is new
        assert isinstance((await run(scripted_engine.service, msg(message_id=None)))[-1], ReplyDone)
    assert await mood_rows(scripted_engine) == 2
    assert inbox(scripted_engine) == []


async def test_a_message_that_failed_is_done_and_not_tried_again(
    scripted_engine: ScriptedEngine,
) -> None:
    scripted_engine.runner.fail_tag = True
    assert await run(scripted_engine.service, msg()) == [
        ReplyFailed("model_error", texts.MODEL_ERROR)
    ]
    scripted_engine.runner.fail_tag = False
    assert await run(scripted_engine.service, msg()) == [AlreadyHandled(KEY)]
    assert inbox(scripted_engine) == [("chat-1", "7", "done")]
    assert await run(scripted_engine.service, msg(" ", message_id="8")) == [
        ReplyFailed("empty", texts.EMPTY_MESSAGE)
    ]
    assert inbox(scripted_engine)[-1] == ("chat-1", "8", "done")


class FailingRecord:
    """The real store, except that storing an exchange fails."""

    def __init__(self, inner: SqlMoodStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def record_exchange(self, *args: object, **kwargs: object) -> None:
        raise StorageError("the database is locked by another process")


async def test_a_message_whose_exchange_was_not_stored_stays_unfinished(
    scripted_engine: ScriptedEngine,
) -> None:
    store = FailingRecord(scripted_engine.store)
    service = ChatService(scripted_engine.worker, store)  # type: ignore[arg-type]
    events = await run(service, msg())
    assert events[-1] == ReplyFailed(
        "storage_error", texts.STORAGE_ERROR, sentiment_of(events), answers=False
    )
    # Not done: stored-and-done happen together or not at all.
    assert inbox(scripted_engine) == [("chat-1", "7", "received")]


def sentiment_of(events: list[ReplyEvent]) -> Sentiment:
    first = events[0]
    assert isinstance(first, SentimentTagged)
    return first.sentiment


async def test_an_inbox_that_cannot_be_written_fails_before_any_work(
    scripted_engine: ScriptedEngine,
) -> None:
    class NoClaims(FailingRecord):
        async def claim_message(self, *args: object, **kwargs: object) -> bool:
            raise StorageError("the database is locked by another process")

    service = ChatService(scripted_engine.worker, NoClaims(scripted_engine.store))  # type: ignore[arg-type]
    assert await run(service, msg()) == [
        ReplyFailed("storage_error", texts.STORAGE_ERROR, answers=False)
    ]
    assert scripted_engine.runner.tag_calls == []

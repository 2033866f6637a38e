"""ChatService and the delivery of an answer: with `confirm`, a message is done only once the
adapter says the answer is shown in full (`delivered`); a restart in between shows the
stored answer again, without the model and without a second mood event."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import pytest

from engine.chat import service as service_module
from engine.chat import texts
from engine.chat.service import ChatService
from engine.types import (
    IncomingMessage,
    MessageKey,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    ReplyMessages,
    Sentiment,
    SentimentTagged,
    StoredReply,
    TextDelta,
)
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine
from tests.storage.test_storage import event
from tests.support import EPOCH

MESSAGE = IncomingMessage("telegram", "42", "chat-1", "I am so happy today", "7", "{}")
KEY = MessageKey("telegram", "chat-1", "7")
SAD = Sentiment("negative", 0.2)


async def events_of(stream: AsyncIterator[ReplyEvent]) -> list[ReplyEvent]:
    async def consume() -> list[ReplyEvent]:
        return [event async for event in stream]

    return await asyncio.wait_for(consume(), 10)


def inbox_row(engine: ScriptedEngine) -> tuple[object, ...]:
    with sqlite3.connect(engine.db_path) as conn:
        return tuple(conn.execute("SELECT state, text, reply IS NOT NULL FROM inbox").fetchone())


async def test_a_confirmed_answer_is_done_only_once_delivered(
    scripted_engine: ScriptedEngine,
) -> None:
    service = scripted_engine.service
    events = await events_of(service.handle(MESSAGE, confirm=True))
    assert isinstance(events[-1], ReplyDone)
    assert inbox_row(scripted_engine) == ("received", MESSAGE.text, True)
    assert len(await scripted_engine.store.mood_events(MESSAGE.user, EPOCH)) == 1
    await service.delivered(KEY)
    assert inbox_row(scripted_engine) == ("done", None, False)


async def test_an_answer_being_shown_is_not_retried_here_until_its_grace_runs_out(
    scripted_engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = scripted_engine.service
    events = await events_of(service.handle(MESSAGE, confirm=True))
    assert isinstance(events[-1], ReplyDone)
    # Its row is unfinished and this process's, but the adapter is still showing it (the
    # throttled last edit, retries): the sweep must not answer it a second time meanwhile.
    assert await service.unfinished("telegram") == []
    # An adapter that never says it was shown (its task failed) leaves a failure to retry.
    monkeypatch.setattr(service_module, "DELIVERY_GRACE_S", 0.0)
    [pending] = await service.unfinished("telegram")
    assert (pending.key, pending.held_by) == (KEY, "here")
    await service.delivered(KEY)
    assert await service.unfinished("telegram") == []


async def test_a_stored_answer_left_unshown_by_a_dead_process_is_shown_again_from_the_store(
    scripted_engine: ScriptedEngine,
) -> None:
    # The other process stored the answer and had sent its three chunks, then died before
    # its last edit reached the platform.
    other = await SqlMoodStore.open(scripted_engine.db_path)
    assert await other.claim_message(KEY, MESSAGE.user, EPOCH, MESSAGE)
    answer = StoredReply("Rest now.", SAD, "💛 note")
    mood = event(MESSAGE.user, MESSAGE.chat_id, EPOCH)
    await other.record_exchange(mood, [], done=KEY, reply=answer)
    await other.set_reply_messages(KEY, ReplyMessages(("31", "32", "33")))
    await other.close()

    service = scripted_engine.service
    [pending] = await service.unfinished("telegram")
    assert pending.messages == ReplyMessages(("31", "32", "33"))
    events = await events_of(service.resume(pending, confirm=True))
    assert [type(e) for e in events] == [SentimentTagged, ReplyDone]
    assert not any(isinstance(e, TextDelta) for e in events)
    done = events[-1]
    assert isinstance(done, ReplyDone)
    assert (done.text, done.sentiment, done.support) == ("Rest now.", SAD, "💛 note")
    # Neither the model nor the store was asked again.
    assert scripted_engine.runner.tag_calls == []
    assert scripted_engine.runner.reply_calls == []
    assert len(await scripted_engine.store.mood_events(MESSAGE.user, EPOCH)) == 1
    assert inbox_row(scripted_engine) == ("received", MESSAGE.text, True)
    await service.delivered(KEY)
    assert inbox_row(scripted_engine) == ("done", None, False)
    assert await service.unfinished("telegram") == []


async def dies_after(engine: ScriptedEngine, confirm: bool = True) -> list[ReplyEvent]:
    """Another process on the same database handles MESSAGE and dies before its adapter has
    shown anything of what came out (its store closed: its owner gone)."""
    other = await SqlMoodStore.open(engine.db_path)
    try:
        service = ChatService(engine.worker, other, engine.service.config)
        return await events_of(service.handle(MESSAGE, confirm=confirm))
    finally:
        await other.close()


async def test_a_failure_note_is_done_only_once_shown_so_a_kill_before_leaves_it_to_answer(
    scripted_engine: ScriptedEngine,
) -> None:
    scripted_engine.runner.fail_tag = True
    [failed] = await dies_after(scripted_engine)
    assert failed == ReplyFailed("model_error", texts.MODEL_ERROR)
    # The note was never shown: the message is still to be answered.
    assert inbox_row(scripted_engine) == ("received", MESSAGE.text, False)

    scripted_engine.runner.fail_tag = False
    service = scripted_engine.service
    [pending] = await service.unfinished("telegram")
    events = await events_of(service.resume(pending, confirm=True))
    assert isinstance(events[-1], ReplyDone)
    await service.delivered(KEY)
    assert inbox_row(scripted_engine) == ("done", None, False)
    assert len(await scripted_engine.store.mood_events(MESSAGE.user, EPOCH)) == 1


async def test_a_failure_after_the_label_is_shown_again_after_a_kill_without_the_model(
    scripted_engine: ScriptedEngine,
) -> None:
    # The model failed mid-reply: the mood event is stored, and the failure note with it,
    # so a restart shows that note again (no second label from the model, no second event).
    scripted_engine.runner.fail_reply_at = 2
    events = await dies_after(scripted_engine)
    failed = events[-1]
    assert isinstance(failed, ReplyFailed)
    assert failed.reason == "model_error"
    assert inbox_row(scripted_engine) == ("received", MESSAGE.text, True)
    tags = len(scripted_engine.runner.tag_calls)

    service = scripted_engine.service
    [pending] = await service.unfinished("telegram")
    again = await events_of(service.resume(pending, confirm=True))
    assert failed.sentiment is not None
    assert again == [SentimentTagged(failed.sentiment, 0.0), failed]
    assert len(scripted_engine.runner.tag_calls) == tags
    assert len(await scripted_engine.store.mood_events(MESSAGE.user, EPOCH)) == 1
    await service.delivered(KEY)
    assert inbox_row(scripted_engine) == ("done", None, False)
    assert await service.unfinished("telegram") == []


async def test_without_confirm_a_failure_is_done_at_once(scripted_engine: ScriptedEngine) -> None:
    scripted_engine.runner.fail_tag = True
    [failed] = await dies_after(scripted_engine, confirm=False)
    assert isinstance(failed, ReplyFailed)
    assert failed.reason == "model_error"
    assert inbox_row(scripted_engine) == ("done", None, False)

"""One user flooding the bot: past USER_QUEUE_MAX waiting messages the answer is "slow down"
at once, the rest are answered in order, and other users are not held up meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncGenerator

import pytest

from engine.chat import texts
from engine.chat.service import ChatService
from engine.types import IncomingMessage, ReplyDone, ReplyEvent, ReplyFailed, SentimentTagged
from tests.conftest import SYSTEM_LAYOUT, ScriptedEngine

HANG = 10.0


def msg(text: str, message_id: str, user: str = "42") -> IncomingMessage:
    return IncomingMessage("telegram", user, f"chat-{user}", text, message_id=message_id)


async def consume(service: ChatService, message: IncomingMessage) -> list[ReplyEvent]:
    return [event async for event in service.handle(message)]


def start(service: ChatService, message: IncomingMessage) -> asyncio.Task[list[ReplyEvent]]:
    """The message sent now: tasks started one after another reach the service in order
    (each one's inbox claim is queued on the store's lock behind the one before)."""
    return asyncio.create_task(consume(service, message))


async def run(service: ChatService, message: IncomingMessage) -> list[ReplyEvent]:
    return await asyncio.wait_for(start(service, message), HANG)


def inbox_states(engine: ScriptedEngine) -> dict[str, str]:
    with sqlite3.connect(engine.db_path) as conn:
        return dict(conn.execute("SELECT message_id, state FROM inbox"))


def capped(engine: ScriptedEngine, cap: int) -> ChatService:
    config = SYSTEM_LAYOUT.model_copy(update={"user_queue_max": cap})
    return ChatService(engine.worker, engine.store, config)


async def holding(
    service: ChatService, message: IncomingMessage
) -> AsyncGenerator[ReplyEvent, None]:
    """The message's stream, read up to its label: its user's lock stays held (the stream is
    suspended inside it) until the test reads on, so the user's next messages must wait."""
    stream = service.handle(message)
    assert isinstance(await asyncio.wait_for(anext(stream), HANG), SentimentTagged)
    return stream


@pytest.mark.parametrize("cap", [0, 2])
async def test_past_the_cap_a_flood_gets_slow_down_and_the_rest_are_answered_in_order(
    scripted_engine: ScriptedEngine, cap: int
) -> None:
    service = capped(scripted_engine, cap)
    extra = 3
    first = await holding(service, msg("flood 0", "0"))
    answered: list[str] = []

    async def send(i: int) -> list[ReplyEvent]:
        events = await consume(service, msg(f"flood {i}", str(i)))
        if isinstance(events[-1], ReplyDone):
            answered.append(events[-1].text)
        return events

    waiting = [asyncio.create_task(send(i)) for i in range(1, cap + 1)]
    over = [asyncio.create_task(send(i)) for i in range(cap + 1, cap + 1 + extra)]
    # The ones over the cap are answered although the user's lock is still held.
    slowed = await asyncio.wait_for(asyncio.gather(*over), HANG)
    # Told once per burst; the others are done without another notice.
    assert slowed == [[ReplyFailed("slow_down", texts.SLOW_DOWN)]] + [
        [ReplyFailed("slow_down", "")]
    ] * (extra - 1)
    assert not any(task.done() for task in waiting)

    rest = [event async for event in first]
    assert isinstance(rest[-1], ReplyDone)
    results = await asyncio.wait_for(asyncio.gather(*waiting), HANG)
    assert all(isinstance(events[-1], ReplyDone) for events in results)
    assert answered == [f"A comforting reply to: flood {i}" for i in range(1, cap + 1)]
    # Every message was answered, so each is done in the inbox: nothing left as unfinished.
    assert inbox_states(scripted_engine) == {str(i): "done" for i in range(cap + 1 + extra)}
    # The slowed-down messages were never labelled, so they left no mood event.
    assert scripted_engine.runner.tag_calls == [[f"flood {i}"] for i in range(cap + 1)]


async def test_another_user_is_answered_while_the_flooder_waits(
    scripted_engine: ScriptedEngine,
) -> None:
    service = capped(scripted_engine, 2)
    first = await holding(service, msg("flood 0", "0"))
    waiting = [start(service, msg(f"flood {i}", str(i))) for i in (1, 2)]

    other = await run(service, msg("a great day", "b1", user="99"))
    assert isinstance(other[-1], ReplyDone)
    assert not any(task.done() for task in waiting)

    async for _ in first:
        pass
    await asyncio.wait_for(asyncio.gather(*waiting), HANG)


async def test_the_cap_counts_waiting_messages_only_so_a_user_can_go_on_after_a_flood(
    scripted_engine: ScriptedEngine,
) -> None:
    service = capped(scripted_engine, 1)
    first = await holding(service, msg("flood 0", "0"))
    second = start(service, msg("flood 1", "1"))
    third = await run(service, msg("flood 2", "2"))
    assert [e.reason for e in third if isinstance(e, ReplyFailed)] == ["slow_down"]
    async for _ in first:
        pass
    await asyncio.wait_for(second, HANG)
    # The queue has drained: the next message is answered as usual.
    later = await run(service, msg("flood 3", "3"))
    assert isinstance(later[-1], ReplyDone)
    # A new burst is told again.
    first = await holding(service, msg("flood 4", "4"))
    second = start(service, msg("flood 5", "5"))
    again = await run(service, msg("flood 6", "6"))
    assert again == [ReplyFailed("slow_down", texts.SLOW_DOWN)]
    async for _ in first:
        pass
    await asyncio.wait_for(second, HANG)
    assert service._user_locks == {}  # nobody holds or waits: the user's lock was dropped


async def test_the_cap_counts_what_waits_in_every_process_sharing_the_store(
    scripted_engine: ScriptedEngine,
) -> None:
    # Two services on one store stand for two bot processes behind a load balancer: each
    # sees only its own waiting messages, the inbox sees them all.
    # The first is held mid-answer here; the second waits there for it (the user's order).
    here, there = capped(scripted_engine, 1), capped(scripted_engine, 1)
    first = await holding(here, msg("flood 0", "0"))
    second = start(there, msg("flood 1", "1"))
    for _ in range(400):
        if "1" in inbox_states(scripted_engine):
            break
        await asyncio.sleep(0.01)
    third = await run(there, msg("flood 2", "2"))  # one waits there by the inbox's count
    assert third == [ReplyFailed("slow_down", texts.SLOW_DOWN)]
    fourth = await run(here, msg("flood 3", "3"))
    assert fourth == [ReplyFailed("slow_down", texts.SLOW_DOWN)]  # each process tells once
    assert await run(here, msg("flood 4", "4")) == [ReplyFailed("slow_down", "")]
    assert isinstance([event async for event in first][-1], ReplyDone)
    assert isinstance((await asyncio.wait_for(second, HANG))[-1], ReplyDone)
    # Drained everywhere: the next message is answered, in either process.
    assert isinstance((await run(there, msg("flood 5", "5")))[-1], ReplyDone)
    assert inbox_states(scripted_engine) == {str(i): "done" for i in range(6)}


async def test_forget_and_reset_are_not_capped(scripted_engine: ScriptedEngine) -> None:
    service = capped(scripted_engine, 0)
    first = await holding(service, msg("flood 0", "0"))
    reset = asyncio.create_task(service.reset(msg("x", "1").user, "chat-42"))
    await asyncio.sleep(0)
    assert not reset.done()  # it waits its turn instead of being refused
    async for _ in first:
        pass
    assert await asyncio.wait_for(reset, HANG) == texts.RESET_DONE

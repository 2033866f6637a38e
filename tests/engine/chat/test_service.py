"""ChatService on the scripted runner and a real SQLite store (conftest `scripted_engine`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from engine.chat import texts
from engine.chat.config import ChatConfig
from engine.chat.prompts import EXAMPLES, PERSONA, TONES
from engine.chat.service import ChatService
from engine.errors import StorageError
from engine.model.worker import ModelWorker
from engine.types import (
    IncomingMessage,
    Label,
    MoodEvent,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    ReplyRequest,
    Sentiment,
    SentimentTagged,
    TextDelta,
    Turn,
    UserKey,
)
from tests.conftest import ScriptedEngine
from tests.scripted import ScriptedRunner
from tests.support import worker_config

HANG = 10.0
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class OrderRunner(ScriptedRunner):
    """Notes, at each tag pass, which replies had already ended (ran on the worker thread)."""

    tags_seen: list[tuple[str, list[bool]]] = field(default_factory=list)

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        for text in texts:
            self.tags_seen.append((text, [r.finished or r.closed for r in self.replies]))
        return super().tag(texts)


@pytest.fixture
def scripted_runner() -> ScriptedRunner:
    return OrderRunner()


def msg(
    text: str, user: str = "42", chat: str = "chat-1", platform: str = "telegram"
) -> IncomingMessage:
    return IncomingMessage(platform, user, chat, text)


async def run(service: ChatService, message: IncomingMessage) -> list[ReplyEvent]:
    async def consume() -> list[ReplyEvent]:
        return [event async for event in service.handle(message)]

    return await asyncio.wait_for(consume(), HANG)


async def events_of(engine: ScriptedEngine, user: UserKey) -> list[MoodEvent]:
    return await engine.store.mood_events(user, EPOCH)


def done(events: list[ReplyEvent]) -> ReplyDone:
    last = events[-1]
    assert isinstance(last, ReplyDone), last
    return last


def failed(events: list[ReplyEvent]) -> ReplyFailed:
    last = events[-1]
    assert isinstance(last, ReplyFailed), last
    return last


ALICE = msg("x").user


# --- the happy path -------------------------------------------------------------------------


async def test_event_order_and_storage(scripted_engine: ScriptedEngine) -> None:
    events = await run(scripted_engine.service, msg("I am so happy today"))

    assert isinstance(events[0], SentimentTagged)
    assert events[0].sentiment == Sentiment("positive", 0.9)
    deltas = events[1:-1]
    assert deltas
    assert all(isinstance(e, TextDelta) for e in deltas)
    reply = done(events)
    assert "".join(e.text for e in deltas if isinstance(e, TextDelta)) == reply.text
    assert reply.text == "A cheerful reply to: I am so happy today"
    assert reply.sentiment == events[0].sentiment
    assert reply.finished is True
    t = reply.timings
    assert t.first_token_ms is not None
    assert 0 <= t.sentiment_ms <= t.first_token_ms <= t.total_ms

    (stored,) = await events_of(scripted_engine, ALICE)
    assert (stored.platform, stored.user_id, stored.chat_id) == ("telegram", "42", "chat-1")
    assert (stored.label, stored.p_positive, stored.excerpt) == ("positive", 0.9, None)
    assert stored.created_at.tzinfo is not None
    assert await scripted_engine.store.recent_turns(ALICE, "chat-1", 10) == [
        Turn("user", "I am so happy today", "positive"),
        Turn("assistant", reply.text),
    ]


async def test_second_message_sees_the_first_exchange(scripted_engine: ScriptedEngine) -> None:
    service, runner = scripted_engine.service, scripted_engine.runner
    first = done(await run(service, msg("I love this")))
    done(await run(service, msg("and now?")))
    done(await run(service, msg("other chat", chat="chat-2")))

    assert runner.reply_calls[0].history == ()
    assert runner.reply_calls[1].history == (
        Turn("user", "I love this"),
        Turn("assistant", first.text),
    )
    assert runner.reply_calls[1].user_text == "and now?"
    assert runner.reply_calls[2].history == ()  # memory is per chat


async def test_history_is_limited_to_history_turns(scripted_engine: ScriptedEngine) -> None:
    service = ChatService(
        scripted_engine.worker,
        scripted_engine.store,
        ChatConfig(history_turns=2, reply_tone_at="system", reply_examples="label"),
    )
    for i in range(3):
        done(await run(service, msg(f"message {i}")))
    last = scripted_engine.runner.reply_calls[-1]
    assert [turn.content for turn in last.history] == [
        "message 1",
        "A comforting reply to: message 1",
    ]


async def test_the_history_window_moves_in_history_steps(scripted_engine: ScriptedEngine) -> None:
    config = ChatConfig(history_turns=4, history_step=4, reply_tone_at="system")
    service = ChatService(scripted_engine.worker, scripted_engine.store, config)
    for i in range(5):
        done(await run(service, msg(f"message {i}")))
    shown = [[t.content for t in call.history if t.role == "user"]
             for call in scripted_engine.runner.reply_calls]  # fmt: skip
    # From message 3 on, the window starts at turn 4 (message 2) until it is full again.
    assert shown == [[], ["message 0"], ["message 0", "message 1"], ["message 2"],
                     ["message 2", "message 3"]]  # fmt: skip


@pytest.mark.parametrize(("turns_kept", "stored"), [(0, 4), (10, 10)])
async def test_the_store_keeps_only_the_turns_it_will_read_or_turns_kept(
    scripted_engine: ScriptedEngine, turns_kept: int, stored: int
) -> None:
    config = ChatConfig(history_turns=4, turns_kept=turns_kept, reply_tone_at="system")
    service = ChatService(scripted_engine.worker, scripted_engine.store, config)
    for i in range(8):
        done(await run(service, msg(f"message {i}")))
    kept = await scripted_engine.store.recent_turns(ALICE, "chat-1", 1000)
    assert len(kept) == stored  # of 16 written
    assert kept[-1].content == "A comforting reply to: message 7"
    assert texts.start_text(config.kept_turns).count(f" {stored} ") == 2  # zh and en say it


@pytest.mark.parametrize(
    ("text", "label", "tone", "language"),
    [
        ("I am so happy, great news!", "positive", "cheerful", "en"),
        ("My cat is sick and I feel awful.", "negative", "comforting", "en"),
        ("今天考试成功了，好开心！", "positive", "cheerful", "zh"),
        ("今天被批评了，心里很难受。", "negative", "comforting", "zh"),
    ],
)
async def test_tone_and_prompt_language_follow_the_message(
    scripted_engine: ScriptedEngine, text: str, label: str, tone: str, language: str
) -> None:
    events = await run(scripted_engine.service, msg(text))
    assert isinstance(events[0], SentimentTagged)
    assert events[0].sentiment.label == label
    assert tone in done(events).text

    (call,) = scripted_engine.runner.reply_calls
    assert call.system.startswith(PERSONA[language])  # type: ignore[index]
    assert TONES[language][label] in call.system  # type: ignore[index]
    question, answer = EXAMPLES[language][label]  # type: ignore[index]
    assert call.examples == (Turn("user", question), Turn("assistant", answer))
    assert call.params == ChatConfig().generation


# --- input handling -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t  \n"])
async def test_blank_message_fails_empty_and_stores_nothing(
    scripted_engine: ScriptedEngine, text: str
) -> None:
    events = await run(scripted_engine.service, msg(text))
    assert events == [ReplyFailed("empty", texts.EMPTY_MESSAGE)]
    assert scripted_engine.runner.tag_calls == []
    assert await events_of(scripted_engine, ALICE) == []
    assert await scripted_engine.store.recent_turns(ALICE, "chat-1", 10) == []


async def test_huge_input_is_truncated(scripted_engine: ScriptedEngine) -> None:
    limit = ChatConfig().max_input_chars
    text = "  " + "好" * (limit + 5000) + "  "
    done(await run(scripted_engine.service, msg(text)))
    (tagged,) = scripted_engine.runner.tag_calls
    assert tagged == ["好" * limit]
    assert scripted_engine.runner.reply_calls[0].user_text == "好" * limit
    turns = await scripted_engine.store.recent_turns(ALICE, "chat-1", 10)
    assert turns[0] == Turn("user", "好" * limit, "positive")


async def test_excerpt_only_when_store_message_text(scripted_engine: ScriptedEngine) -> None:
    text = "I am so happy! " * 30  # longer than the excerpt
    done(await run(scripted_engine.service, msg(text, user="off")))
    keeper = ChatService(
        scripted_engine.worker, scripted_engine.store, ChatConfig(store_message_text=True)
    )
    done(await run(keeper, msg(text, user="on")))

    (off,) = await events_of(scripted_engine, UserKey("telegram", "off"))
    (on,) = await events_of(scripted_engine, UserKey("telegram", "on"))
    assert off.excerpt is None
    assert on.excerpt == text.strip()[: ChatConfig().excerpt_chars]


# --- ordering -------------------------------------------------------------------------------


async def test_one_users_messages_are_processed_in_order(
    scripted_engine: ScriptedEngine,
) -> None:
    runner = scripted_engine.runner
    assert isinstance(runner, OrderRunner)
    runner.delay_s = 0.01
    service = scripted_engine.service
    log: list[tuple[str, str]] = []

    async def consume(name: str, message: IncomingMessage) -> None:
        async for event in service.handle(message):
            log.append((name, type(event).__name__))

    first = asyncio.create_task(consume("first", msg("first message is long " * 3)))
    await asyncio.sleep(0)  # the first takes the user's lock
    second = asyncio.create_task(consume("second", msg("second message")))
    await asyncio.wait_for(asyncio.gather(first, second), HANG)

    assert log.index(("first", "ReplyDone")) < log.index(("second", "SentimentTagged"))
    first_text = "first message is long " * 3
    assert [text for text, _ in runner.tags_seen] == [first_text.strip(), "second message"]
    assert runner.tags_seen[1][1] == [True]  # the first reply had ended before the second tag
    # The second reply saw the first exchange, which was stored before it started.
    assert len(runner.reply_calls[1].history) == 2


async def test_another_user_is_not_blocked(scripted_engine: ScriptedEngine) -> None:
    runner = scripted_engine.runner
    runner.delay_s = 0.01
    service = scripted_engine.service
    log: list[tuple[str, str]] = []

    async def consume(name: str, message: IncomingMessage) -> None:
        async for event in service.handle(message):
            log.append((name, type(event).__name__))

    slow = asyncio.create_task(consume("alice", msg("a " * 40, user="alice")))
    await asyncio.wait_for(_until(lambda: ("alice", "TextDelta") in log), HANG)
    await asyncio.wait_for(consume("bob", msg("hi", user="bob")), HANG)
    assert ("alice", "ReplyDone") not in log  # Bob was answered while Alice's reply streamed
    await asyncio.wait_for(slow, HANG)
    assert ("alice", "ReplyDone") in log


async def test_a_users_lock_is_dropped_once_nobody_waits_for_it(
    scripted_engine: ScriptedEngine,
) -> None:
    service = scripted_engine.service
    carol = msg("x", user="carol").user
    scripted_engine.runner.hold = hold = threading.Event()  # the first reply streams until set

    async def consume(message: IncomingMessage) -> None:
        async for _ in service.handle(message):
            assert service._user_locks  # held while the message is handled

    def holders() -> int:
        entry = service._user_locks.get(carol)
        return 0 if entry is None else entry.holders

    try:
        first = asyncio.create_task(consume(msg("one " * 10, user="carol")))
        await asyncio.wait_for(_until(lambda: bool(scripted_engine.runner.replies)), HANG)
        second = asyncio.create_task(consume(msg("two", user="carol")))
        await asyncio.wait_for(_until(lambda: holders() == 2), HANG)  # one holds, one waits
        assert not second.done()
    finally:
        hold.set()
    await asyncio.wait_for(asyncio.gather(first, second), HANG)
    for name in ("dave", "erin", "frank"):
        await run(service, msg("hello", user=name))
    await service.reset(msg("x", user="dave").user, "chat")
    assert service._user_locks == {}


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


# --- failure paths --------------------------------------------------------------------------


async def test_busy_fails_and_stores_nothing(
    scripted_engine: ScriptedEngine, scripted_runner: ScriptedRunner
) -> None:
    scripted_runner.reply_text = "w " * 500
    scripted_runner.delay_s = 0.005
    worker = ModelWorker(lambda: scripted_runner, worker_config(queue_size=1))
    await worker.start()
    try:
        service = ChatService(worker, scripted_engine.store)
        hog = worker.reply(ReplyRequest("s", (), "hog", ChatConfig().generation))
        events = await run(service, msg("I am happy", user="bob"))
        hog.cancel()
    finally:
        await worker.stop()
    assert events == [ReplyFailed("busy", texts.BUSY)]
    assert await events_of(scripted_engine, UserKey("telegram", "bob")) == []


async def test_tag_failure_is_a_model_error(scripted_engine: ScriptedEngine) -> None:
    scripted_engine.runner.fail_tag = True
    events = await run(scripted_engine.service, msg("hello"))
    assert events == [ReplyFailed("model_error", texts.MODEL_ERROR)]
    assert await events_of(scripted_engine, ALICE) == []


async def test_mid_stream_failure_keeps_the_mood_but_not_the_turns(
    scripted_engine: ScriptedEngine,
) -> None:
    scripted_engine.runner.fail_reply_at = 2
    events = await run(scripted_engine.service, msg("I am happy"))
    assert isinstance(events[0], SentimentTagged)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["A ", "cheerful "]
    assert failed(events) == ReplyFailed("model_error", texts.MODEL_ERROR, events[0].sentiment)
    (stored,) = await events_of(scripted_engine, ALICE)
    assert stored.label == "positive"
    assert await scripted_engine.store.recent_turns(ALICE, "chat-1", 10) == []
    assert scripted_engine.runner.replies[0].closed


async def test_slow_reply_times_out(scripted_engine: ScriptedEngine) -> None:
    runner = scripted_engine.runner
    runner.reply_text = "w " * 500
    runner.delay_s = 0.01
    worker = ModelWorker(lambda: runner, worker_config(request_timeout_s=0.2))
    await worker.start()
    try:
        events = await run(ChatService(worker, scripted_engine.store), msg("happy"))
    finally:
        await worker.stop()
    assert failed(events).reason == "timeout"
    assert failed(events).message == texts.TIMEOUT
    assert len(await events_of(scripted_engine, ALICE)) == 1
    assert await scripted_engine.store.recent_turns(ALICE, "chat-1", 10) == []


async def test_a_blank_reply_is_a_model_error(scripted_engine: ScriptedEngine) -> None:
    scripted_engine.runner.reply_text = "   "
    events = await run(scripted_engine.service, msg("hello"))
    assert failed(events).reason == "model_error"
    assert await scripted_engine.store.recent_turns(ALICE, "chat-1", 10) == []


class FailingStore:
    """Delegates to the real store; the chosen methods raise StorageError."""

    def __init__(self, inner: object, failing: set[str]) -> None:
        self.inner = inner
        self.failing = failing

    def __getattr__(self, name: str) -> object:
        if name in self.failing:

            async def fail(*args: object, **kwargs: object) -> None:
                raise StorageError("database is locked")

            return fail
        return getattr(self.inner, name)


async def test_storage_error_on_record_exchange(scripted_engine: ScriptedEngine) -> None:
    store = FailingStore(scripted_engine.store, {"record_exchange"})
    service = ChatService(scripted_engine.worker, store)  # type: ignore[arg-type]
    events = await run(service, msg("I am happy"))
    assert isinstance(events[0], SentimentTagged)
    assert failed(events) == ReplyFailed(
        "storage_error", texts.STORAGE_ERROR, events[0].sentiment, answers=False
    )
    assert not any(isinstance(e, ReplyDone) for e in events)
    assert await events_of(scripted_engine, ALICE) == []


class NoTurns(FailingStore):
    """The real store, except that a user's turn (another process's lock) cannot be taken."""

    @contextlib.asynccontextmanager
    async def user_turn(self, user: UserKey) -> AsyncIterator[None]:
        raise StorageError("lost the connection to the database")
        yield


async def test_storage_error_taking_the_users_turn(scripted_engine: ScriptedEngine) -> None:
    service = ChatService(scripted_engine.worker, NoTurns(scripted_engine.store, set()))  # type: ignore[arg-type]
    events = await run(service, msg("I am happy"))
    assert events == [ReplyFailed("storage_error", texts.STORAGE_ERROR, answers=False)]
    assert scripted_engine.runner.tag_calls == []  # nothing done outside the user's turn
    with pytest.raises(StorageError):
        await service.forget(ALICE)  # /forget waits for the turn too (Commands says so)


async def test_the_users_turn_is_held_while_a_message_is_handled(
    scripted_engine: ScriptedEngine,
) -> None:
    held: list[str] = []

    class Watching(FailingStore):
        @contextlib.asynccontextmanager
        async def user_turn(self, user: UserKey) -> AsyncIterator[None]:
            held.append("take")
            yield
            held.append("give back")

        async def record_exchange(self, *args: object, **kwargs: object) -> None:
            held.append("store")
            await self.inner.record_exchange(*args, **kwargs)  # type: ignore[attr-defined]

    service = ChatService(scripted_engine.worker, Watching(scripted_engine.store, set()))  # type: ignore[arg-type]
    done(await run(service, msg("I am happy")))
    await service.reset(ALICE, "chat-1")
    assert held == ["take", "store", "give back", "take", "give back"]


async def test_storage_error_on_reading_history(scripted_engine: ScriptedEngine) -> None:
    store = FailingStore(scripted_engine.store, {"recent_turns"})
    service = ChatService(scripted_engine.worker, store)  # type: ignore[arg-type]
    events = await run(service, msg("I am happy"))
    assert [type(e) for e in events] == [SentimentTagged, ReplyFailed]
    assert failed(events).reason == "storage_error"
    assert scripted_engine.runner.reply_calls == []


def long_reply_stream(engine: ScriptedEngine) -> AsyncGenerator[ReplyEvent, None]:
    """A message whose reply would take 2.5 s (500 words, 5 ms each): long enough to close
    its stream part way."""
    engine.runner.reply_text = "w " * 500
    engine.runner.delay_s = 0.005
    stream = engine.service.handle(msg("hello"))
    assert isinstance(stream, AsyncIterator)
    return stream


async def test_closing_the_stream_early_cancels_the_reply_and_frees_the_user(
    scripted_engine: ScriptedEngine,
) -> None:
    runner = scripted_engine.runner
    stream = long_reply_stream(scripted_engine)
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    deadline = time.monotonic() + HANG
    while not runner.replies[0].closed:
        assert time.monotonic() < deadline, "the reply was not cancelled"
        await asyncio.sleep(0.005)
    # The user's lock was released: the next message goes through.
    runner.reply_text, runner.delay_s = "ok then", 0.0
    assert done(await run(scripted_engine.service, msg("again"))).text == "ok then"


async def test_the_reply_is_queued_before_the_label_is_shown(
    scripted_engine: ScriptedEngine,
) -> None:
    """An adapter sends the label before it asks for the next event: the model must already
    be reading the reply prompt meanwhile, not wait for that round trip."""
    runner = scripted_engine.runner
    stream = scripted_engine.service.handle(msg("I am so happy today"))
    assert isinstance(stream, AsyncIterator)
    first = await asyncio.wait_for(anext(stream), HANG)
    assert isinstance(first, SentimentTagged)
    deadline = time.monotonic() + 2.0
    while not runner.reply_calls:  # the worker thread starts it; the stream is not resumed
        assert time.monotonic() < deadline, "the reply waited for the label to be shown"
        await asyncio.sleep(0.005)
    assert runner.reply_calls[0].user_text == "I am so happy today"
    rest = [event async for event in stream]
    assert done([first, *rest]).text == "A cheerful reply to: I am so happy today"


async def test_closing_the_stream_at_the_label_cancels_the_queued_reply(
    scripted_engine: ScriptedEngine,
) -> None:
    runner = scripted_engine.runner
    stream = long_reply_stream(scripted_engine)
    assert isinstance(await asyncio.wait_for(anext(stream), HANG), SentimentTagged)
    await stream.aclose()
    # Closed through every stage at once: the user's turn is free and the reply cancelled
    # now, not when the abandoned inner generators are collected.
    assert scripted_engine.service._user_locks == {}
    runner.reply_text, runner.delay_s = "ok then", 0.0
    assert done(await run(scripted_engine.service, msg("again"))).text == "ok then"
    # The first reply was dropped before it started, or closed (500 tokens take 2.5 s).
    assert [call.user_text for call in runner.reply_calls][-1] == "again"
    assert all(reply.closed for reply in runner.replies[:-1])


# --- commands -------------------------------------------------------------------------------


async def test_reset_clears_only_that_chat(scripted_engine: ScriptedEngine) -> None:
    service, store = scripted_engine.service, scripted_engine.store
    done(await run(service, msg("one", chat="c1")))
    done(await run(service, msg("two", chat="c2")))
    done(await run(service, msg("three", chat="c1", user="bob")))

    assert await service.reset(ALICE, "c1") == texts.RESET_DONE

    assert await store.recent_turns(ALICE, "c1", 10) == []
    assert len(await store.recent_turns(ALICE, "c2", 10)) == 2
    assert len(await store.recent_turns(UserKey("telegram", "bob"), "c1", 10)) == 2
    assert len(await events_of(scripted_engine, ALICE)) == 2  # mood history kept


async def test_forget_deletes_events_and_turns(scripted_engine: ScriptedEngine) -> None:
    service, store = scripted_engine.service, scripted_engine.store
    bob = UserKey("telegram", "bob")
    done(await run(service, msg("one", chat="c1")))
    done(await run(service, msg("two", chat="c2")))
    done(await run(service, msg("mine", user="bob")))

    answer = await service.forget(ALICE)
    assert answer.startswith("已删除")

    assert await events_of(scripted_engine, ALICE) == []
    assert await store.recent_turns(ALICE, "c1", 10) == []
    assert await store.recent_turns(ALICE, "c2", 10) == []
    assert len(await events_of(scripted_engine, bob)) == 1
    assert len(await store.recent_turns(bob, "chat-1", 10)) == 2
    # And the user can start over.
    done(await run(service, msg("hello again", chat="c1")))
    assert len(await events_of(scripted_engine, ALICE)) == 1


@pytest.mark.parametrize("command", ["forget", "reset"])
async def test_forget_or_reset_during_an_in_flight_message_leaves_nothing_behind(
    scripted_engine: ScriptedEngine, command: str
) -> None:
    # The user confirms /forget (or sends /reset) while a slow CPU reply is still streaming:
    # once the command has answered, that message must not be stored afterwards.
    runner = scripted_engine.runner
    runner.reply_text = "w " * 30
    runner.delay_s = 0.005
    service, store = scripted_engine.service, scripted_engine.store
    started = asyncio.Event()

    async def consume() -> list[ReplyEvent]:
        events = []
        async for event in service.handle(msg("I am happy")):
            events.append(event)
            if isinstance(event, TextDelta):
                started.set()
        return events

    in_flight = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), HANG)
    if command == "forget":
        await asyncio.wait_for(service.forget(ALICE), HANG)
    else:
        await asyncio.wait_for(service.reset(ALICE, "chat-1"), HANG)
    done(await asyncio.wait_for(in_flight, HANG))  # the message itself was answered

    assert await store.recent_turns(ALICE, "chat-1", 10) == []
    stored = await events_of(scripted_engine, ALICE)
    assert len(stored) == (0 if command == "forget" else 1)  # reset keeps the mood


async def test_mood_reports_only_the_callers_own_data(scripted_engine: ScriptedEngine) -> None:
    service = scripted_engine.service
    done(await run(service, msg("I am so happy")))
    done(await run(service, msg("great day", chat="other-chat")))
    done(await run(service, msg("bad day")))
    done(await run(service, msg("I am so happy", user="bob")))  # another user
    done(await run(service, msg("bad", platform="discord")))  # same id, other platform

    report = await service.mood(ALICE, 7)
    assert report.user == ALICE
    assert (report.positive, report.negative, report.total) == (2, 1, 3)
    assert len(report.series) == 7
    assert sum(point.total for point in report.series) == 3
    assert report.series[-1].total == 3  # all today

    discord = await service.mood(UserKey("discord", "42"), 30)
    assert (discord.positive, discord.negative) == (0, 1)
    nobody = await service.mood(UserKey("telegram", "nobody"))
    assert nobody.total == 0

    with pytest.raises(ValueError, match="from 1 to 365"):
        await service.mood(ALICE, 0)


class ShanghaiMorning(datetime):
    """The service's clock, pinned: 08:00 on 10 March 2026 in Shanghai (00:00 UTC)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> ShanghaiMorning:
        return cls(2026, 3, 10, 0, 0, tzinfo=UTC)


async def test_mood_respects_the_day_window(scripted_engine: ScriptedEngine) -> None:
    store = scripted_engine.store
    config = ChatConfig().model_copy(update={"timezone": "Asia/Shanghai"})
    service = ChatService(scripted_engine.worker, store, config, clock=ShanghaiMorning)
    now = ShanghaiMorning.now(UTC)

    def event(days_ago: float, p: float) -> MoodEvent:
        label: Label = "positive" if p >= 0.5 else "negative"
        return MoodEvent("telegram", "42", "c", label, p, now - timedelta(days=days_ago))

    await store.record_exchange(event(0, 0.9), [])
    await store.record_exchange(event(3, 0.1), [])
    await store.record_exchange(event(20, 0.9), [])
    # 00:30 on 4 March in Shanghai, the first of the week's 7 local days (16:30 UTC the
    # day before: outside a week of UTC days).
    await store.record_exchange(event(6 + 7.5 / 24, 0.8), [])
    report = await service.mood(ALICE, 7)
    assert (report.positive, report.negative) == (2, 1)
    month = await service.mood(ALICE, 30)
    assert (month.positive, month.negative) == (3, 1)


async def test_a_neutral_message_gets_the_neutral_tone_and_is_stored_neutral(
    scripted_engine: ScriptedEngine,
) -> None:
    events = await run(scripted_engine.service, msg("你好"))
    assert isinstance(events[0], SentimentTagged)
    assert events[0].sentiment.neutral
    (call,) = scripted_engine.runner.reply_calls
    assert TONES["zh"]["neutral"] in call.system
    assert done(events).text == "A friendly reply to: 你好"
    (stored,) = await events_of(scripted_engine, ALICE)
    assert stored.neutral
    assert stored.label == events[0].sentiment.label  # the two-way label is kept


async def test_an_earlier_neutral_message_keeps_the_neutral_tone_in_the_note_layout(
    scripted_engine: ScriptedEngine,
) -> None:
    config = ChatConfig(reply_tone_at="note", reply_examples="mixed")
    service = ChatService(scripted_engine.worker, scripted_engine.store, config)
    assert done(await run(service, msg("你好"))).text == "A friendly reply to: 你好"
    sad = "今天被批评了，心里很难受。"
    assert done(await run(service, msg(sad))).text == f"A comforting reply to: {sad}"
    first, second = scripted_engine.runner.reply_calls
    assert (first.system, first.note) == (PERSONA["zh"], TONES["zh"]["neutral"])
    assert second.note == TONES["zh"]["negative"]
    assert second.history == (
        Turn("system", TONES["zh"]["neutral"]),
        Turn("user", "你好"),
        Turn("assistant", "A friendly reply to: 你好"),
    )
    turns = await scripted_engine.store.recent_turns(ALICE, "chat-1", 10)
    assert [t.tone for t in turns] == ["neutral", None, "negative", None]


# --- warm-up: each language's reply opening is read before the first users arrive ----------


async def test_warm_up_reads_the_opening_every_message_in_that_language_starts_with(
    scripted_engine: ScriptedEngine,
) -> None:
    runner = scripted_engine.runner
    service = ChatService(scripted_engine.worker, scripted_engine.store)  # the default layout
    await service.warm_up()
    warm = runner.reply_calls[:]
    assert [call.params.max_new_tokens for call in warm] == [1, 1]

    # Real messages in either language, whatever their label, open the same way (the runner
    # keeps that opening's KV), so the warm-up saved every first reply that work.
    messages = {"zh": ["今天被老板骂了，好难过。", "太好了，我考过了！"],
                "en": ["I failed my exam today.", "We won the final!"]}  # fmt: skip
    for language, opening in zip(("zh", "en"), warm, strict=True):
        for text in messages[language]:
            events = [event async for event in service.handle(msg(text))]
            assert isinstance(events[-1], ReplyDone)
            real = runner.reply_calls[-1]
            assert real.system == opening.system
            assert real.examples == opening.examples


async def test_warm_up_that_fails_is_only_logged(
    scripted_engine: ScriptedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    scripted_engine.runner.fail_reply_at = 0
    service = ChatService(scripted_engine.worker, scripted_engine.store)
    await service.warm_up()
    assert "could not warm up the reply prompts" in caplog.text

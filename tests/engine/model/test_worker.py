"""ModelWorker on the ScriptedRunner: scheduling, admission, timeouts, cancellation, shutdown.

Ordering is asserted from the order in which events arrive, never from wall time; HANG only
turns a hang into a failure, and no assertion puts an upper bound on how long something took.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from engine.errors import ModelBusy, ModelLoadError, ModelStopped, ModelTimeout
from engine.model.runner import ModelRunner
from engine.model.worker import ModelWorker, ReplyTokens, _TagJob, label_groups
from engine.types import GenerationParams, ReplyRequest, Sentiment
from tests.scripted import GatedRunner, ScriptedReply, ScriptedRunner
from tests.support import worker_config

HANG = 10.0  # seconds: far beyond any expected duration, only there to turn a hang into a failure


def req(text: str = "hello", system: str = "persona") -> ReplyRequest:
    return ReplyRequest(system=system, history=(), user_text=text, params=GenerationParams())


MakeWorker = Callable[..., Awaitable[ModelWorker]]


@pytest.fixture
async def make_worker() -> AsyncIterator[MakeWorker]:
    """Start workers on given runners; all are stopped at the end of the test."""
    workers: list[ModelWorker] = []

    async def make(runner: ScriptedRunner, **limits: float) -> ModelWorker:
        worker = ModelWorker(lambda: runner, worker_config(**limits))
        await asyncio.wait_for(worker.start(), HANG)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        await asyncio.wait_for(worker.stop(), HANG)


async def collect(tokens: ReplyTokens) -> list[str]:
    return [delta async for delta in tokens]


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.005)


def long_text(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words))


# --- round trips ----------------------------------------------------------------------------


async def test_tag_and_reply_round_trip(make_worker: MakeWorker) -> None:
    runner = ScriptedRunner()
    worker = await make_worker(runner)

    assert await worker.tag("I am so happy today") == Sentiment("positive", 0.9)
    assert await worker.tag("the train was late again") == Sentiment("negative", 0.1)

    tokens = worker.reply(req("hi there"))
    deltas = await asyncio.wait_for(collect(tokens), HANG)
    assert "".join(deltas) == "A cheerful reply to: hi there"
    assert len(deltas) == 6  # one word per step
    assert tokens.finished is True
    assert runner.tag_calls == [["I am so happy today"], ["the train was late again"]]
    assert [call.user_text for call in runner.reply_calls] == ["hi there"]
    assert worker.runner is runner


async def test_tag_many_is_one_batched_label_pass_in_order(make_worker: MakeWorker) -> None:
    runner = ScriptedRunner()
    worker = await make_worker(runner, queue_size=1)
    texts = ["I am so happy", "the train was late", "great news", "rain again"]
    # One admission for all four: a queue of one takes them.
    results = await worker.tag_many(texts)
    assert [r.label for r in results] == ["positive", "negative", "positive", "negative"]
    assert runner.tag_calls == [texts]  # one runner pass, the texts in their order
    assert await worker.tag_many([]) == []


async def test_tag_many_waiting_with_single_tags_shares_their_pass(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(tag_delay_s=0.2)
    worker = await make_worker(runner)
    first = asyncio.create_task(worker.tag("held up"))
    await wait_until(lambda: len(runner.tag_calls) == 1, "the first pass started")
    both = await asyncio.gather(worker.tag_many(["good", "bad"]), worker.tag("yay"))
    await first
    assert both == [[Sentiment("positive", 0.9), Sentiment("negative", 0.1)],
                    Sentiment("positive", 0.9)]  # fmt: skip
    assert sorted(map(len, runner.tag_calls)) == [1, 3]  # the waiting ones went together


class CutShortReply:
    """A stream that ends without the model ending its turn (like MAX_NEW_TOKENS)."""

    def __init__(self) -> None:
        self.chunks = ["cut ", "short"]
        self.finished = False
        self.closed = False

    def step(self) -> str | None:
        return self.chunks.pop(0) if self.chunks else None

    def close(self) -> None:
        self.closed = True


class CutShortRunner(ScriptedRunner):
    def start_reply(self, request: ReplyRequest) -> CutShortReply:  # type: ignore[override]
        self.reply_calls.append(request)
        return CutShortReply()


async def test_reply_cut_by_the_runner_reports_unfinished(make_worker: MakeWorker) -> None:
    worker = await make_worker(CutShortRunner())
    tokens = worker.reply(req())
    assert await asyncio.wait_for(collect(tokens), HANG) == ["cut ", "short"]
    assert tokens.finished is False


class LoggedReply:
    """Wraps a ScriptedReply and logs, on the worker thread, each step it takes."""

    def __init__(self, inner: ScriptedReply, name: str, log: list[tuple[str, str]]) -> None:
        self.inner = inner
        self.name = name
        self.log = log

    @property
    def finished(self) -> bool:
        return self.inner.finished

    def step(self) -> str | None:
        delta = self.inner.step()
        self.log.append((self.name, "step" if delta is not None else "end"))
        return delta

    def close(self) -> None:
        self.inner.close()


@dataclass
class LoggingRunner(ScriptedRunner):
    """Records, in the order the worker thread does it, every tag pass and reply step."""

    log: list[tuple[str, str]] = field(default_factory=list)

    def tag(self, texts: Sequence[str]) -> list[Sentiment]:
        self.log.append(("tag", ",".join(texts)))
        return super().tag(texts)

    def start_reply(self, request: ReplyRequest) -> LoggedReply:  # type: ignore[override]
        return LoggedReply(super().start_reply(request), request.user_text, self.log)


async def test_a_label_is_served_while_a_long_reply_decodes(make_worker: MakeWorker) -> None:
    runner = LoggingRunner(reply_text=long_text(60), delay_s=0.01)
    worker = await make_worker(runner)
    events: list[str] = []

    async def consume() -> None:
        async for _ in worker.reply(req("long")):
            events.append("delta")
        events.append("reply-end")

    consumer = asyncio.create_task(consume())
    await wait_until(lambda: "delta" in events, "the reply has started")
    sentiment = await asyncio.wait_for(worker.tag("great news"), HANG)
    events.append("tag")
    await asyncio.wait_for(consumer, HANG)

    assert sentiment.label == "positive"
    # The caller had its label while the reply was still streaming...
    assert events.index("tag") < events.index("reply-end")
    assert "delta" in events[events.index("tag") + 1 :]
    # ...because the worker ran the tag pass between two decode steps of the reply.
    log = runner.log
    tag_at = log.index(("tag", "great news"))
    assert ("long", "step") in log[:tag_at]
    assert ("long", "step") in log[tag_at + 1 :]
    assert log[-1] == ("long", "end")


async def test_several_replies_interleave(make_worker: MakeWorker) -> None:
    runner = LoggingRunner(reply_text=long_text(20))
    worker = await make_worker(runner, max_active_replies=4)
    results = await asyncio.wait_for(
        asyncio.gather(collect(worker.reply(req("a"))), collect(worker.reply(req("b")))), HANG
    )
    assert ["".join(deltas) for deltas in results] == [long_text(20)] * 2

    log = runner.log
    first_end = min(log.index(("a", "end")), log.index(("b", "end")))
    assert ("a", "step") in log[:first_end]
    assert ("b", "step") in log[:first_end]
    # Round robin: once both are active, their steps alternate.
    steps = [name for name, what in log[:first_end] if what == "step"]
    later = "b" if steps[0] == "a" else "a"
    both = steps[steps.index(later) :]
    assert len(both) >= 10
    assert all(x != y for x, y in itertools.pairwise(both))


async def test_replies_beyond_max_active_wait_their_turn(make_worker: MakeWorker) -> None:
    runner = LoggingRunner(reply_text=long_text(10))
    worker = await make_worker(runner, max_active_replies=1)
    await asyncio.wait_for(
        asyncio.gather(collect(worker.reply(req("a"))), collect(worker.reply(req("b")))), HANG
    )
    log = runner.log
    assert log.index(("a", "end")) < log.index(("b", "step"))


# --- admission ------------------------------------------------------------------------------


async def test_busy_when_queue_is_full_and_recovers(make_worker: MakeWorker) -> None:
    runner = ScriptedRunner(reply_text=long_text(200), delay_s=0.01)
    worker = await make_worker(runner, queue_size=2)
    first = worker.reply(req("one"))
    second = worker.reply(req("two"))

    with pytest.raises(ModelBusy):
        worker.reply(req("three"))
    with pytest.raises(ModelBusy):
        await worker.tag("happy")
    assert len(runner.tag_calls) == 0

    first.cancel()
    assert await asyncio.wait_for(worker.tag("happy"), HANG) == Sentiment("positive", 0.9)
    third = worker.reply(req("three"))  # one slot was freed by the cancel, one by the tag
    with pytest.raises(ModelBusy):
        worker.reply(req("four"))
    second.cancel()
    third.cancel()
    assert await asyncio.wait_for(worker.tag("happy"), HANG) == Sentiment("positive", 0.9)


async def test_finished_and_failed_jobs_free_their_slot(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(reply_text="short reply")
    worker = await make_worker(runner, queue_size=1)
    for _ in range(3):  # each would be ModelBusy if a slot leaked
        await asyncio.wait_for(collect(worker.reply(req())), HANG)
        await worker.tag("x")
    runner.fail_tag = True
    for _ in range(3):
        with pytest.raises(RuntimeError, match="scripted tagging failure"):
            await worker.tag("x")
    runner.fail_tag = False
    runner.fail_reply_at = 1
    for _ in range(3):
        with pytest.raises(RuntimeError, match="scripted decode failure"):
            await collect(worker.reply(req()))
    runner.fail_reply_at = None
    assert await worker.tag("good") == Sentiment("positive", 0.9)


# --- timeouts -------------------------------------------------------------------------------


async def test_slow_tag_times_out(make_worker: MakeWorker) -> None:
    # The label pass is held until the test lets it go: only the deadline can end the wait
    # (without one, wait_for's plain TimeoutError after HANG fails the test instead).
    runner = GatedRunner()
    runner.gate.clear()
    worker = await make_worker(runner, request_timeout_s=0.05, queue_size=1)
    try:
        with pytest.raises(ModelTimeout):
            await asyncio.wait_for(worker.tag("happy"), HANG)
        # The slot was released though the pass is still held: the next request is admitted.
        assert runner.tag_calls == []
        tokens = worker.reply(req())
        tokens.cancel()
    finally:
        runner.gate.set()


async def test_slow_reply_times_out(make_worker: MakeWorker) -> None:
    runner = ScriptedRunner(reply_text=long_text(100), delay_s=0.02)
    worker = await make_worker(runner, request_timeout_s=0.2, queue_size=1)
    tokens = worker.reply(req())
    received: list[str] = []
    with pytest.raises(ModelTimeout):
        async for delta in tokens:
            received.append(delta)
    assert 0 < len(received) < 100
    # The timed-out reply is cancelled: the runner's stream gets closed and the slot is free.
    await wait_until(lambda: runner.replies[0].closed, "the stream is closed")
    runner.delay_s = 0.0
    assert await asyncio.wait_for(worker.tag("good"), HANG) == Sentiment("positive", 0.9)


async def test_waiting_for_a_slot_does_not_eat_the_reply_budget(
    make_worker: MakeWorker,
) -> None:
    # One active slot: the second reply waits ~0.4 s for the first, then decodes ~0.4 s.
    # Together that is past the 0.6 s timeout, but its own decoding is well within it.
    runner = ScriptedRunner(reply_text=long_text(8), delay_s=0.05)
    worker = await make_worker(runner, request_timeout_s=0.6, max_active_replies=1)
    first, second = worker.reply(req("one")), worker.reply(req("two"))
    started = time.monotonic()
    texts = await asyncio.gather(collect(first), collect(second))
    assert time.monotonic() - started > 0.6
    assert ["".join(text) for text in texts] == [long_text(8)] * 2


async def test_a_reply_that_never_gets_a_slot_times_out_without_starting(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(reply_text=long_text(40), delay_s=0.05)  # ~2 s
    worker = await make_worker(runner, request_timeout_s=0.3, max_active_replies=1)
    hog = worker.reply(req("hog"))
    first_word = await hog.__anext__()
    assert first_word == "w0 "
    starved = worker.reply(req("starved"))
    with pytest.raises(ModelTimeout):
        await collect(starved)
    hog.cancel()
    await wait_until(lambda: runner.replies[0].closed, "the hog is cancelled")
    assert len(runner.replies) == 1  # the starved reply was dropped before it started


async def test_a_reply_finished_in_time_is_delivered_to_a_late_reader(
    make_worker: MakeWorker,
) -> None:
    # The deadline bounds the model's work. A reply that was complete well before it must
    # not be thrown away because the caller (e.g. a renderer waiting out a platform 429)
    # read the queued tokens after the deadline.
    runner = ScriptedRunner(reply_text="done in no time")
    worker = await make_worker(runner, request_timeout_s=0.3)
    tokens = worker.reply(req())
    await wait_until(lambda: bool(runner.replies) and runner.replies[0].finished, "decoded")
    await asyncio.sleep(0.5)  # the reader comes back after the deadline
    assert "".join(await collect(tokens)) == "done in no time"
    assert tokens.finished is True


# --- cancellation ---------------------------------------------------------------------------


async def test_cancel_closes_the_stream_and_frees_admission(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(reply_text=long_text(500), delay_s=0.005)
    worker = await make_worker(runner, queue_size=1)
    tokens = worker.reply(req())
    async for _ in tokens:
        break
    tokens.cancel()

    await wait_until(lambda: runner.replies[0].closed, "the stream is closed")
    reply = runner.replies[0]
    assert reply._index < len(reply.chunks)  # it did not decode to the end
    assert not reply.finished
    with pytest.raises(StopAsyncIteration):
        await tokens.__anext__()
    assert await asyncio.wait_for(worker.tag("good"), HANG) == Sentiment("positive", 0.9)


async def test_a_reply_cancelled_while_waiting_never_starts(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(reply_text=long_text(30), delay_s=0.002)
    worker = await make_worker(runner, max_active_replies=1)
    first = worker.reply(req("first"))
    second = worker.reply(req("second"))
    second.cancel()
    await asyncio.wait_for(collect(first), HANG)
    third = await asyncio.wait_for(collect(worker.reply(req("third"))), HANG)
    assert third
    assert [call.user_text for call in runner.reply_calls] == ["first", "third"]


async def test_a_cancelled_consumer_task_cancels_the_reply(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(reply_text=long_text(500), delay_s=0.005)
    worker = await make_worker(runner, queue_size=1)
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in worker.reply(req()):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), HANG)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: runner.replies[0].closed, "the stream is closed")
    assert await asyncio.wait_for(worker.tag("good"), HANG) == Sentiment("positive", 0.9)


# --- failures -------------------------------------------------------------------------------


async def test_tag_errors_reach_the_caller(make_worker: MakeWorker) -> None:
    runner = ScriptedRunner(fail_tag=True)
    worker = await make_worker(runner)
    with pytest.raises(RuntimeError, match="scripted tagging failure"):
        await worker.tag("hello")
    runner.fail_tag = False
    assert (await worker.tag("hello")).label == "negative"  # the worker survived


async def test_mid_reply_errors_reach_the_caller(make_worker: MakeWorker) -> None:
    runner = ScriptedRunner(reply_text="a b c d e f", fail_reply_at=3)
    worker = await make_worker(runner)
    received: list[str] = []
    with pytest.raises(RuntimeError, match="scripted decode failure"):
        async for delta in worker.reply(req()):
            received.append(delta)
    assert received == ["a ", "b ", "c "]
    assert runner.replies[0].closed
    runner.fail_reply_at = None
    assert "".join(await collect(worker.reply(req()))) == "a b c d e f"


async def test_start_reply_errors_reach_the_caller(make_worker: MakeWorker) -> None:
    class Broken(ScriptedRunner):
        def start_reply(self, request: ReplyRequest) -> object:  # type: ignore[override]
            raise ValueError("prompt too long")

    worker = await make_worker(Broken())
    with pytest.raises(ValueError, match="prompt too long"):
        await collect(worker.reply(req()))
    assert (await worker.tag("happy")).label == "positive"


@pytest.mark.parametrize("error", [ModelLoadError("no weights here"), OSError("no weights here")])
async def test_load_failure_makes_start_raise_model_load_error(error: Exception) -> None:
    def load() -> ModelRunner:
        raise error

    worker = ModelWorker(load)
    with pytest.raises(ModelLoadError, match="no weights here"):
        await asyncio.wait_for(worker.start(), HANG)
    with pytest.raises(ModelStopped):
        await worker.tag("hello")
    with pytest.raises(ModelStopped):
        worker.reply(req())
    with pytest.raises(ModelStopped):
        _ = worker.runner
    await asyncio.wait_for(worker.stop(), HANG)


async def test_not_started_and_stopped_workers_refuse_work() -> None:
    worker = ModelWorker(ScriptedRunner)
    with pytest.raises(ModelStopped):
        await worker.tag("hello")
    await asyncio.wait_for(worker.start(), HANG)
    assert (await worker.tag("hello")).label == "negative"
    await asyncio.wait_for(worker.stop(), HANG)
    with pytest.raises(ModelStopped):
        await worker.tag("hello")
    with pytest.raises(ModelStopped):
        worker.reply(req())


async def test_stop_fails_outstanding_jobs_instead_of_hanging() -> None:
    runner = ScriptedRunner(reply_text=long_text(1000), delay_s=0.005, tag_delay_s=0.0)
    worker = ModelWorker(lambda: runner, worker_config(max_active_replies=1))
    await asyncio.wait_for(worker.start(), HANG)
    active = worker.reply(req("active"))
    waiting = worker.reply(req("waiting"))
    first = await asyncio.wait_for(active.__anext__(), HANG)
    assert first == "w0 "

    # A tag that is mid-pass when stop() comes, and one still queued behind it.
    runner.tag_delay_s = 0.3
    in_pass = asyncio.create_task(worker.tag("happy"))
    await wait_until(lambda: len(runner.tag_calls) == 1, "the first tag is running")
    queued = asyncio.create_task(worker.tag("happy too"))
    await asyncio.sleep(0)  # let it be admitted

    await asyncio.wait_for(worker.stop(), HANG)

    with pytest.raises(ModelStopped):
        await asyncio.wait_for(collect(active), HANG)
    with pytest.raises(ModelStopped):
        await asyncio.wait_for(collect(waiting), HANG)
    assert (await asyncio.wait_for(in_pass, HANG)).label == "positive"  # it had finished
    with pytest.raises(ModelStopped):
        await asyncio.wait_for(queued, HANG)
    assert runner.replies[0].closed
    assert [call.user_text for call in runner.reply_calls] == ["active"]


# --- batched decode steps -------------------------------------------------------------------


@dataclass
class BatchLoggingRunner(LoggingRunner):
    """LoggingRunner that also logs each step_many call, with the streams it was given."""

    def step_many(self, streams: Sequence[object]) -> list[str | None]:
        self.log.append(("batch", ",".join(s.name for s in streams)))  # type: ignore[attr-defined]
        return super().step_many(streams)  # type: ignore[arg-type]


async def test_active_replies_are_stepped_together_in_one_batch(make_worker: MakeWorker) -> None:
    runner = BatchLoggingRunner(reply_text=long_text(30))
    worker = await make_worker(runner, max_active_replies=3)
    texts = ["a", "b", "c", "d"]
    results = await asyncio.wait_for(
        asyncio.gather(*(collect(worker.reply(req(text))) for text in texts)), HANG
    )
    assert ["".join(deltas) for deltas in results] == [long_text(30)] * 4

    assert max(runner.batch_sizes) == 3  # never more than max_active_replies
    batches = [what for name, what in runner.log if name == "batch"]
    assert batches.count("a,b,c") >= 25  # the three decoded side by side, one batch per token
    # Every step went through step_many: no reply was stepped on its own.
    steps = sum(1 for name, what in runner.log if what == "step")
    assert steps == sum(runner.batch_sizes) - len(texts)  # each reply's last call is its end


async def test_a_label_is_served_between_batched_steps(make_worker: MakeWorker) -> None:
    runner = BatchLoggingRunner(reply_text=long_text(60), delay_s=0.005)
    worker = await make_worker(runner, max_active_replies=2)
    started = asyncio.Event()

    async def consume(text: str) -> list[str]:
        deltas = []
        async for delta in worker.reply(req(text)):
            deltas.append(delta)
            started.set()
        return deltas

    replies = [asyncio.create_task(consume(text)) for text in ("a", "b")]
    await asyncio.wait_for(started.wait(), HANG)
    await wait_until(lambda: ("batch", "a,b") in runner.log, "both replies decode together")
    sentiment = await asyncio.wait_for(worker.tag("great news"), HANG)
    results = await asyncio.wait_for(asyncio.gather(*replies), HANG)

    assert sentiment.label == "positive"
    assert ["".join(r) for r in results] == [long_text(60)] * 2
    log = runner.log
    tag_at = log.index(("tag", "great news"))
    assert ("batch", "a,b") in log[:tag_at]
    assert ("batch", "a,b") in log[tag_at + 1 :]  # the batch went on after the label


async def test_a_failed_batched_step_reaches_every_caller_in_the_batch(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(reply_text="a b c d e f", fail_reply_at=3, tag_delay_s=0.1)
    worker = await make_worker(runner, max_active_replies=2)
    # Both replies arrive while the worker is busy with a label, so they start together.
    label = asyncio.create_task(worker.tag("x"))
    await wait_until(lambda: bool(runner.tag_calls), "the label pass is running")
    first, second = worker.reply(req("one")), worker.reply(req("two"))
    outcomes = await asyncio.wait_for(
        asyncio.gather(collect(first), collect(second), return_exceptions=True), HANG
    )
    await label
    assert runner.batch_sizes == [2, 2, 2, 2]  # three good steps, then the failing one
    for outcome in outcomes:
        assert isinstance(outcome, RuntimeError)
        assert "scripted decode failure" in str(outcome)
    assert all(reply.closed for reply in runner.replies)
    runner.fail_reply_at = None  # the worker goes on serving
    assert "".join(await collect(worker.reply(req()))) == "a b c d e f"


# --- engine.model.timings: where the worker's time went ------------------------------------------


async def test_timings_are_recorded_only_while_someone_listens(
    make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.model import timings
    from engine.model.timings import JobTimes, WorkerSpan

    def records() -> list[object]:
        return [
            r.args[0]
            for r in caplog.records
            if r.name == "engine.model.timings" and isinstance(r.args, tuple)
        ]

    worker = await make_worker(ScriptedRunner(reply_text="one two three"), queue_size=8)
    await worker.tag("quiet")
    assert records() == []
    with caplog.at_level("DEBUG", logger="engine.model.timings"):
        # A span is written just after its job's answer is handed over: the quiet tag's may
        # come after this point, and is told apart by its start.
        listening_from = time.monotonic()
        await worker.tag("I am happy")
        assert await collect(worker.reply(req("I am happy"))) == ["one ", "two ", "three"]

        def heard() -> list[object]:
            return [r for r in records() if not isinstance(r, WorkerSpan)
                    or r.start >= listening_from]  # fmt: skip

        # The reply's record is written just after its end is handed over.
        await wait_until(lambda: len(heard()) == 8, "the reply's record is written")
    jobs = [r for r in heard() if isinstance(r, JobTimes)]
    spans = [r for r in heard() if isinstance(r, WorkerSpan)]
    tag, reply = jobs
    assert (tag.kind, reply.kind) == ("tag", "reply")
    assert tag.text_id == reply.text_id == timings.text_id(" I am happy ")
    assert tag.outcome == reply.outcome == "ok"
    assert tag.batch == 1
    assert tag.started is not None
    assert tag.done is not None
    assert tag.enqueued <= tag.started <= tag.done
    assert reply.started is not None
    assert reply.first_text is not None
    assert reply.done is not None
    assert reply.enqueued <= reply.started <= reply.first_text <= reply.done
    assert reply.steps == 4  # three words, then the end
    assert [s.kind for s in spans] == ["tag", "start", "step", "step", "step", "step"]
    assert [s.reading for s in spans if s.kind == "step"] == [1, 0, 0, 0]


async def test_a_reply_given_up_while_waiting_still_leaves_its_record(
    make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.model.timings import JobTimes

    def replies() -> list[JobTimes]:
        return [r.args[0] for r in caplog.records if r.name == "engine.model.timings"
                and isinstance(r.args, tuple) and isinstance(r.args[0], JobTimes)]  # fmt: skip

    runner = ScriptedRunner(reply_text="a b c d e f", delay_s=0.02)
    worker = await make_worker(runner, queue_size=8, max_active_replies=1)
    with caplog.at_level("DEBUG", logger="engine.model.timings"):
        running = asyncio.create_task(collect(worker.reply(req("first"))))
        waiting = worker.reply(req("second"))
        await wait_until(lambda: len(runner.reply_calls) == 1, "the first reply runs")
        waiting.cancel()  # its caller gives up before it gets the one slot
        await running
        await wait_until(lambda: len(replies()) == 2, "both replies have a record")
    outcomes = {r.outcome: r for r in replies()}
    assert set(outcomes) == {"ok", "cancelled"}
    assert outcomes["cancelled"].started is None  # it never got a slot
    assert outcomes["cancelled"].done is not None
    assert len(runner.reply_calls) == 1


async def test_a_tag_many_job_leaves_one_record_named_by_its_first_text(
    make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.model import timings
    from engine.model.timings import JobTimes, WorkerSpan

    def records() -> list[object]:
        return [r.args[0] for r in caplog.records if r.name == "engine.model.timings"
                and isinstance(r.args, tuple)]  # fmt: skip

    runner = ScriptedRunner(tag_delay_s=0.2)
    worker = await make_worker(runner)
    with caplog.at_level("DEBUG", logger="engine.model.timings"):
        first = asyncio.create_task(worker.tag("held up"))
        await wait_until(lambda: len(runner.tag_calls) == 1, "the first pass started")
        await asyncio.gather(worker.tag_many(["good", "bad"]), worker.tag("yay"))
        await first
        # A pass's records are written just after its labels are handed over.
        await wait_until(lambda: len(records()) == 5, "both passes have their records")
    jobs = [r for r in records() if isinstance(r, JobTimes)]
    assert [j.text_id for j in jobs] == [timings.text_id(t) for t in ("held up", "good", "yay")]
    # The second pass labelled three texts for two jobs: each job's batch counts texts.
    assert [j.batch for j in jobs] == [1, 3, 3]
    assert all(j.outcome == "ok" for j in jobs)
    assert [s.size for s in records() if isinstance(s, WorkerSpan)] == [1, 3]


# --- label passes of at most LABEL_BATCH texts ------------------------------------------------


def test_label_groups_keep_arrival_order_and_each_jobs_texts_together() -> None:
    loop = asyncio.new_event_loop()
    try:
        jobs = [_TagJob([f"t{i}"] * n, loop, loop.create_future()) for i, n in
                enumerate([1, 1, 3, 1, 9, 1])]  # fmt: skip
        groups = label_groups(jobs, 4)
    finally:
        loop.close()
    assert [[len(job.texts) for job in group] for group in groups] == [[1, 1], [3, 1], [9], [1]]
    assert [job for group in groups for job in group] == jobs
    assert label_groups([], 4) == []


async def test_a_crowd_of_labels_is_read_in_passes_and_the_first_arrive_first(
    make_worker: MakeWorker,
) -> None:
    runner = ScriptedRunner(tag_delay_s=0.2)
    worker = await make_worker(runner, label_batch=4)
    first = asyncio.create_task(worker.tag("held up"))
    await wait_until(lambda: len(runner.tag_calls) == 1, "the first pass started")
    crowd = [asyncio.create_task(worker.tag(f"good {i}")) for i in range(9)]
    # The first four have their labels while the later passes are still to come (each
    # answer reaches the loop on its own, so the four are awaited together).
    await asyncio.wait_for(asyncio.gather(*crowd[:4]), HANG)
    assert not crowd[-1].done()
    await asyncio.wait_for(asyncio.gather(first, *crowd), HANG)
    assert [len(texts) for texts in runner.tag_calls] == [1, 4, 4, 1]
    assert [text for texts in runner.tag_calls[1:] for text in texts] == [
        f"good {i}" for i in range(9)
    ]

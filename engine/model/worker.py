"""One dedicated thread owns the model; coroutines talk to it through this async facade.

The thread is the only scheduler: label jobs go first (one batched pass for all waiting
texts), then every active reply advances by one step in one batched call (`step_many`: on a
CPU, eight rows cost little more than one). So a label never waits behind a long reply, and
several replies make progress together. Deadlines are kept here too. Admission is
bounded: past `queue_size` outstanding jobs a caller gets ModelBusy at once instead of
waiting without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.errors import ModelBusy, ModelLoadError, ModelStopped, ModelTimeout
from engine.model import timings
from engine.model.config import WorkerConfig
from engine.model.delta_stream import DeltaStream, StreamEnd, StreamFailure
from engine.model.runner import ModelRunner, ReplyStream
from engine.model.timings import JobTimes, WorkerSpan
from engine.types import ReplyRequest, Sentiment

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _TagJob:
    # One caller's texts: one for tag(), several for tag_many(). Every waiting job's texts
    # go to the runner in one list, so a tag_many is one batched label pass.
    texts: list[str]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Sentiment]]
    cancelled: bool = False
    times: JobTimes | None = None  # only while engine.model.timings listens


@dataclass
class _ReplyJob:
    request: ReplyRequest
    loop: asyncio.AbstractEventLoop
    sink: asyncio.Queue[object]
    cancelled: bool = False
    stream: ReplyStream | None = None
    started_at: float | None = None  # time.monotonic() when it got an active slot
    times: JobTimes | None = None  # only while engine.model.timings listens


_WAKE = object()


def label_groups(jobs: list[_TagJob], batch: int) -> list[list[_TagJob]]:
    """The waiting label jobs in arrival order, cut into passes of at most `batch` texts (a
    job's own texts stay together, however many). Smaller passes deliver the first labels
    sooner, and on llama.cpp they cost less per text: 8 texts took 143 ms each in one pass,
    32 took 253 ms each (every text attends over the whole shared KV cache; measured on
    the packaged 0.5B model, 2 cores)."""
    groups: list[list[_TagJob]] = []
    size = batch  # start a new group at the first job
    for job in jobs:
        if size + len(job.texts) > batch:
            groups.append([])
            size = 0
        groups[-1].append(job)
        size += len(job.texts)
    return groups


def _deliver(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    # A closed event loop raises RuntimeError: nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _set_result(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class ReplyTokens(DeltaStream):
    """Async iterator over the text deltas of one reply; `finished` is known at the end.

    The deadline bounds the model's work, not the reader. It counts from the moment the reply
    got an active slot, so waiting behind other users' replies does not eat its budget;
    waiting alone may take timeout_s too. asyncio.timeout rather than wait_for: on 3.11
    wait_for can swallow a cancellation that races with a result, which left a cancelled
    reply running.
    """

    def __init__(self, job: _ReplyJob, timeout_s: float, release: Callable[[], None]) -> None:
        super().__init__(release)
        self._job = job
        self._admitted_at = time.monotonic()
        self._timeout_s = timeout_s

    async def _next_item(self) -> object:
        while True:
            if not self._job.sink.empty():
                return self._job.sink.get_nowait()
            started = self._job.started_at  # set by the worker thread
            deadline = (started if started is not None else self._admitted_at) + self._timeout_s
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    return await self._job.sink.get()
            except TimeoutError:
                if started is None and self._job.started_at is not None:
                    continue  # it got its slot meanwhile: its own deadline applies now
                raise

    def cancel(self) -> None:
        """Stop generating (the caller gave up); the worker frees the KV cache."""
        self._job.cancelled = True
        self._finish()


class ModelWorker:
    def __init__(
        self,
        load_runner: Callable[[], ModelRunner],
        config: WorkerConfig | None = None,
    ) -> None:
        config = config or WorkerConfig()
        self._load_runner = load_runner
        self._queue_size = config.queue_size
        self._max_active = config.max_active_replies
        self._timeout_s = config.request_timeout_s
        self._label_batch = config.label_batch
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: ModelRunner | None = None

    @property
    def runner(self) -> ModelRunner:
        if self._runner is None:
            raise ModelStopped("the model is not loaded")
        return self._runner

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def outstanding(self) -> int:
        """Requests admitted and not yet over, waiting or running: what QUEUE_SIZE bounds."""
        return self._outstanding

    async def start(self) -> None:
        """Load the model on the worker thread; raises ModelLoadError if it cannot."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name="model-worker", daemon=True
        )
        self._thread.start()
        await ready

    async def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(_WAKE)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def tag(self, text: str) -> Sentiment:
        (sentiment,) = await self.tag_many([text])
        return sentiment

    async def tag_many(self, texts: Sequence[str]) -> list[Sentiment]:
        """Label several texts in one batched pass (with whatever other labels are waiting);
        they count as one request against QUEUE_SIZE and share one deadline."""
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        job = _TagJob(list(texts), loop, loop.create_future())
        if timings.enabled():  # one record per job, named by its first text
            job.times = JobTimes("tag", timings.text_id(texts[0]), time.monotonic())
        self._admit(job)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await asyncio.shield(job.future)
        except TimeoutError:
            raise ModelTimeout("labelling took too long") from None
        finally:
            job.cancelled = True  # no-op once done; skips the work if we gave up early
            self._release()

    def reply(self, request: ReplyRequest) -> ReplyTokens:
        loop = asyncio.get_running_loop()
        job = _ReplyJob(request, loop, asyncio.Queue())
        if timings.enabled():
            job.times = JobTimes("reply", timings.text_id(request.user_text), time.monotonic())
        self._admit(job)
        return ReplyTokens(job, self._timeout_s, self._release)

    # --- admission ------------------------------------------------------------------------

    def _admit(self, job: _TagJob | _ReplyJob) -> None:
        if self._thread is None or self._stopping.is_set() or self._runner is None:
            raise ModelStopped("the model worker is not running")
        with self._lock:
            if self._outstanding >= self._queue_size:
                raise ModelBusy(f"{self._outstanding} requests are already waiting")
            self._outstanding += 1
        self._inbox.put(job)

    def _release(self) -> None:
        with self._lock:
            self._outstanding -= 1

    # --- the worker thread ----------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            self._runner = self._load_runner()
        except BaseException as error:  # noqa: BLE001 - every load failure must reach start()
            log.error("model failed to load: %s", error)
            failure = error if isinstance(error, ModelLoadError) else ModelLoadError(str(error))
            _deliver(loop, _set_exception, ready, failure)
            return
        _deliver(loop, _set_result, ready, None)
        tags: list[_TagJob] = []
        waiting: deque[_ReplyJob] = deque()
        active: list[_ReplyJob] = []
        while not self._stopping.is_set():
            idle = not tags and not active and not waiting
            self._collect(tags, waiting, block=idle)
            if tags:
                self._run_tags(tags)
                tags = []
            while waiting and len(active) < self._max_active:
                job = waiting.popleft()
                if job.cancelled:
                    _reply_over(job, "cancelled")  # its caller gave up while it waited
                elif self._start_reply(job):
                    active.append(job)
            active = self._step_replies(active)
        self._fail_all(tags, waiting, active)

    def _collect(self, tags: list[_TagJob], waiting: deque[_ReplyJob], block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
            while True:
                if isinstance(item, _TagJob):
                    tags.append(item)
                elif isinstance(item, _ReplyJob):
                    waiting.append(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _run_tags(self, jobs: list[_TagJob]) -> None:
        live = [job for job in jobs if not job.cancelled]
        _tag_times([job for job in jobs if job.cancelled], time.monotonic(), "cancelled")
        for group in label_groups(live, self._label_batch):
            self._run_tag_group(group)

    def _run_tag_group(self, live: list[_TagJob]) -> None:
        start = time.monotonic()
        try:
            results = self.runner.tag([text for job in live for text in job.texts])
            if len(results) != sum(len(job.texts) for job in live):
                raise RuntimeError(f"the runner returned {len(results)} labels")
        except Exception as error:
            log.exception("labelling failed")
            for job in live:
                _deliver(job.loop, _set_exception, job.future, error)
            _tag_times(live, start, "failed")
            return
        first = 0
        for job in live:
            end = first + len(job.texts)
            _deliver(job.loop, _set_result, job.future, results[first:end])
            first = end
        _tag_times(live, start, "ok")

    def _start_reply(self, job: _ReplyJob) -> bool:
        job.started_at = time.monotonic()
        if job.times is not None:
            job.times.started = job.started_at
        try:
            job.stream = self.runner.start_reply(job.request)
        except Exception as error:
            log.exception("reply failed to start")
            _deliver(job.loop, job.sink.put_nowait, StreamFailure(error))
            _reply_over(job, "failed")
            return False
        finally:
            if job.times is not None:
                timings.emit(WorkerSpan("start", job.started_at, time.monotonic(), 1, 1))
        if job.times is not None:  # what the runner's stream tells (llama.cpp's does)
            prompt = getattr(job.stream, "prompt_ids", None)
            job.times.prompt_tokens = len(prompt) if isinstance(prompt, list) else None
            cached = getattr(job.stream, "position", None)
            job.times.cached_tokens = cached if isinstance(cached, int) else None
        return True

    def _step_replies(self, active: list[_ReplyJob]) -> list[_ReplyJob]:
        """Advance every active reply by one step; return those still going."""
        live: list[_ReplyJob] = []
        for job in active:
            assert job.stream is not None
            if job.cancelled:
                job.stream.close()
                _reply_over(job, "cancelled")
            else:
                live.append(job)
        if not live:
            return []
        start = time.monotonic()
        try:
            deltas = self.runner.step_many([job.stream for job in live if job.stream])
        except Exception as error:
            log.exception("a batched decode step failed")
            for job in live:
                self._fail_reply(job, error)
            return []
        finally:
            if timings.enabled():
                _step_times(live, start)
        return [job for job, delta in zip(live, deltas, strict=True) if self._emit(job, delta)]

    def _emit(self, job: _ReplyJob, delta: str | None) -> bool:
        """Hand a decoded delta to the caller; False once the job is over."""
        assert job.stream is not None
        if delta is None:
            _deliver(job.loop, job.sink.put_nowait, StreamEnd(job.stream.finished))
            _reply_over(job, "ok")
            return False
        if delta:
            _deliver(job.loop, job.sink.put_nowait, delta)
            if job.times is not None and job.times.first_text is None:
                job.times.first_text = time.monotonic()
        return True

    def _fail_reply(self, job: _ReplyJob, error: BaseException) -> None:
        assert job.stream is not None
        job.stream.close()
        _deliver(job.loop, job.sink.put_nowait, StreamFailure(error))
        _reply_over(job, "failed")

    def _fail_all(
        self, tags: list[_TagJob], waiting: deque[_ReplyJob], active: list[_ReplyJob]
    ) -> None:
        stopped = ModelStopped("the bot is shutting down")
        self._collect(tags, waiting, block=False)
        for tag_job in tags:
            _deliver(tag_job.loop, _set_exception, tag_job.future, stopped)
        for reply_job in [*waiting, *active]:
            if reply_job.stream is not None:
                reply_job.stream.close()
            _deliver(reply_job.loop, reply_job.sink.put_nowait, StreamFailure(stopped))


# --- engine.model.timings records (only while something listens) -------------------------------


def _tag_times(jobs: list[_TagJob], start: float, outcome: str) -> None:
    end = time.monotonic()
    texts = sum(len(job.texts) for job in jobs)  # a tag_many job brings several
    for job in jobs:
        if job.times is not None:
            job.times.started, job.times.done = start, end
            job.times.outcome, job.times.batch = outcome, texts
            timings.emit(job.times)
    if jobs and outcome != "cancelled" and timings.enabled():
        timings.emit(WorkerSpan("tag", start, end, texts))


def _step_times(jobs: list[_ReplyJob], start: float) -> None:
    reading = sum(job.times is not None and job.times.first_text is None for job in jobs)
    timings.emit(WorkerSpan("step", start, time.monotonic(), len(jobs), reading))
    for job in jobs:
        if job.times is not None:
            job.times.steps += 1
            job.times.batch = max(job.times.batch, len(jobs))


def _reply_over(job: _ReplyJob, outcome: str) -> None:
    if job.times is not None and job.times.done is None:
        job.times.done, job.times.outcome = time.monotonic(), outcome
        timings.emit(job.times)


__all__ = ["ModelWorker", "ReplyTokens"]

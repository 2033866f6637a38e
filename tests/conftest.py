"""Shared fixtures: an engine on the scripted runner and a real (temporary) SQLite store, and
a throwaway PostgreSQL cluster for the suites that run on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.chat.config import ChatConfig
from engine.chat.service import ChatService
from engine.model.worker import ModelWorker
from storage.store import SqlMoodStore
from tests.postgres import PostgresCluster, find_bindir, postgres_cluster
from tests.scripted import ScriptedRunner
from tests.support import model_threads, worker_config

if TYPE_CHECKING:
    from engine.model.backends.llama_cpp import LlamaCppRunner
    from engine.model.backends.transformers_runner import TransformersRunner
    from tests.llama_server import LlamaServer


@dataclass
class ScriptedEngine:
    service: ChatService
    runner: ScriptedRunner
    worker: ModelWorker
    store: SqlMoodStore
    db_path: Path


def pytest_configure(config: pytest.Config) -> None:
    # The bot processes the tests start read TORCH_THREADS (both backends): their share of
    # the cores under xdist, as the models loaded here (tests/support.model_threads).
    if (threads := model_threads()) and "TORCH_THREADS" not in os.environ:
        os.environ["TORCH_THREADS"] = str(threads)


def pytest_sessionstart(session: pytest.Session) -> None:
    # CI sets this so the llama.cpp backend's tests (and those of BACKEND=openai on its
    # server, the [server] extra) fail loudly instead of skipping.
    if os.environ.get("REQUIRE_LLAMA_CPP") == "1":
        import importlib.util

        from tests.llama_server import SERVER_MODULES

        missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            raise pytest.UsageError(f"REQUIRE_LLAMA_CPP=1 but {', '.join(missing)} missing")
    # CI sets this too, so the PostgreSQL half of the storage tests fails instead of skipping.
    if os.environ.get("REQUIRE_POSTGRES") == "1" and find_bindir() is None:
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but PostgreSQL (initdb, pg_ctl) is missing")


# The session's shared models (loaded once, below): `make test` runs the suite on two
# pytest-xdist workers, and the tests that use them go to one worker (xdist_group), so that
# they are loaded once, not once a worker. Tests that start their own model process go to
# either; each model runs on its worker's share of the cores (tests/support.model_threads).
SHARED_MODELS = {"real_runner", "light_llama", "shared_llama_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if set(getattr(item, "fixturenames", ())) & SHARED_MODELS:
            item.add_marker(pytest.mark.xdist_group("shared-models"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, shared by the session; each test takes
    a fresh database from it (`postgres.new_database()`)."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    with postgres_cluster() as cluster:
        yield cluster


SYSTEM_LAYOUT = ChatConfig(reply_tone_at="system", reply_examples="label")


@contextlib.asynccontextmanager
async def restarted_service(engine: ScriptedEngine) -> AsyncIterator[ChatService]:
    """What a restart gives the next adapter: a new store on the same database file and a new
    service (on the same model worker), closed after."""
    store = await SqlMoodStore.open(engine.db_path)
    try:
        yield ChatService(engine.worker, store, SYSTEM_LAYOUT)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For tests on the tiny model: it is far too small to gain from threads, and on a busy
    CPU the thread pool's hand-offs made each forward pass ~100x slower than one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def real_runner() -> TransformersRunner:
    """The light tier (the packaged 0.5B) on transformers, loaded once per test session
    (converted on first use): these tests are about the runtime, not the model."""
    from engine.model.backends.transformers_runner import TransformersRunner

    cache = os.environ.get("MODEL_CACHE_DIR") or None
    return TransformersRunner.load(
        "packaged-0.5b", dtype="auto", cache_dir=cache, threads=model_threads()
    )


@pytest.fixture(scope="session")
def light_llama() -> Iterator[LlamaCppRunner]:
    """The light tier on llama.cpp in this process, loaded once per test session: its tests
    read what it computes (labels, prompts, replies), which a fresh load would not change."""
    from engine.model.backends import llama_cpp

    if llama_cpp.llama_cpp is None:
        pytest.skip("the llama extra is not installed: make install-llama")
    cache = os.environ.get("MODEL_CACHE_DIR") or None
    runner = llama_cpp.LlamaCppRunner.load("packaged", cache_dir=cache, threads=model_threads())
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def shared_llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One `llama_cpp.server` on the light tier for the session (starting one loads the model
    in a new process): the tests that only talk to it share it. A test that kills its server
    starts its own (tests/llama_server.py)."""
    from tests.llama_server import llama_server

    with llama_server(tmp_path_factory.mktemp("llama-server") / "server.log") as running:
        yield running


@pytest.fixture
def scripted_runner() -> ScriptedRunner:
    """Override in a test module to script replies (long text, delays, failures)."""
    return ScriptedRunner()


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the schema's head, made once: a test's store starts from a
    copy (6 ms to open) instead of running every revision (~0.1 s a test). Creating a fresh
    database is tested by tests/storage and by every bot process the e2e tests start."""
    path = tmp_path_factory.mktemp("migrated") / "bot.db"

    async def make() -> None:
        store = await SqlMoodStore.open(path)
        await store.close()

    asyncio.run(make())
    return path


@pytest.fixture
async def scripted_engine(
    tmp_path: Path, scripted_runner: ScriptedRunner, migrated_database: Path
) -> AsyncIterator[ScriptedEngine]:
    db_path = tmp_path / "bot.db"
    shutil.copyfile(migrated_database, db_path)
    store = await SqlMoodStore.open(db_path)
    limits = worker_config(queue_size=16, request_timeout_s=30)
    worker = ModelWorker(lambda: scripted_runner, limits)
    await worker.start()
    # The first layout (tone in the system prompt, history as stored): what these tests read.
    # The note layout, the default, has tests of its own that set it.
    service = ChatService(worker, store, SYSTEM_LAYOUT)
    try:
        yield ScriptedEngine(service, scripted_runner, worker, store, db_path)
    finally:
        await worker.stop()
        await store.close()

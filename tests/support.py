"""Waiting helpers shared by the adapter and end-to-end suites."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.chat import texts
from engine.model.config import WorkerConfig
from engine.ports import MoodStore
from engine.types import MoodEvent, Sentiment, UserKey
from storage.store import SqlMoodStore
from tests.fakes.base import GUARD_S

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as this lasts: bound and never
    listened on, so no other process can take it meanwhile (as it could a port found free and
    released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def model_threads() -> int:
    """Threads for a model a test runs, in this process or in one it starts: the cores shared
    among `make test`'s pytest-xdist workers. llama.cpp's and torch's threads spin while
    they wait for each other, so two workers' models each on every core slowed the model
    tests 3-10x; one thread each leaves a core to each worker. 0 (all cores) without xdist."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, len(os.sched_getaffinity(0)) // workers) if workers > 1 else 0


def worker_config(**limits: Any) -> WorkerConfig:
    """The worker's limits for a test, which may be below what the settings allow (a 0.2 s
    deadline, say): built without validation."""
    return WorkerConfig.model_construct(**limits)


async def stored_mood_events(store: MoodStore, user: UserKey, at_least: int = 0) -> list[MoodEvent]:
    """The user's stored mood events, once there are `at_least` of them (GUARD_S at most): the
    store commits after the reply's last text, which the final edit may already show."""
    deadline = time.monotonic() + GUARD_S
    while True:
        events = await store.mood_events(user, EPOCH)
        if len(events) >= at_least or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.01)


async def link_accounts(store: SqlMoodStore, issuer: UserKey, redeemer: UserKey) -> None:
    """Link two accounts in the store the way a /link code entered and confirmed does: the
    adapter tests of /unlink start from linked accounts without going through /link."""
    now = datetime.now(UTC)
    await store.save_link_code(issuer, "test-link-code", now, now + timedelta(minutes=10))
    offer = await store.offer_link_code(redeemer, "test-link-code", now, now, 5)
    assert offer.outcome == "offered", offer
    outcome = await store.redeem_link_code(redeemer, now, "test-link-code")  # the confirmation
    assert outcome == "linked", outcome


def console_session(cwd: Path, lines: Sequence[str], **settings: str) -> str:
    """`python -m bot chat --user e2e` fed `lines`, in `cwd` (so no .env from the repo leaks
    in) with its database there, no platform token and `settings`; checked to end cleanly.
    Returns what it printed."""
    env = {**os.environ, "DATABASE_PATH": str(cwd / "bot.db"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **settings}  # fmt: skip
    for key in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--user", "e2e"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, cwd=cwd,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


@contextlib.asynccontextmanager
async def bot_process(
    cwd: Path, env: Mapping[str, str], stdout: Path, stderr: Path, module: str = "bot",
    pass_fds: Sequence[int] = (),
) -> AsyncIterator[asyncio.subprocess.Process]:  # fmt: skip
    """`python -m bot` (or `module`, e.g. tests.scripted_bot) in `cwd` (so no .env from the
        repo leaks in), killed if still running at the end. Output goes to files, not pipes: debug
        logging would fill a pipe nobody reads until the end. `pass_fds`: descriptors it inherits
    (a listening socket, say)."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module,
            cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            pass_fds=tuple(pass_fds),
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def final_reply(
    shown: Callable[[], list[str]],
    db: Path | str,  # a SQLite file, or a database URL
    process: asyncio.subprocess.Process,
    user: UserKey,
    chat_id: str,
    timeout_s: float,
) -> str:
    """Wait until the chat shows exactly the stored reply under the stored label.

    The engine stores the exchange before it reports the reply done, and the renderer's last
    edit follows; so once the chat matches the database, the reply is final.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"python -m bot exited early with {process.returncode}")
        messages = shown()
        if messages and (not isinstance(db, Path) or db.exists()):
            store = await SqlMoodStore.open(db)
            try:
                events = await store.mood_events(user, EPOCH)
                turns = await store.recent_turns(user, chat_id, 2)
            finally:
                await store.close()
            if events and turns:
                sentiment = Sentiment(events[0].label, events[0].p_positive, events[0].neutral)
                expected = f"{texts.label_line(sentiment)}\n\n{turns[-1].content}"
                if messages == [expected]:
                    return expected
        await asyncio.sleep(0.5)
    raise AssertionError(f"no final reply in time; the chat shows {shown()!r}")


def inbox_states(db: Path) -> dict[tuple[str, str, str], str]:
    """(platform, chat id, message id) -> 'received' | 'done', read from a SQLite database."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT platform, chat_id, message_id, state FROM inbox").fetchall()
    return {(platform, chat, message): state for platform, chat, message, state in rows}

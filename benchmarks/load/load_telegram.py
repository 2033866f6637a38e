"""benchmarks.load.load through the real platform path: `python -m bot` (default settings, its own
SQLite file) long-polls the tests' loopback Telegram fake, and the bench plays the users.

Each of N private chats sends its first message at the same moment (the first wave); each
follow-up is sent once the previous answer is complete, so it has the conversation so far as
history. What a user sees is measured at the fake, on arrival of the bot's calls: the label
(the first sendMessage), the first reply text (the first message text holding more than the
label line), the final text. An answer is complete when the inbox row is done and the chat
shows the stored reply (or a failure text); a message with no complete answer within
--timeout-s is lost. The bot runs as benchmarks.timed_bot, which writes the worker's stage
records (engine.model.timings) for benchmarks.load.load_stages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.load.outcome import Outcome
from engine.chat import texts

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123:LOAD"
FIRST_USER = 8000
FAILURES = {"busy": texts.BUSY, "timeout": texts.TIMEOUT, "model_error": texts.MODEL_ERROR,
            "storage_error": texts.STORAGE_ERROR}  # fmt: skip
POLL_S = 0.1


def bot_env(args: argparse.Namespace, api_url: str, folder: Path) -> dict[str, str]:
    """The environment as it is (the bot's defaults unless the caller set something), with
    Telegram pointed at the fake and a fresh database; no Discord, no .env (cwd is empty)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISCORD_BOT_TOKEN", "DATABASE_URL", "TELEGRAM_ALLOWED_USER_IDS",
                          "TELEGRAM_WEBHOOK_URL")}  # fmt: skip
    env.update(
        PYTHONPATH=str(ROOT),
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=f"{api_url}/bot",
        TELEGRAM_API_FILE_URL=f"{api_url}/file/bot",
        DATABASE_PATH=str(folder / "bot.db"),
        BENCH_TIMINGS_PATH=str(folder / "timings.jsonl"),
    )
    if args.max_new_tokens is not None:
        env["MAX_NEW_TOKENS"] = str(args.max_new_tokens)
    if getattr(args, "scripted", False):
        env.update(BENCH_SCRIPTED="1", SCRIPTED_DELAY_S=env.get("SCRIPTED_DELAY_S", "0.01"))
    return env


@contextlib.asynccontextmanager
async def bot_process(
    args: argparse.Namespace, api: Any, folder: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    log = folder / "bot.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.timed_bot", cwd=folder,
            env=bot_env(args, f"http://127.0.0.1:{api.port}", folder),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # the first start may convert the model
        while not api.calls_to("getUpdates"):  # polling: the model is loaded
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("python -m bot did not start:\n" + log.read_text()[-3000:])
            await asyncio.sleep(0.2)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 120)
            except TimeoutError:
                process.kill()
                await process.wait()


class Database:
    """The bot's SQLite file, read-only: which messages are done and what was stored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        if self._conn is None:
            if not self.path.exists():
                return []
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # locked for a moment, or no tables yet
            return []

    def done(self) -> set[tuple[str, str]]:
        rows = self._query("SELECT chat_id, message_id FROM inbox WHERE platform = 'telegram' "
                           "AND state = 'done'")  # fmt: skip
        return {(str(chat), str(message)) for chat, message in rows}

    def turns(self, chat_id: int) -> list[tuple[str, str]]:
        """The chat's stored turns, oldest first: (role, content)."""
        rows = self._query("SELECT role, content FROM turns WHERE chat_id = ? ORDER BY id",
                           str(chat_id))  # fmt: skip
        return [(str(role), str(content)) for role, content in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def stored_reply(turns: Sequence[tuple[str, str]], text: str) -> str | None:
    """The assistant turn stored right after the last user turn holding `text`."""
    for i in range(len(turns) - 1, -1, -1):
        if turns[i] == ("user", text.strip()):
            following = turns[i + 1] if i + 1 < len(turns) else None
            return following[1] if following and following[0] == "assistant" else None
    return None


def shown_now(api: Any, chat_id: int, after_message_id: int) -> str:
    """What the bot shows in answer to a message: its messages after it, joined."""
    mine = [m for m in api.bot_messages(chat_id) if m["message_id"] > after_message_id]
    return "\n".join(m.get("text") or "" for m in mine)


def answer_state(shown: str, stored: str | None) -> str | None:
    """'done' when the chat shows the stored reply, a failure reason when it shows that
    failure's text; None while it is not final yet."""
    if stored is not None and shown.endswith(stored):
        return "done"
    for reason, message in FAILURES.items():
        if shown.endswith(message):
            return reason
    return None


class Monitor:
    """One poller for every waiting message (so the bench adds little load of its own)."""

    def __init__(self, api: Any, db: Database) -> None:
        self.api, self.db = api, db
        self.waiting: dict[tuple[int, int], tuple[str, asyncio.Future[str]]] = {}

    def expect(self, chat_id: int, message_id: int, text: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[(chat_id, message_id)] = (text, future)
        return future

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if not self.waiting:
                continue
            done = self.db.done()
            for (chat_id, message_id), (text, future) in list(self.waiting.items()):
                if (str(chat_id), str(message_id)) not in done:
                    continue
                stored = stored_reply(self.db.turns(chat_id), text)
                state = answer_state(shown_now(self.api, chat_id, message_id), stored)
                if state is not None:
                    del self.waiting[(chat_id, message_id)]
                    future.set_result(state)


def tone_shown(label_line: str) -> str | None:
    """Which tone a label line (engine.chat.texts.label_line) shows."""
    for tone, emoji in texts.LABEL_EMOJI.items():
        if label_line.startswith(f"{emoji} 情感判断: {texts.LABEL_WORD[tone]}"):
            return tone
    return None


def read_calls(api: Any, outcome: Outcome, chat_id: int, until: float) -> None:
    """Fill in when the label, the first reply text and the final text arrived at the fake."""
    calls = [c for c in api.calls
             if c.method in ("sendMessage", "editMessageText") and c.status == 200
             and c.params.get("chat_id") == chat_id
             and outcome.sent_at <= c.at <= until]  # fmt: skip
    failures = tuple(FAILURES.values())
    for call in calls:
        text = str(call.params.get("text") or "")
        is_label = call.method == "sendMessage" and "\n\n" not in text
        if outcome.label_s is None and is_label and not text.endswith(failures):
            outcome.label_s = call.at - outcome.sent_at
            outcome.tone = tone_shown(text)
        if outcome.first_text_s is None and "\n\n" in text and not text.endswith(failures):
            outcome.first_text_s = call.at - outcome.sent_at
    if calls:
        outcome.end_s = calls[-1].at - outcome.sent_at


async def user_session(api: Any, monitor: Monitor, chat_id: int, items: list[Outcome],
                       start: asyncio.Event, timeout_s: float) -> None:  # fmt: skip
    from tests.fakes.telegram_api import private_chat, user_json

    await start.wait()
    for outcome in items:
        outcome.sent_at = time.monotonic()
        sent = api.push_message(private_chat(chat_id), user_json(chat_id), text=outcome.text)
        answered = monitor.expect(chat_id, sent["message_id"], outcome.text)
        try:
            state = await asyncio.wait_for(answered, timeout_s)
        except TimeoutError:
            monitor.waiting.pop((chat_id, sent["message_id"]), None)
            outcome.failures.append("lost")
            return  # a user with no answer does not send the next message
        read_calls(api, outcome, chat_id, time.monotonic())
        if state == "done":
            outcome.done = 1
            outcome.tagged = int(outcome.label_s is not None)
        else:
            outcome.failures.append(state)
            outcome.tagged = int(outcome.label_s is not None)


def order_problems(db: Database, work: Mapping[int, list[Outcome]]) -> list[str]:
    """Per chat, the stored user turns are the answered messages in the order they were sent,
    each followed by its reply."""
    problems = []
    for chat_id, items in work.items():
        turns = db.turns(chat_id)
        users = [content for role, content in turns if role == "user"]
        answered = [o.text.strip() for o in items if o.done]
        if users != answered:
            problems.append(f"chat {chat_id}: stored user turns {len(users)} out of order or "
                            f"missing ({len(answered)} answered)")  # fmt: skip
        roles = [role for role, _ in turns]
        if roles != ["user", "assistant"] * (len(roles) // 2):
            problems.append(f"chat {chat_id}: turns do not alternate")
    return problems


def transcript(api: Any, work: Mapping[int, list[Outcome]]) -> dict[str, list[str]]:
    """Every chat as it looks at the end: the user's messages and the bot's final texts."""
    out = {}
    for chat_id in work:
        lines = []
        for (chat, _), message in sorted(api._messages.items(), key=lambda kv: kv[0][1]):
            if chat == chat_id:
                who = "bot" if message.get("from", {}).get("id") == api.bot["id"] else "user"
                lines.append(f"{who}: {message.get('text', '')}")
        out[str(chat_id)] = lines
    return out


async def run_telegram(args: argparse.Namespace, work: dict[str, list[str]]) -> dict[str, Any]:
    """The plan through `python -m bot` on the fake: outcomes, stage records, transcripts."""
    from tests.fakes.telegram_api import FakeTelegramAPI

    chats = {FIRST_USER + n: [Outcome(user, i, text) for i, text in enumerate(texts)]
             for n, (user, texts) in enumerate(work.items())}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-load-tg-") as temp:
        folder = Path(temp)
        async with FakeTelegramAPI(TOKEN) as api, bot_process(args, api, folder) as process:
            db = Database(folder / "bot.db")
            monitor = Monitor(api, db)
            poller = asyncio.create_task(monitor.run())
            start = asyncio.Event()
            load_before = os.getloadavg()[0]
            began = time.monotonic()
            sessions = [user_session(api, monitor, chat_id, items, start, args.timeout_s)
                        for chat_id, items in chats.items()]  # fmt: skip
            start.set()
            try:
                await asyncio.gather(*sessions)
            finally:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            wall = time.monotonic() - began
            problems = order_problems(db, chats)
            shown = transcript(api, chats)
            db.close()
            platform_calls = len(api.calls)
        code = process.returncode
        records = [json.loads(line) for line in
                   (folder / "timings.jsonl").read_text().splitlines() if line]  # fmt: skip
        log_tail = (folder / "bot.log").read_text(errors="replace")[-3000:]
    if code not in (0, None):
        problems.append(f"python -m bot exited with {code}:\n{log_tail}")
    return {"outcomes": [o for items in chats.values() for o in items], "wall_s": wall,
            "records": records, "problems": problems, "transcripts": shown,
            "platform_calls": platform_calls,
            "load_avg_before_after": [load_before, os.getloadavg()[0]]}  # fmt: skip

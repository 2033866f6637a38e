"""The console adapter: chat in a terminal, or one JSON object per input line for scripts.

Interactive mode prints the label the moment it is known and streams the reply token by
token. JSONL mode (stdin not a TTY, or `--jsonl`) answers each line with one JSON object;
a line starting with `/` runs that command and answers `{"command": ..., "text": ...}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from engine import texts
from engine.service import ChatService, parse_days
from engine.types import (
    IncomingMessage,
    ReplyDone,
    ReplyFailed,
    SentimentTagged,
    StorageError,
    TextDelta,
    UserKey,
)

log = logging.getLogger(__name__)

PLATFORM = "console"
CHAT_ID = "console"
QUIT_COMMANDS = {"quit", "exit"}
CONFIRM_HINT = "发送 /forget confirm 确认。 (Send /forget confirm to go ahead.)"


@dataclass(frozen=True)
class ConsoleConfig:
    user_id: str = "local"
    jsonl: bool = False
    chart_dir: Path | None = None  # where /mood saves its PNG in interactive mode


@dataclass(frozen=True)
class CommandResult:
    text: str
    chart_path: Path | None = None


class ConsoleAdapter:
    name = "console"

    def __init__(
        self,
        service: ChatService,
        config: ConsoleConfig,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.service = service
        self.config = config
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.user = UserKey(PLATFORM, config.user_id)
        self.finished = asyncio.Event()  # set when input ends or the user quits
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="console")
        self._task.add_done_callback(lambda _: self.finished.set())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    # --- the loop -------------------------------------------------------------------------

    async def _read_line(self) -> str | None:
        if not self.config.jsonl:
            self._write("\n你 (you) > ")
        line = await asyncio.to_thread(self.stdin.readline)
        return None if line == "" else line.rstrip("\r\n")

    async def _loop(self) -> None:
        if not self.config.jsonl:
            self._write(texts.help_text() + "\n输入 /quit 退出。 (Type /quit to leave.)\n")
        while (line := await self._read_line()) is not None:
            if line.lstrip().startswith("/"):
                name, _, arg = line.strip()[1:].partition(" ")
                if name.lower() in QUIT_COMMANDS:
                    return
                result = await self._command(name.lower(), arg.strip())
                self._show_command(name.lower(), result)
            elif self.config.jsonl:
                await self._answer_jsonl(line)
            else:
                await self._answer_interactive(line)

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _message(self, text: str) -> IncomingMessage:
        return IncomingMessage(PLATFORM, self.config.user_id, CHAT_ID, text)

    async def _answer_interactive(self, line: str) -> None:
        async for event in self.service.handle(self._message(line)):
            if isinstance(event, SentimentTagged):
                self._write(texts.label_line(event.sentiment) + "\n🤖 ")
            elif isinstance(event, TextDelta):
                self._write(event.text)
            elif isinstance(event, ReplyDone):
                self._write("\n")
            elif isinstance(event, ReplyFailed):
                self._write(f"\n⚠️  {event.message}\n")

    async def _answer_jsonl(self, line: str) -> None:
        record: dict[str, object] = {}
        async for event in self.service.handle(self._message(line)):
            if isinstance(event, ReplyDone):
                timings = event.timings
                record = {
                    "sentiment": event.sentiment.label,
                    "p_positive": round(event.sentiment.p_positive, 4),
                    "reply": event.text,
                    "finished": event.finished,
                    "ms": {
                        "sentiment": timings.sentiment_ms,
                        "first_token": timings.first_token_ms,
                        "total": timings.total_ms,
                    },
                }
            elif isinstance(event, ReplyFailed):
                record = {"error": event.reason, "text": event.message}
                if event.sentiment is not None:
                    record["sentiment"] = event.sentiment.label
                    record["p_positive"] = round(event.sentiment.p_positive, 4)
        self._write(json.dumps(record, ensure_ascii=False) + "\n")

    def _show_command(self, name: str, result: CommandResult) -> None:
        if self.config.jsonl:
            record: dict[str, str] = {"command": name, "text": result.text}
            if result.chart_path is not None:
                record["chart"] = str(result.chart_path)
            self._write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        self._write(result.text + "\n")
        if result.chart_path is not None:
            self._write(f"📈 {result.chart_path}\n")

    # --- commands -------------------------------------------------------------------------

    async def _command(self, name: str, arg: str) -> CommandResult:
        try:
            return await self._run_command(name, arg)
        except StorageError as error:
            log.error("command /%s failed: %s", name, error)
            return CommandResult(texts.STORAGE_ERROR)

    async def _run_command(self, name: str, arg: str) -> CommandResult:
        if name == "start":
            return CommandResult(texts.start_text())
        if name == "help":
            return CommandResult(texts.help_text())
        if name == "mood":
            return await self._mood(arg)
        if name == "reset":
            return CommandResult(await self.service.reset(self.user, CHAT_ID))
        if name == "forget":
            return await self._forget(arg)
        return CommandResult(texts.UNKNOWN_COMMAND)

    async def _mood(self, arg: str) -> CommandResult:
        try:
            days = parse_days(arg)
        except ValueError as error:
            return CommandResult(str(error))
        report = await self.service.mood(self.user, days)
        chart_path = None
        if self.config.chart_dir is not None and report.total:
            chart_path = self.config.chart_dir / f"mood-{self.config.user_id}.png"
            chart_path.parent.mkdir(parents=True, exist_ok=True)
            chart_path.write_bytes(await self.service.mood_chart(report))
        return CommandResult(report.text, chart_path)

    async def _forget(self, arg: str) -> CommandResult:
        # A typed confirmation stands in for the platforms' confirm button.
        if arg.lower() in {"confirm", "yes", "y"}:
            return CommandResult(await self.service.forget(self.user))
        return CommandResult(f"{texts.FORGET_ASK}\n{CONFIRM_HINT}")

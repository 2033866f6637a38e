"""The console adapter: chat in a terminal, or one JSON object per input line for scripts.

Interactive mode prints the label the moment it is known and streams the reply token by
token. JSONL mode (stdin not a TTY, or `--jsonl`) answers each line with one JSON object;
a line starting with `/` runs that command and answers `{"command": ..., "text": ...}`
(`/export` adds `"files"`: the paths of the CSV and JSON it wrote). The console has no
buttons: `/wrong <tone>` corrects the latest label, and `/forget confirm` answers /forget.
The console is a private chat: a support note (engine/chat/safety.py) is printed after the reply,
and in JSONL mode is the answer's `"support"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from engine.chat import texts
from engine.chat.commands import Caller, Commands
from engine.chat.journal import ExportFile
from engine.chat.service import ChatService
from engine.types import (
    IncomingMessage,
    ReplyDone,
    ReplyFailed,
    SentimentTagged,
    TextDelta,
    UserKey,
)

log = logging.getLogger(__name__)

PLATFORM = "console"
CHAT_ID = "console"
QUIT_COMMANDS = {"quit", "exit"}
CONFIRM_WORDS = frozenset({"confirm", "yes", "y"})


@dataclass(frozen=True)
class ConsoleConfig:
    user_id: str = "local"
    jsonl: bool = False
    chart_dir: Path | None = None  # where /mood saves its PNG in interactive mode


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
        self.commands = Commands(service)
        self.config = config
        self.stdin = stdin or sys.stdin
        if isinstance(self.stdin, io.TextIOWrapper):
            # Invalid UTF-8 (a pasted Latin-1 file, a cut multi-byte character) would end the
            # whole chat with a UnicodeDecodeError; it becomes U+FFFD and the line is answered.
            self.stdin.reconfigure(errors="replace")
        self.stdout = stdout or sys.stdout
        self.user = UserKey(PLATFORM, config.user_id)
        self.caller = Caller(self.user, CHAT_ID)
        self.finished = asyncio.Event()  # set when input ends or the user quits
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="console")
        self._task.add_done_callback(lambda _: self.finished.set())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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
                await self._command(name.lower(), arg.strip())
            elif self.config.jsonl:
                await self._answer_jsonl(line)
            else:
                await self._answer_interactive(line)

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _message(self, text: str) -> IncomingMessage:
        return IncomingMessage(PLATFORM, self.config.user_id, CHAT_ID, text, private=True)

    async def _answer_interactive(self, line: str) -> None:
        shown = ""
        async for event in self.service.handle(self._message(line)):
            if isinstance(event, SentimentTagged):
                self._write(texts.label_line(event.sentiment) + "\n🤖 ")
            elif isinstance(event, TextDelta):
                shown += event.text
                self._write(event.text)
            elif isinstance(event, ReplyDone):
                if event.text != shown.strip():
                    # The streamed reply was replaced (a refusal: engine/chat/safety.py).
                    self._write(f"\n🤖 {event.text}")
                self._write("\n")
                if event.support:
                    self._write(f"\n{event.support}\n")
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
                    "neutral": event.sentiment.neutral,
                    "reply": event.text,
                    "finished": event.finished,
                    "ms": {
                        "sentiment": timings.sentiment_ms,
                        "first_token": timings.first_token_ms,
                        "total": timings.total_ms,
                    },
                }
                if event.support:
                    record["support"] = event.support
            elif isinstance(event, ReplyFailed):
                record = {"error": event.reason, "text": event.message}
                if event.sentiment is not None:
                    record["sentiment"] = event.sentiment.label
                    record["p_positive"] = round(event.sentiment.p_positive, 4)
                    record["neutral"] = event.sentiment.neutral
        self._write(json.dumps(record, ensure_ascii=False) + "\n")

    # --- commands -------------------------------------------------------------------------

    async def _command(self, name: str, arg: str) -> None:
        # A typed confirmation stands in for the platforms' confirm buttons.
        if arg.lower() in CONFIRM_WORDS and self.commands.asks_first(name):
            result = await self.commands.confirm(name, self.caller, True)
            self._show_command(name, result.text)
            return
        charts = self.config.chart_dir is not None
        result = await self.commands.run(name, self.caller, arg, charts=charts)
        text = result.text
        if result.confirm is not None:
            text += "\n" + texts.console_confirm_hint(name)
        files = self._save_files(result.files)
        if files:
            text += "\n" + texts.export_saved([str(path) for path in files])
        self._show_command(name, text, self._save_chart(result.chart_png), files)

    def _save_chart(self, png: bytes | None) -> Path | None:
        if png is None or self.config.chart_dir is None:
            return None
        path = self.config.chart_dir / f"mood-{self.config.user_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path

    def _save_files(self, files: tuple[ExportFile, ...]) -> list[Path]:
        """/export's files, written beside the charts (the working directory without one)."""
        folder = self.config.chart_dir or Path.cwd()
        paths = []
        for file in files:
            path = folder / f"{self.config.user_id}-{file.name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(file.data)
            paths.append(path)
        return paths

    def _show_command(
        self, name: str, text: str, chart: Path | None = None, files: list[Path] | None = None
    ) -> None:
        if self.config.jsonl:
            record: dict[str, object] = {"command": name, "text": text}
            if chart is not None:
                record["chart"] = str(chart)
            if files:
                record["files"] = [str(path) for path in files]
            self._write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        self._write(text + "\n")
        if chart is not None:
            self._write(f"📈 {chart}\n")

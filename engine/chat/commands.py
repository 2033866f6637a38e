"""The bot's commands, written once: each returns a platform-neutral CommandResult that every
adapter renders its own way (a Telegram message with an inline keyboard, an ephemeral Discord
answer with a button view, a console line or a JSON object).

Adding a command means one function here, one entry in COMMANDS, and its registration in each
platform adapter (a slash command on Discord has typed options, so it is declared there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.chat import checkin, digest, report, texts, week, why
from engine.chat.journal import (
    ExportFile,
    Journal,
    correction_text,
    fix_data,
    offered_corrections,
    parse_fix_data,
)
from engine.chat.mood import validate_days
from engine.chat.service import ChatService
from engine.errors import StorageError
from engine.types import Tone, UserKey

log = logging.getLogger(__name__)

DEFAULT_DAYS = 7


@dataclass(frozen=True)
class Caller:
    """Who runs a command, and in which chat (commands only ever touch the caller's data)."""

    user: UserKey
    chat_id: str
    # Whether only the caller sees the answer: False in a Telegram group; Discord answers a
    # slash command ephemerally wherever it is run. Personal data is refused where it is False.
    private: bool = True
    # Whether the chat is the caller's own with the bot (a DM): what the bot sends to it later
    # (the weekly digest, the daily check-in) would otherwise reach everyone in it.
    own_chat: bool = True


@dataclass(frozen=True)
class Confirmation:
    """The command asks before acting: adapters show two buttons (or a typed `/name confirm`)
    that only the caller may press, then call `Commands.confirm(action, caller, yes)`."""

    action: str
    yes: str  # the buttons' labels
    no: str


@dataclass(frozen=True)
class CommandResult:
    text: str
    chart_png: bytes | None = None  # /mood's chart, when asked for and there is data
    confirm: Confirmation | None = None
    files: tuple[ExportFile, ...] = ()  # /export's CSV and JSON, sent as documents


@dataclass(frozen=True)
class CorrectionResult:
    """The answer to a press of a correction button: `text` for the presser only; when the
    label was corrected, `label_line` is the new first line of the label message."""

    text: str
    label_line: str | None = None


Handler = Callable[["Commands", Caller, str, bool], Awaitable[CommandResult]]


def parse_days(raw: str | None, default: int = DEFAULT_DAYS) -> int:
    """The /mood argument; raises ValueError with the user-facing message."""
    if raw is None or not raw.strip():
        return default
    try:
        return validate_days(int(raw.strip()))
    except ValueError:
        raise ValueError(texts.bad_days(raw)) from None


async def _start(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    return CommandResult(texts.start_text(commands.service.config.kept_turns))


async def _help(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    return CommandResult(texts.help_text())


async def _mood(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    if not caller.private:  # a group would read the history, the latest message with /mood why
        return CommandResult(texts.MOOD_PRIVATE_ONLY)
    # `/mood why` and `/mood week` (engine/chat/why.py, week.py); anything else: a number of days.
    view = args.strip().lower()
    if view == "why":
        return CommandResult(await why.why(commands.service, caller.user))
    if view == "week":
        summary = await week.week(commands.service, caller.user, caller.chat_id, charts=charts)
        return CommandResult(summary.text, summary.chart_png)
    if view.partition(" ")[0] == "report":  # `/mood report [days]`: a PDF (engine/chat/report.py)
        return await _report(commands, caller, view.partition(" ")[2])
    try:
        days = parse_days(args)
    except ValueError as error:
        return CommandResult(str(error))
    report = await commands.service.mood(caller.user, days)
    png = None
    if charts and report.total:  # an empty period has nothing to draw
        from engine.chat.chart import render_mood_chart

        try:
            # matplotlib is CPU work; keep it off the event loop.
            png = await asyncio.to_thread(render_mood_chart, report)
        except Exception:
            # The summary still goes out; a missing picture is not worth failing the command.
            log.exception("the mood chart failed")
    return CommandResult(report.text, png)


async def _report(commands: Commands, caller: Caller, raw_days: str) -> CommandResult:
    try:
        days = parse_days(raw_days, report.DEFAULT_DAYS)
    except ValueError:
        return CommandResult(texts.report_bad_days(raw_days))
    pdf = await report.mood_report(commands.service, caller.user, caller.chat_id, days)
    return CommandResult(pdf.caption, files=() if pdf.file is None else (pdf.file,))


async def _reset(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    return CommandResult(await commands.service.reset(caller.user, caller.chat_id))


async def _forget(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    ask = Confirmation("forget", texts.FORGET_YES_BUTTON, texts.FORGET_NO_BUTTON)
    linked = await commands.journal.is_linked(caller.user)
    return CommandResult(texts.FORGET_ASK_LINKED if linked else texts.FORGET_ASK, confirm=ask)


# The journal's commands (engine/chat/journal.py holds their logic).


async def _wrong(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    return CommandResult(await commands.journal.wrong(caller.user, caller.chat_id, args))


async def _link(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    if not caller.private:
        # Whoever enters a code sees the issuer's history: it must not be shown to a group.
        return CommandResult(texts.LINK_PRIVATE_ONLY)
    return CommandResult(await commands.journal.link(caller.user, args))


async def _unlink(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    return CommandResult(await commands.journal.unlink(caller.user))


async def _export(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    if not caller.private:
        return CommandResult(texts.EXPORT_PRIVATE_ONLY)
    text, files = await commands.journal.export(caller.user)
    return CommandResult(text, files=files)


async def _digest(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    choice = args.strip().lower()
    if choice not in ("on", "off"):
        return CommandResult(texts.DIGEST_USAGE)
    if choice == "on" and not caller.own_chat:  # every week, into this chat, for all to read
        return CommandResult(texts.DIGEST_PRIVATE_ONLY)
    changed = await digest.set_digest(commands.service, caller.user, caller.chat_id, choice == "on")
    if choice == "off":
        return CommandResult(texts.DIGEST_OFF if changed else texts.DIGEST_WAS_OFF)
    config = commands.service.config
    on = texts.digest_on(config.digest_weekday, config.digest_at, config.timezone, changed)
    return CommandResult(on)


async def _checkin(commands: Commands, caller: Caller, args: str, charts: bool) -> CommandResult:
    # engine/chat/checkin.py: the time, the zone, off; refused outside the caller's own chat.
    return CommandResult(await checkin.command(commands.service, caller.user, caller.chat_id,
                                               args, private=caller.private,
                                               own_chat=caller.own_chat))  # fmt: skip


@dataclass(frozen=True)
class Command:
    name: str
    run: Handler
    asks_first: bool = False  # answers with a Confirmation; Commands.confirm(name, …) acts

    @property
    def description(self) -> str:
        return texts.COMMANDS[self.name]


COMMANDS: tuple[Command, ...] = (
    Command("start", _start),
    Command("help", _help),
    Command("mood", _mood),
    Command("reset", _reset),
    Command("forget", _forget, asks_first=True),
    Command("digest", _digest),
    Command("checkin", _checkin),
    Command("wrong", _wrong),
    Command("link", _link),
    Command("unlink", _unlink),
    Command("export", _export),
)


class Commands:
    """Runs commands for a caller; storage failures become the user-facing storage text."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.journal = Journal(service)
        self._by_name = {command.name: command for command in COMMANDS}

    @staticmethod
    def menu() -> list[tuple[str, str]]:
        """(name, description) of every command, for the platforms' command menus."""
        return [(command.name, command.description) for command in COMMANDS]

    def asks_first(self, name: str) -> bool:
        command = self._by_name.get(name.lower())
        return command is not None and command.asks_first

    async def run(
        self, name: str, caller: Caller, args: str = "", *, charts: bool = True
    ) -> CommandResult:
        """Run `/name args`; `charts=False` skips drawing /mood's PNG."""
        command = self._by_name.get(name.lower())
        if command is None:
            return CommandResult(texts.UNKNOWN_COMMAND)
        try:
            return await command.run(self, caller, args.strip(), charts)
        except StorageError as error:
            log.error("/%s failed: %s", command.name, error)
            return CommandResult(texts.STORAGE_ERROR)

    async def confirm(self, action: str, caller: Caller, accepted: bool) -> CommandResult:
        """The answer to a Confirmation; the adapter has checked that the caller asked."""
        if not accepted:
            return CommandResult(texts.FORGET_CANCELLED)
        if not self.asks_first(action):
            raise ValueError(f"no command asks to confirm {action!r}")
        try:
            return CommandResult(await self.service.forget(caller.user))
        except StorageError as error:
            log.error("forget failed: %s", error)
            return CommandResult(texts.STORAGE_ERROR)

    # --- correction buttons (engine/chat/journal.py) --------------------------------------------

    @staticmethod
    def correction_buttons(message_id: str, shown: Tone) -> list[tuple[str, str]]:
        """(label, data) of the buttons under a label message; data fits Telegram's 64 bytes
        for any Telegram or Discord message id."""
        return [
            (texts.correction_button(tone), fix_data(message_id, tone))
            for tone in offered_corrections(shown)
        ]

    @staticmethod
    def is_correction(data: str) -> bool:
        return parse_fix_data(data) is not None

    async def press_correction(self, caller: Caller, data: str) -> CorrectionResult:
        """A correction button pressed by `caller` in `caller.chat_id`; the owner check is
        the store's (the event's author), so no adapter state is needed."""
        parsed = parse_fix_data(data)
        if parsed is None:
            return CorrectionResult(texts.CORRECTION_NOT_FOUND)
        message_id, tone = parsed
        try:
            correction = await self.journal.correct(caller.user, caller.chat_id, message_id, tone)
        except StorageError as error:
            log.error("correction failed: %s", error)
            return CorrectionResult(texts.STORAGE_ERROR)
        line = None
        if correction.outcome == "corrected" and correction.event is not None:
            line = texts.corrected_line(correction.event.shown_tone, tone)
        return CorrectionResult(correction_text(correction, tone), line)

"""The slash commands Cog: /mood, /reset, /forget, /digest, /checkin, /help, /start and the
journal's /wrong, /link, /unlink and /export, from engine/chat/commands.py.

Every answer is ephemeral: it concerns only the caller, and it keeps channels quiet (which is
also why the channel allow-list does not apply here; the user allow-list does). Discord wants
an acknowledgement within 3 s, so anything touching the database or drawing a chart defers
first and fills the answer in afterwards.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from engine.chat import texts
from engine.chat.commands import Caller, Commands, Confirmation
from engine.types import UserKey

if TYPE_CHECKING:
    from adapters.discord.host import DiscordHost

log = logging.getLogger(__name__)

PLATFORM = "discord"
CONFIRM_TIMEOUT_S = 120.0
MAX_CHARS = 2000

# The one Discord-only string (option descriptions are a slash-command concept).
DAYS_DESCRIPTION = "天数 1–365，默认 7，报告默认 30 (days, 1–365; default 7, report 30)"
VIEWS = ("why", "week", "report")
VIEW_DESCRIPTION = (
    "why 为什么，week 本周小结，report PDF 报告 (why: the latest label; week: summary; report: PDF)"
)
DIGEST_DESCRIPTION = "on 每周收到小结，off 停止 (on: weekly summary by DM; off: stop)"
CHECKIN_TIME_DESCRIPTION = "每天的时间 时:分，如 21:00；off 停止 (HH:MM, e.g. 21:00; off stops it)"
CHECKIN_ZONE_DESCRIPTION = "IANA 时区，如 Asia/Shanghai (IANA time zone, e.g. Europe/Berlin)"
TONE_DESCRIPTION = "正确的情感 (the right label)"
CODE_DESCRIPTION = (
    "另一个平台给你的关联码；留空则生成一个 (a code from your other platform; empty: get one)"
)
LINK_CONFIRM_DESCRIPTION = (
    "输入关联码并看过说明后，选 True 确认关联 (True: link, after entering the code and reading "
    "what it means)"
)
TONES = [
    app_commands.Choice(name=f"{texts.LABEL_WORD[tone]} ({tone})", value=tone)
    for tone in ("positive", "negative", "neutral")
]


def _user(interaction: discord.Interaction) -> UserKey:
    return UserKey(PLATFORM, str(interaction.user.id))


def _fit(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


class ConfirmView(discord.ui.View):
    """A command's confirmation: only the caller's press counts; nothing happens on cancel."""

    def __init__(
        self, owner_id: int, ask: Confirmation, commands: Commands, caller: Caller
    ) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.owner_id = owner_id
        self.prompt: discord.Interaction | None = None  # to take the buttons away on timeout
        self._ask, self._commands, self._caller = ask, commands, caller
        self.confirm.label, self.cancel.label = ask.yes, ask.no

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await interaction.response.send_message(texts.FORGET_NOT_YOURS, ephemeral=True)
        return False

    @discord.ui.button(style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.defer()  # deleting may outlast Discord's 3 s window
        result = await self._commands.confirm(self._ask.action, self._caller, True)
        await interaction.edit_original_response(content=result.text, view=None)

    @discord.ui.button(style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        self.stop()
        result = await self._commands.confirm(self._ask.action, self._caller, False)
        await interaction.response.edit_message(content=result.text, view=None)

    async def on_timeout(self) -> None:
        if self.prompt is not None:
            try:
                await self.prompt.edit_original_response(content=texts.FORGET_CANCELLED, view=None)
            except discord.HTTPException as error:
                log.debug("could not expire the confirmation prompt: %s", error)


class CommandTree(app_commands.CommandTree):
    """Publishes the commands, and turns an unexpected failure into an answer to the user."""

    async def publish(self, guild_id: int | None) -> None:
        """Sync the commands; a failure is logged, since chat still works without them."""
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            # Guild commands appear at once; global ones can take up to an hour.
            self.copy_global_to(guild=guild)
        try:
            synced = await self.sync(guild=guild)
        except (discord.HTTPException, app_commands.AppCommandError, aiohttp.ClientError) as error:
            log.error("could not sync Discord slash commands: %s", error)
            return
        where = f"guild {guild_id}" if guild_id else "globally"
        log.info("synced %d Discord slash commands %s", len(synced), where)

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        if isinstance(error, app_commands.CheckFailure):
            return  # refused (and answered) by CommandsCog.interaction_check
        name = interaction.command.name if interaction.command else "?"
        log.error("/%s failed", name, exc_info=getattr(error, "original", error))
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(
                    content=texts.MODEL_ERROR, attachments=[], view=None
                )
            else:
                await interaction.response.send_message(texts.MODEL_ERROR, ephemeral=True)
        except discord.HTTPException as http_error:
            log.debug("could not report the error to the user: %s", http_error)


class CommandsCog(commands.Cog):
    """Each slash command runs the shared command (engine/chat/commands.py) and renders its
    result."""

    def __init__(self, bot: commands.Bot, adapter: DiscordHost) -> None:
        self.bot = bot
        self.adapter = adapter
        self.commands = Commands(adapter.service)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not self.adapter.track():
            return False  # shutting down
        if self.adapter.user_allowed(interaction.user.id):
            return True
        await interaction.response.send_message(texts.NOT_ALLOWED, ephemeral=True)
        return False

    async def _answer(
        self, interaction: discord.Interaction, name: str, args: str = "", *, defer: bool = True
    ) -> None:
        """Run /name and show the result to the caller only. `defer` first when it may take
        longer than Discord's 3 s window (the database, the chart)."""
        if defer:
            await interaction.response.defer(ephemeral=True, thinking=True)
        # Ephemeral answers are the caller's alone anywhere; a DM is also theirs to receive in.
        own = isinstance(interaction.channel, discord.DMChannel)
        caller = Caller(_user(interaction), str(interaction.channel_id), own_chat=own)
        result = await self.commands.run(name, caller, args)
        extra: dict[str, Any] = {}
        view = None
        if result.confirm is not None:
            view = extra["view"] = ConfirmView(
                interaction.user.id, result.confirm, self.commands, caller
            )
        files = []
        if result.chart_png is not None:
            files.append(discord.File(io.BytesIO(result.chart_png), filename="mood.png"))
        files += [discord.File(io.BytesIO(f.data), filename=f.name) for f in result.files]
        if defer:
            await interaction.edit_original_response(
                content=_fit(result.text), attachments=files, **extra
            )
        else:
            await interaction.response.send_message(
                _fit(result.text), files=files, ephemeral=True, **extra
            )
        if view is not None:
            view.prompt = interaction

    @app_commands.command(name="mood", description=texts.COMMANDS["mood"])
    @app_commands.describe(days=DAYS_DESCRIPTION, view=VIEW_DESCRIPTION)
    @app_commands.choices(view=[app_commands.Choice(name=name, value=name) for name in VIEWS])
    async def mood(
        self,
        interaction: discord.Interaction,
        days: app_commands.Range[int, 1, 365] | None = None,
        view: str | None = None,
    ) -> None:
        # `/mood view:why`, `view:week` and `view:report days:90` are the shared `/mood why`,
        # `/mood week` and `/mood report 90` (the report's PDF comes as an ephemeral file).
        words = [view] if view is not None else []
        if days is not None and view in (None, "report"):  # why and week take no days
            words.append(str(days))
        await self._answer(interaction, "mood", " ".join(words))

    @app_commands.command(name="digest", description=texts.COMMANDS["digest"])
    @app_commands.describe(state=DIGEST_DESCRIPTION)
    @app_commands.choices(
        state=[app_commands.Choice(name=name, value=name) for name in ("on", "off")]
    )
    async def digest(self, interaction: discord.Interaction, state: str) -> None:
        await self._answer(interaction, "digest", state)

    @app_commands.command(name="checkin", description=texts.COMMANDS["checkin"])
    @app_commands.describe(time=CHECKIN_TIME_DESCRIPTION, timezone=CHECKIN_ZONE_DESCRIPTION)
    async def checkin(
        self,
        interaction: discord.Interaction,
        time: app_commands.Range[str, 1, 20] | None = None,
        timezone: app_commands.Range[str, 1, 64] | None = None,
    ) -> None:
        # The shared `/checkin HH:MM zone`; no time shows what is set.
        await self._answer(interaction, "checkin", " ".join(filter(None, (time, timezone))))

    @app_commands.command(name="reset", description=texts.COMMANDS["reset"])
    async def reset(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, "reset")

    @app_commands.command(name="forget", description=texts.COMMANDS["forget"])
    async def forget(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, "forget", defer=False)

    @app_commands.command(name="help", description=texts.COMMANDS["help"])
    async def help_(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, "help", defer=False)

    @app_commands.command(name="start", description=texts.COMMANDS["start"])
    async def start(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, "start", defer=False)

    # The journal's commands (engine/chat/journal.py); every answer is ephemeral, /export's files
    # too.

    @app_commands.command(name="wrong", description=texts.COMMANDS["wrong"])
    @app_commands.describe(label=TONE_DESCRIPTION)
    @app_commands.choices(label=TONES)
    async def wrong(self, interaction: discord.Interaction, label: str) -> None:
        await self._answer(interaction, "wrong", label)

    @app_commands.command(name="link", description=texts.COMMANDS["link"])
    @app_commands.describe(code=CODE_DESCRIPTION, confirm=LINK_CONFIRM_DESCRIPTION)
    async def link(
        self, interaction: discord.Interaction, code: str | None = None, confirm: bool = False
    ) -> None:
        # `/link confirm`, as typed on the other platforms; the code may come with it.
        await self._answer(interaction, "link", f"{code or ''} confirm" if confirm else code or "")

    @app_commands.command(name="unlink", description=texts.COMMANDS["unlink"])
    async def unlink(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, "unlink")

    @app_commands.command(name="export", description=texts.COMMANDS["export"])
    async def export(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, "export")

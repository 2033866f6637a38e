"""Slash commands for the Discord adapter: /mood, /reset, /forget, /help and /start.

Every answer is ephemeral: it concerns only the caller, and it keeps channels quiet (which is
also why the channel allow-list does not apply here; the user allow-list does). Discord wants
an acknowledgement within 3 s, so anything touching the database or drawing a chart defers
first and fills the answer in afterwards.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import aiohttp
import discord
from discord import app_commands

from chat import texts
from chat.commands import Caller, Commands, Confirmation
from chat.service import ChatService
from core.errors import StorageError
from core.types import UserKey

log = logging.getLogger(__name__)

PLATFORM = "discord"
CONFIRM_TIMEOUT_S = 120.0
MAX_CHARS = 2000

# The one Discord-only string (option descriptions are a slash-command concept).
DAYS_DESCRIPTION = "天数 1–365，默认 7 (days to show, 1–365, default 7)"


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


class BotCommandTree(app_commands.CommandTree):
    def __init__(
        self,
        client: discord.Client,
        service: ChatService,
        user_allowed: Callable[[int], bool],
        track: Callable[[], bool],
    ) -> None:
        super().__init__(client)
        self.service = service
        self._user_allowed = user_allowed
        self._track = track
        _register(self)

    async def sync_commands(self, guild_id: int | None) -> None:
        """Publish the commands; a failure is logged, since chat still works without them."""
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

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not self._track():
            return False  # shutting down
        if self._user_allowed(interaction.user.id):
            return True
        await interaction.response.send_message(texts.NOT_ALLOWED, ephemeral=True)
        return False

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        cause = getattr(error, "original", error)
        name = interaction.command.name if interaction.command else "?"
        if isinstance(cause, StorageError):
            log.error("/%s: %s", name, cause)
            text = texts.STORAGE_ERROR
        else:
            log.error("/%s failed", name, exc_info=cause)
            text = texts.MODEL_ERROR
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(content=text, attachments=[], view=None)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as http_error:
            log.debug("could not report the error to the user: %s", http_error)


def _register(tree: BotCommandTree) -> None:
    commands = Commands(tree.service)

    async def answer(
        interaction: discord.Interaction, name: str, args: str = "", *, defer: bool = True
    ) -> None:
        if defer:  # the database or the chart may outlast Discord's 3 s window
            await interaction.response.defer(ephemeral=True, thinking=True)
        caller = Caller(_user(interaction), str(interaction.channel_id))
        result = await commands.run(name, caller, args)
        view = None
        if result.confirm is not None:
            view = ConfirmView(interaction.user.id, result.confirm, commands, caller)
        files = []
        if result.chart_png is not None:
            files.append(discord.File(io.BytesIO(result.chart_png), filename="mood.png"))
        if defer:
            kwargs = {"view": view} if view is not None else {}
            await interaction.edit_original_response(
                content=_fit(result.text), attachments=files, **kwargs
            )
        else:
            kwargs = {"view": view} if view is not None else {}
            await interaction.response.send_message(
                _fit(result.text), files=files, ephemeral=True, **kwargs
            )
        if view is not None:
            view.prompt = interaction

    @tree.command(name="mood", description=texts.COMMANDS["mood"])
    @app_commands.describe(days=DAYS_DESCRIPTION)
    async def mood(
        interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] | None = None
    ) -> None:
        await answer(interaction, "mood", "" if days is None else str(days))

    @tree.command(name="reset", description=texts.COMMANDS["reset"])
    async def reset(interaction: discord.Interaction) -> None:
        await answer(interaction, "reset")

    @tree.command(name="forget", description=texts.COMMANDS["forget"])
    async def forget(interaction: discord.Interaction) -> None:
        await answer(interaction, "forget", defer=False)

    @tree.command(name="help", description=texts.COMMANDS["help"])
    async def help_(interaction: discord.Interaction) -> None:
        await answer(interaction, "help", defer=False)

    @tree.command(name="start", description=texts.COMMANDS["start"])
    async def start(interaction: discord.Interaction) -> None:
        await answer(interaction, "start", defer=False)

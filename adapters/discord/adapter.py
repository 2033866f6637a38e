"""The Discord adapter: discord.py's commands.Bot with two Cogs, started on the shared loop.

A thin translator. `ChatCog` (chat_cog.py) answers messages, `CommandsCog` (commands_cog.py)
serves the slash commands; this module starts and stops the bot and turns what can go wrong
at start-up into a DiscordStartError that says what to fix. The bot talks to Discord's real
endpoints, through DISCORD_PROXY when set (discord.py's own proxy option).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from adapters.discord.chat_cog import NO_MENTIONS, ChatCog
from adapters.discord.checkin import DiscordCheckins
from adapters.discord.commands_cog import CommandsCog, CommandTree
from adapters.discord.config import DiscordConfig
from adapters.discord.digest import DiscordDigest
from adapters.discord.journal import register as register_journal
from adapters.inflight import InFlight
from adapters.resume import Resumer
from engine.chat.service import ChatService
from engine.types import Unfinished

__all__ = ["DiscordAdapter", "DiscordConfig", "DiscordStartError"]

log = logging.getLogger(__name__)

API_URL = "https://discord.com/api/v10"  # discord.py's own endpoints, named in errors
GATEWAY_URL = "wss://gateway.discord.gg/"


class DiscordStartError(RuntimeError):
    """start() could not get the bot online; the message says why and what to fix."""


class DiscordBot(commands.Bot):
    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        # Slash commands only: no prefix commands and no help command to answer.
        super().__init__(commands.when_mentioned, help_command=None, tree_cls=CommandTree,
                         **options)  # fmt: skip
        self.adapter = adapter

    async def setup_hook(self) -> None:
        """Runs inside login(): the Cogs are added and the slash commands published."""
        await self.add_cog(ChatCog(self, self.adapter))
        cog = CommandsCog(self, self.adapter)
        await self.add_cog(cog)
        register_journal(self, self.adapter, cog.commands)
        assert isinstance(self.tree, CommandTree)
        await self.tree.publish(self.adapter.config.command_guild_id)

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: ChatCog's listener answers messages."""


class DiscordAdapter:
    name = "discord"

    def __init__(self, service: ChatService, config: DiscordConfig) -> None:
        self.service = service
        self.config = config
        self.client: DiscordBot | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._in_flight = InFlight("discord")
        self._online = False  # READY was reached; later gateway failures are logged, not raised
        self.resumer = Resumer(service, "discord", self._resume)
        self.digest: DiscordDigest | None = None  # the weekly digest's task, once online
        self.checkins: DiscordCheckins | None = None  # the daily check-in's task, once online

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, sync slash commands, connect the gateway; return once READY.

        Raises DiscordStartError with what to fix; nothing is left running in that case.
        """
        if self.client is not None:
            raise RuntimeError("DiscordAdapter.start() may only be called once")
        # The bot has no voice features; don't warn at every start that voice libs are missing.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False

        intents = discord.Intents.default()
        intents.message_content = True  # privileged: must also be enabled in the portal
        intents.dm_messages = True
        self.client = DiscordBot(
            self,
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            guild_ready_timeout=self.config.guild_ready_timeout_s,
            chunk_guilds_at_startup=False,
            proxy=self.config.proxy,
        )
        try:
            await self._connect(self.client)
        except BaseException:
            await self.stop()
            raise
        user = self.client.user
        log.info("connected to Discord as %s (id %s)", user, user and user.id)
        self.digest = DiscordDigest(self.service, self.client)
        self.digest.start()
        self.checkins = DiscordCheckins(self.service, self.client)
        self.checkins.start()

    def _via(self) -> str:
        return f" through the proxy {self.config.proxy}" if self.config.proxy else ""

    async def _connect(self, client: DiscordBot) -> None:
        try:
            await client.login(self.config.token)
        except discord.LoginFailure as error:
            raise DiscordStartError("Discord rejected the bot token (DISCORD_BOT_TOKEN)") from error
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            raise DiscordStartError(
                f"could not reach the Discord API at {API_URL}{self._via()}: {error}"
            ) from error

        connect = self._connect_task = asyncio.create_task(client.connect(), name="discord")
        connect.add_done_callback(self._gateway_ended)
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait(
            {connect, ready}, timeout=self.config.ready_timeout_s, return_when="FIRST_COMPLETED"
        )
        ready.cancel()
        if ready not in done:
            cause = connect.exception() if connect in done else None
            raise DiscordStartError(self._start_failure(cause)) from cause
        self._online = True

    def _start_failure(self, cause: BaseException | None) -> str:
        if isinstance(cause, discord.PrivilegedIntentsRequired):
            return (
                "Discord refused the Message Content intent: enable it in the developer portal "
                "(your application > Bot > Privileged Gateway Intents > Message Content Intent)"
            )
        if isinstance(cause, discord.ConnectionClosed) and cause.code == 4004:
            return "Discord rejected the bot token (DISCORD_BOT_TOKEN) at the gateway"
        if cause is not None:
            # An unreachable gateway ends discord.py's first connect() in an AttributeError
            # (it reads the not-yet-created websocket's sequence), hence "could not connect".
            where = f"{GATEWAY_URL}{self._via()}"
            return f"could not connect to the Discord gateway at {where}: {cause!r}"
        return (
            f"no READY from the Discord gateway at {GATEWAY_URL}{self._via()} "
            f"within {self.config.ready_timeout_s:g} s"
        )

    def _gateway_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()  # retrieved even when stopping, so asyncio never complains
        if error is not None and self._online and not self._in_flight.closed:
            log.error("the Discord gateway connection ended; Discord is offline: %r", error)

    async def stop(self) -> None:
        """Stop taking messages, let in-flight replies finish briefly, then disconnect."""
        await self.resumer.stop()
        if self.digest is not None:
            await self.digest.stop()
        if self.checkins is not None:
            await self.checkins.stop()
        await self._in_flight.finish(self.config.shutdown_grace_s)
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        if self._connect_task is not None:
            # close() makes connect() return; its errors were reported by _gateway_ended.
            await asyncio.wait({self._connect_task}, timeout=10)

    async def _resume(self, pending: Unfinished) -> None:
        cog = self.client.get_cog("ChatCog") if self.client is not None else None
        if isinstance(cog, ChatCog):
            await cog.resume(pending)

    def track(self) -> bool:
        """Register the current event task as in-flight work; False once stopping."""
        return self._in_flight.track()

    def user_allowed(self, user_id: int) -> bool:
        return not self.config.allowed_user_ids or user_id in self.config.allowed_user_ids

"""The Discord adapter: gateway messages and slash commands in, engine replies out.

A thin translator around discord.py. DMs are always answered; in server channels the bot
answers only when @mentioned or replied to. Replies stream through the shared ReplyRenderer
(label first, then throttled edits, split at Discord's 2000 characters). Slash commands live
in adapters/discord_commands.py, its settings in adapters/discord_config.py.

Importing `discord` from a module named `adapters/discord.py` is safe: imports are absolute,
and `adapters/` itself is never on sys.path (the package root is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import yarl

from adapters.discord.cog import BotCommandTree
from adapters.discord.config import DiscordConfig
from adapters.streaming import RateLimited, RenderLimits, ReplyRenderer
from chat import texts
from chat.service import ChatService
from core.types import IncomingMessage

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_MESSAGE_CHARS = 2000

# Nothing the bot sends may ping anyone: the text comes from a language model.
NO_MENTIONS = discord.AllowedMentions.none()

CONTENT_INTENT_HINT = (
    "Discord delivered a message with no text, attachments or embeds: the Message Content "
    "intent is probably disabled for this bot. Enable it in the Discord developer portal "
    "(your application > Bot > Privileged Gateway Intents > Message Content Intent)."
)


class DiscordStartError(RuntimeError):
    """start() could not get the bot online; the message says why and what to fix."""


@contextlib.asynccontextmanager
async def _platform_errors() -> AsyncIterator[None]:
    """Turn a 429 that discord.py did not wait out itself into the renderer's RateLimited.

    discord.py retries 429s in its HTTP layer, but raises when the response lacks the `Via`
    header (it assumes a Cloudflare ban) or exceeds max_ratelimit_timeout.
    """
    try:
        yield
    except discord.RateLimited as error:
        raise RateLimited(error.retry_after) from error
    except discord.HTTPException as error:
        if error.status != 429:
            raise
        raise RateLimited(_retry_after(error)) from error


def _retry_after(error: discord.HTTPException) -> float:
    header = getattr(error.response, "headers", {}).get("Retry-After")
    try:
        return max(float(header), 0.0) if header is not None else 1.0
    except ValueError:
        return 1.0


class _ChannelSink:
    """Where one reply goes: the message's channel, as a reply to it in server channels."""

    def __init__(self, source: discord.Message) -> None:
        self._source = source
        self._channel = source.channel
        # In a busy channel the first message quotes the one it answers; a DM needs no quote.
        self._quote = not isinstance(source.channel, discord.DMChannel)

    async def send(self, text: str) -> discord.Message:
        async with _platform_errors():
            if self._quote:
                # fail_if_not_exists=False: if the question was deleted, answer anyway.
                quote = self._source.to_reference(fail_if_not_exists=False)
                sent = await self._channel.send(text, reference=quote, allowed_mentions=NO_MENTIONS)
            else:
                sent = await self._channel.send(text, allowed_mentions=NO_MENTIONS)
        self._quote = False
        return sent

    async def edit(self, handle: discord.Message, text: str) -> None:
        async with _platform_errors():
            await handle.edit(content=text, allowed_mentions=NO_MENTIONS)

    async def typing(self) -> None:
        # Awaiting (not entering) typing() sends one indicator; the renderer renews it.
        await self._channel.typing()


class _Client(discord.Client):
    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        super().__init__(**options)
        self._adapter = adapter
        self.tree = BotCommandTree(self, adapter.service, adapter.user_allowed, adapter.track)

    async def on_message(self, message: discord.Message) -> None:
        await self._adapter.on_message(message)


class DiscordAdapter:
    name = "discord"

    def __init__(self, service: ChatService, config: DiscordConfig) -> None:
        self.service = service
        self.config = config
        self.client: _Client | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._online = False  # READY was reached; later gateway failures are logged, not raised
        self._warned_content_intent = False
        self._limits = RenderLimits(MAX_MESSAGE_CHARS, edit_interval_s=config.edit_interval_s)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, sync slash commands, connect the gateway; return once READY.

        Raises DiscordStartError with what to fix; nothing is left running in that case.
        """
        if self.client is not None:
            raise RuntimeError("DiscordAdapter.start() may only be called once")
        # discord.py reads its endpoints from class attributes, so this is process-wide:
        # every discord.py client in this process now talks to these URLs.
        discord.http.Route.BASE = self.config.api_base_url.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.config.gateway_url)
        # The bot has no voice features; don't warn at every start that voice libs are missing.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False

        intents = discord.Intents.default()
        intents.message_content = True  # privileged: must also be enabled in the portal
        intents.dm_messages = True
        self.client = _Client(
            self,
            intents=intents,
            allowed_mentions=NO_MENTIONS,
            guild_ready_timeout=self.config.guild_ready_timeout_s,
            chunk_guilds_at_startup=False,
        )
        try:
            await self._connect(self.client)
        except BaseException:
            await self.stop()
            raise
        user = self.client.user
        log.info("connected to Discord as %s (id %s)", user, user and user.id)

    async def _connect(self, client: _Client) -> None:
        try:
            await client.login(self.config.token)
        except discord.LoginFailure as error:
            raise DiscordStartError("Discord rejected the bot token (DISCORD_BOT_TOKEN)") from error
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            raise DiscordStartError(
                f"could not reach the Discord API at {self.config.api_base_url}: {error}"
            ) from error
        await client.tree.sync_commands(self.config.command_guild_id)

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
            return (
                f"could not connect to the Discord gateway at {self.config.gateway_url}: {cause!r}"
            )
        return (
            f"no READY from the Discord gateway at {self.config.gateway_url} "
            f"within {self.config.ready_timeout_s:g} s"
        )

    def _gateway_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()  # retrieved even when stopping, so asyncio never complains
        if error is not None and self._online and not self._stopping:
            log.error("the Discord gateway connection ended; Discord is offline: %r", error)

    async def stop(self) -> None:
        """Stop taking messages, let in-flight replies finish briefly, then disconnect."""
        self._stopping = True
        if pending := set(self._in_flight):
            _, late = await asyncio.wait(pending, timeout=self.config.shutdown_grace_s)
            # Cancel until they end (aclosing() in the handler closes the engine stream): on
            # Python 3.11 a cancel racing a result can be swallowed (asyncio.wait_for,
            # gh-86296) anywhere down the stack, so once is not always enough.
            for _ in range(20):
                if not late:
                    break
                for task in late:
                    task.cancel()
                _, late = await asyncio.wait(late, timeout=0.25)
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        if self._connect_task is not None:
            # close() makes connect() return; its errors were reported by _gateway_ended.
            await asyncio.wait({self._connect_task}, timeout=10)

    def track(self) -> bool:
        """Register the current event task as in-flight work; False once stopping."""
        task = asyncio.current_task()
        if self._stopping or task is None:
            return False
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return True

    # --- who and what gets an answer ----------------------------------------------------------

    def user_allowed(self, user_id: int) -> bool:
        return not self.config.allowed_user_ids or user_id in self.config.allowed_user_ids

    def _channel_allowed(self, channel: object) -> bool:
        allowed = self.config.allowed_channel_ids
        # A thread inherits its parent channel's permission.
        ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
        return not allowed or bool(ids & allowed)

    def _me(self) -> discord.ClientUser | None:
        return self.client.user if self.client else None

    def _mention_tokens(self, message: discord.Message) -> list[str]:
        me = self._me()
        if me is None:
            return []
        tokens = [f"<@{me.id}>", f"<@!{me.id}>"]
        # Picking the bot in the @ menu may insert its managed role instead of the user.
        role = message.guild.self_role if message.guild else None
        if role is not None:
            tokens.append(f"<@&{role.id}>")
        return tokens

    def _replies_to_me(self, message: discord.Message) -> bool:
        me = self._me()
        reference = message.reference
        if me is None or reference is None:
            return False
        target = reference.resolved
        if not isinstance(target, discord.Message):
            target = reference.cached_message
        return target is not None and target.author.id == me.id

    def _addressed(self, message: discord.Message) -> bool:
        if self.config.reply_on_mention and any(
            token in message.content for token in self._mention_tokens(message)
        ):
            return True
        return self.config.reply_on_reply and self._replies_to_me(message)

    def _text_of(self, message: discord.Message) -> str:
        text = message.content
        for token in self._mention_tokens(message):
            text = text.replace(token, " ")
        # Other mentions reach the model as names, not as <@123> markup.
        users = {str(user.id): user.display_name for user in message.mentions}
        roles = {str(role.id): role.name for role in message.role_mentions}
        text = re.sub(r"<@!?(\d+)>", lambda m: "@" + users.get(m[1], "user"), text)
        text = re.sub(r"<@&(\d+)>", lambda m: "@" + roles.get(m[1], "role"), text)
        return re.sub(r"[ \t]+", " ", text).strip()

    # --- messages -----------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        author, me = message.author, self._me()
        # Bots include this one; answering them could loop forever.
        if author.bot or message.webhook_id is not None or (me is not None and author.id == me.id):
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # joins, pins, thread notices…
        if not isinstance(message.channel, discord.DMChannel) and not (
            self._channel_allowed(message.channel) and self._addressed(message)
        ):
            return
        if not self.track():
            return
        sink = _ChannelSink(message)
        try:
            await self._answer(message, sink)
        except (discord.HTTPException, RateLimited) as error:
            log.warning("could not reply in Discord channel %s: %s", message.channel.id, error)

    async def _answer(self, message: discord.Message, sink: _ChannelSink) -> None:
        if not self.user_allowed(message.author.id):
            await sink.send(texts.NOT_ALLOWED)
            return
        text = self._text_of(message)
        if not text:
            if (
                message.attachments
                or message.stickers
                or message.embeds
                or getattr(message, "message_snapshots", None)  # forwards, discord.py >= 2.5
                or message.poll
            ):
                await sink.send(texts.NOT_TEXT)
                return
            if not message.content and not self._warned_content_intent:
                self._warned_content_intent = True
                log.warning(CONTENT_INTENT_HINT)
            # An empty text still goes to the engine, which answers with its own hint.
        incoming = IncomingMessage(PLATFORM, str(message.author.id), str(message.channel.id), text)
        renderer: ReplyRenderer[discord.Message] = ReplyRenderer(sink, self._limits)
        # aclosing: if stop() cancels us mid-reply, the engine stream (and its lock) is released.
        async with contextlib.aclosing(self.service.handle(incoming)) as events:
            result = await renderer.render(events)
        if result.failure is not None:
            log.info(
                "Discord reply failed (%s) in channel %s", result.failure.reason, incoming.chat_id
            )

"""Discord messages in, streamed replies out: the Cog that decides who gets an answer.

DMs are always answered; in server channels the bot answers only when @mentioned or replied
to (DISCORD_TRIGGERS), in the allowed channels. Replies stream through the shared
ReplyRenderer (label first, then throttled edits, split at Discord's 2000 characters).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from adapters.discord.journal import attach_corrections
from adapters.streaming import RateLimited, RenderLimits, ReplyRenderer
from chat import texts
from core.types import IncomingMessage

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)

PLATFORM = "discord"
MAX_MESSAGE_CHARS = 2000

# Nothing the bot sends may ping anyone: the text comes from a language model.
NO_MENTIONS = discord.AllowedMentions.none()

# "/mood 30" typed and sent as text (Telegram's rule for a bot command: "/" and a word).
_TYPED_COMMAND = re.compile(r"/[A-Za-z0-9_]")

CONTENT_INTENT_HINT = (
    "Discord delivered a message with no text, attachments or embeds: the Message Content "
    "intent is probably disabled for this bot. Enable it in the Discord developer portal "
    "(your application > Bot > Privileged Gateway Intents > Message Content Intent)."
)


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


class ChatCog(commands.Cog):
    def __init__(self, bot: commands.Bot, adapter: DiscordAdapter) -> None:
        self.bot = bot
        self.adapter = adapter
        self.config = adapter.config
        self._warned_content_intent = False
        self._limits = RenderLimits(MAX_MESSAGE_CHARS, edit_interval_s=self.config.edit_interval_s)

    def _me(self) -> discord.ClientUser | None:
        return self.bot.user

    def _channel_allowed(self, channel: object) -> bool:
        allowed = self.config.allowed_channel_ids
        # A thread inherits its parent channel's permission.
        ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
        return not allowed or bool(ids & allowed)

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

    @commands.Cog.listener()
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
        if not self.adapter.track():
            return
        sink = _ChannelSink(message)
        try:
            await self._answer(message, sink)
        except (discord.HTTPException, RateLimited) as error:
            log.warning("could not reply in Discord channel %s: %s", message.channel.id, error)

    async def _answer(self, message: discord.Message, sink: _ChannelSink) -> None:
        if not self.adapter.user_allowed(message.author.id):
            await sink.send(texts.NOT_ALLOWED)
            return
        text = self._text_of(message)
        if _TYPED_COMMAND.match(text):
            # Sent as text instead of picked from the / menu: a command, not a mood message.
            await sink.send(texts.PICK_FROM_MENU)
            return
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
        incoming = IncomingMessage(
            PLATFORM, str(message.author.id), str(message.channel.id), text, str(message.id)
        )
        renderer: ReplyRenderer[discord.Message] = ReplyRenderer(sink, self._limits)
        # aclosing: if stop() cancels us mid-reply, the engine stream (and its lock) is released.
        async with contextlib.aclosing(self.adapter.service.handle(incoming)) as events:
            try:
                result = await renderer.render(events)
            except discord.Forbidden as error:
                # The user closed their DMs (or the bot lost the channel) mid-reply. The message
                # was received, so it runs to the end: mood event stored, inbox row done.
                log.warning("Discord channel %s refused the reply to message %s (%s): "
                            "stored, not shown", incoming.chat_id, message.id, error)  # fmt: skip
                async for _ in events:
                    pass
                return
        if result.failure is not None:
            log.info(
                "Discord reply failed (%s) in channel %s", result.failure.reason, incoming.chat_id
            )
        elif result.sentiment is not None and result.first is not None:
            # Stored by now (ReplyDone comes after the store), so the buttons find the event.
            await attach_corrections(result.first, str(message.id), result.sentiment)

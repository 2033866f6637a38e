"""Discord messages in, streamed replies out: the Cog that decides who gets an answer.

DMs are always answered; in server channels the bot answers only when @mentioned or replied
to (DISCORD_TRIGGERS), in the allowed channels. Replies stream through the shared
ReplyRenderer (label first, then throttled edits, split at Discord's 2000 characters).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord.ext import commands

from adapters.discord.journal import attach_corrections
from adapters.resume import answer_late
from adapters.streaming import Messages, RateLimited, RenderLimits, ReplyRenderer, Transient
from engine.chat import texts
from engine.types import IncomingMessage, MessageKey, ReplyMessages, Unfinished

if TYPE_CHECKING:
    from adapters.discord.host import DiscordHost

log = logging.getLogger(__name__)

PLATFORM = "discord"
# Catching up after downtime (ChatCog._catch_up): per chat, the messages since the bot was
# last there are read newest first, at most CATCH_UP_READ of them, and of those addressed to
# the bot the newest CATCH_UP_MAX are answered, oldest first; how many were left is logged.
CATCH_UP_MAX = 20
CATCH_UP_READ = 500
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
    """Turn a 429 that discord.py did not wait out itself into the renderer's RateLimited, and
    a 5xx, timeout or reset connection it gave up on into Transient (retried again).

    discord.py retries 429s in its HTTP layer, but raises when the response lacks the `Via`
    header (it assumes a Cloudflare ban) or exceeds max_ratelimit_timeout.
    """
    try:
        yield
    except discord.RateLimited as error:
        raise RateLimited(error.retry_after) from error
    except discord.HTTPException as error:
        if error.status >= 500:
            raise Transient(f"{error.status} {error.text}") from error
        if error.status != 429:
            raise
        raise RateLimited(_retry_after(error)) from error
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise Transient(repr(error)) from error


def _retry_after(error: discord.HTTPException) -> float:
    header = getattr(error.response, "headers", {}).get("Retry-After")
    try:
        return max(float(header), 0.0) if header is not None else 1.0
    except ValueError:
        return 1.0


# A reply message: sent (Message) or, after a restart, known by its id only (PartialMessage).
Reply = discord.Message | discord.PartialMessage


class _ChannelSink:
    """Where one reply goes: a channel, the first message quoting `quote` when given."""

    keyed_sends = True  # the key is the message nonce, enforced

    def __init__(
        self, channel: discord.abc.Messageable, quote: discord.MessageReference | None
    ) -> None:
        self._channel = channel
        self._quote = quote

    @classmethod
    def answering(cls, source: discord.Message) -> _ChannelSink:
        # In a busy channel the first message quotes the one it answers; a DM needs no quote.
        # fail_if_not_exists=False: if the question was deleted, answer anyway.
        quote = None
        if not isinstance(source.channel, discord.DMChannel):
            quote = source.to_reference(fail_if_not_exists=False)
        return cls(source.channel, quote)

    async def send(self, text: str, key: str | None = None) -> Reply:
        # `key` goes out as the message's nonce, which discord.py sends with enforce_nonce:
        # Discord answers a repeat within minutes with the message it already created, so a
        # send repeated after a lost answer or a restart posts nothing twice.
        nonce: str | int = key if key is not None else secrets.randbits(63)
        async with _platform_errors():
            if self._quote is not None:
                sent = await self._channel.send(
                    text, reference=self._quote, allowed_mentions=NO_MENTIONS, nonce=nonce
                )
            else:
                sent = await self._channel.send(text, allowed_mentions=NO_MENTIONS, nonce=nonce)
        self._quote = None
        return sent

    async def edit(self, handle: Reply, text: str) -> None:
        async with _platform_errors():
            await handle.edit(content=text, allowed_mentions=NO_MENTIONS)

    async def delete(self, handle: Reply) -> None:
        try:
            await handle.delete()
        except discord.HTTPException as error:
            # Left showing an older text: untidy, never a lost answer.
            log.warning("could not delete a Discord reply message no longer needed: %s", error)

    async def typing(self) -> None:
        # Awaiting (not entering) typing() sends one indicator; the renderer renews it.
        await self._channel.typing()


class ChatCog(commands.Cog):
    def __init__(self, bot: commands.Bot, adapter: DiscordHost) -> None:
        self.bot = bot
        self.adapter = adapter
        self.config = adapter.config
        self._warned_content_intent = False
        self._limits = RenderLimits(MAX_MESSAGE_CHARS, edit_interval_s=self.config.edit_interval_s)
        self._resumed = False
        self._catching_up: dict[str, asyncio.Task[None]] = {}  # by chat id

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
        if self._answerable(message) and self.adapter.track():
            await self._answer_or_log(message, _ChannelSink.answering(message))

    def _answerable(self, message: discord.Message) -> bool:
        author, me = message.author, self._me()
        # Bots include this one; answering them could loop forever.
        if author.bot or message.webhook_id is not None or (me is not None and author.id == me.id):
            return False
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return False  # joins, pins, thread notices…
        return isinstance(message.channel, discord.DMChannel) or (
            self._channel_allowed(message.channel) and self._addressed(message)
        )

    async def _answer_or_log(
        self, message: discord.Message, sink: _ChannelSink, note: str = ""
    ) -> None:
        try:
            await self._answer(message, sink, note)
        except (discord.HTTPException, RateLimited, Transient) as error:
            log.warning("could not reply in Discord channel %s: %s", message.channel.id, error)

    async def _answer(self, message: discord.Message, sink: _ChannelSink, note: str = "") -> None:
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
            PLATFORM, str(message.author.id), str(message.channel.id), text, str(message.id),
            private=isinstance(message.channel, discord.DMChannel),  # a support note only there
        )  # fmt: skip
        renderer = self._renderer(sink, incoming.key, note=note)
        # aclosing: if stop() cancels us mid-reply, the engine stream (and its lock) is released.
        answer = self.adapter.service.handle(incoming, confirm=True)
        async with contextlib.aclosing(answer) as events:
            try:
                result = await renderer.render(events)
            except discord.Forbidden as error:
                # The user closed their DMs (or the bot lost the channel) mid-reply. The message
                # was received, so it runs to the end: mood event stored, inbox row done.
                log.warning("Discord channel %s refused the reply to message %s (%s): "
                            "stored, not shown", incoming.chat_id, message.id, error)  # fmt: skip
                async for _ in events:
                    pass
                await self.adapter.service.delivered(incoming.key)
                return
        if result.failure is not None:
            log.info(
                "Discord reply failed (%s) in channel %s", result.failure.reason, incoming.chat_id
            )
        elif result.sentiment is not None and result.first is not None:
            # Stored by now (ReplyDone comes after the store), so the buttons find the event.
            await attach_corrections(result.first, str(message.id), result.sentiment)

    def _renderer(
        self,
        sink: _ChannelSink,
        key: MessageKey | None,
        begun: Messages[Reply] | None = None,
        note: str = "",
    ) -> ReplyRenderer[Reply]:
        service = self.adapter.service

        async def posted(messages: Messages[Reply]) -> None:
            if key is not None:
                await service.note_reply(key, ReplyMessages(
                    tuple(str(reply.id) for reply in messages.chunks),
                    None if messages.support is None else str(messages.support.id),
                    messages.sending,
                ))  # fmt: skip

        async def delivered() -> None:
            await service.delivered(key)

        return ReplyRenderer(sink, self._limits, existing=begun, note=note,
                             on_messages=posted, on_delivered=delivered)  # fmt: skip

    # --- after a restart ----------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """READY comes with every new gateway session: at start-up, and after every full
        re-login (a session Discord would not resume; a resumed one gets RESUMED and the
        events it missed). Messages sent while no session was up are never replayed, so
        each READY catches up on every recent chat. Answering the messages a dead process
        recorded and never answered (adapters/resume.py) starts once: it repeats by itself
        every RESUME_INTERVAL_S."""
        if not self._resumed:
            self._resumed = True
            await self.adapter.resumer.sweep(asyncio.create_task)
            self.adapter.resumer.start(asyncio.create_task)
        for mark in await self.adapter.service.latest_messages(PLATFORM):
            if mark.chat_id in self._catching_up:
                continue  # a READY soon after another: that chat's catch-up is still running
            task = asyncio.create_task(self._catch_up(mark))
            self._catching_up[mark.chat_id] = task
            task.add_done_callback(functools.partial(self._caught_up, mark.chat_id))

    def _caught_up(self, chat_id: str, _: asyncio.Task[None]) -> None:
        self._catching_up.pop(chat_id, None)

    async def _catch_up(self, mark: MessageKey) -> None:
        """Answer what was sent in this chat after `mark` (the newest message recorded there,
        which /forget does not move back) while no bot session was connected: Discord does
        not replay it (Telegram keeps undelivered updates for a day). The newest CATCH_UP_MAX
        messages addressed to the bot, oldest first, each as on_message would (the inbox
        skips one a live process saw), quoted and noted as late; the older ones are logged."""
        if not self.adapter.track():  # stop() waits for it like for any reply
            return
        try:
            channel = self.bot.get_channel(int(mark.chat_id)) or await self.bot.fetch_channel(
                int(mark.chat_id)
            )
            if not isinstance(channel, discord.abc.Messageable):
                return
            after = discord.Object(int(mark.message_id))
            read = [m async for m in channel.history(after=after, limit=CATCH_UP_READ,
                                                    oldest_first=False)]  # fmt: skip
        except (discord.HTTPException, ValueError) as error:
            log.info("could not read Discord channel %s to catch up: %s", mark.chat_id, error)
            return
        missed = [message for message in read if self._answerable(message)]
        if len(missed) > CATCH_UP_MAX:
            log.warning("Discord channel %s: %d messages to the bot came while it was offline; "
                        "answering the latest %d, skipped %d older ones", mark.chat_id,
                        len(missed), CATCH_UP_MAX, len(missed) - CATCH_UP_MAX)  # fmt: skip
        if len(read) == CATCH_UP_READ:
            log.warning("Discord channel %s: read only the latest %d messages since the "
                        "bot was last there; older ones were not read", mark.chat_id,
                        len(read))  # fmt: skip
        for message in reversed(missed[:CATCH_UP_MAX]):
            quote = message.to_reference(fail_if_not_exists=False)
            await self._answer_or_log(message, _ChannelSink(message.channel, quote),
                                      texts.LATE_NOTE)  # fmt: skip

    async def resume(self, pending: Unfinished) -> None:
        if not self.adapter.track():
            return
        key = pending.key
        channel = self.bot.get_partial_messageable(int(key.chat_id))
        # Quoted, since the answer comes late: the message it answers may be far up.
        quote = discord.MessageReference(
            message_id=int(key.message_id), channel_id=channel.id, fail_if_not_exists=False
        )
        sink = _ChannelSink(channel, quote)

        def renderer(begun: ReplyMessages, note: str, doubt: str) -> ReplyRenderer[Reply]:
            # No `doubt`: a send under way is repeated under its nonce, which finds its message.
            chunks = tuple(channel.get_partial_message(int(ref)) for ref in begun.chunks)
            support = None
            if begun.support is not None:
                support = channel.get_partial_message(int(begun.support))
            return self._renderer(sink, key, Messages(chunks, support, begun.sending), note)

        failed = (discord.HTTPException, RateLimited, Transient)
        result = await answer_late(
            self.adapter.service, pending, renderer, discord.Forbidden, failed
        )
        if result is not None and result.sentiment is not None and result.first is not None:
            await attach_corrections(result.first, key.message_id, result.sentiment)

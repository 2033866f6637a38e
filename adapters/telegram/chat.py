"""Reading Telegram messages (is this for us? what text?) and writing replies into a chat.

Kept apart from the adapter's lifecycle and command handling so each reads in one sitting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import warnings
from dataclasses import dataclass
from datetime import timedelta

from telegram import (
    Bot,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from adapters.streaming import RateLimited, Transient
from adapters.telegram.config import TelegramConfig

log = logging.getLogger(__name__)

_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)  # previews would jump around while editing
_SAY_RETRIES = 3


def leading_command(message: Message) -> tuple[str, str | None] | None:
    """`/name@target args` → (name, target or None); None when the text is not a command."""
    entities = message.entities
    if not message.text or not entities:
        return None
    first = entities[0]
    if first.type != MessageEntity.BOT_COMMAND or first.offset != 0:
        return None
    name, _, target = message.parse_entity(first)[1:].partition("@")
    return name.lower(), target or None


def addressed_text(
    message: Message, bot_id: int, bot_username: str, config: TelegramConfig
) -> str | None:
    """The text to answer (the bot's @mention removed), or None when the bot should stay out."""
    username = bot_username.lower()
    text = message.text or message.caption or ""
    if message.chat.type == ChatType.PRIVATE:
        return text
    if config.group_reply_on_mention:
        kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        found = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
        mine = [
            shown
            for entity, shown in found.items()
            if (entity.type == MessageEntity.MENTION and shown[1:].lower() == username)
            or (entity.user is not None and entity.user.id == bot_id)
        ]
        if mine:
            for shown in mine:
                text = text.replace(shown, " ", 1)
            # "@bot, how are you" should reach the model as "how are you".
            return re.sub(r"[ \t]{2,}", " ", text).strip().lstrip(",:，：").strip()
    if config.group_reply_on_reply:
        replied = message.reply_to_message
        # In forum topics every message "replies" to the topic's first message; that is not
        # a reply to the bot even if the bot opened the topic.
        if (
            replied is not None
            and replied.from_user is not None
            and replied.from_user.id == bot_id
            and replied.forum_topic_created is None
        ):
            return text
    return None


def from_human(message: Message | None) -> bool:
    # Anonymous group admins arrive as the GroupAnonymousBot, which is_bot too.
    return message is not None and message.from_user is not None and not message.from_user.is_bot


def _retry_seconds(error: RetryAfter) -> float:
    # PTB 22 warns that retry_after will become a timedelta; accept both, without the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# --- writing to a chat --------------------------------------------------------------------


class Outbox:
    """Sends into one chat: as a reply when `reply_to` is set, in a forum topic if given."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        private: bool,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.private = private
        self.thread_id = thread_id
        # The user may delete their message before the reply is ready; reply anyway.
        self._reply = (
            None
            if reply_to is None
            else ReplyParameters(reply_to, allow_sending_without_reply=True)
        )

    @classmethod
    def answering(cls, bot: Bot, message: Message) -> Outbox:
        """Where to answer `message`: in groups as a reply to it, so the thread is clear."""
        private = message.chat.type == ChatType.PRIVATE
        return cls(
            bot,
            message.chat_id,
            private=private,
            thread_id=message.message_thread_id if message.is_topic_message else None,
            reply_to=None if private else message.message_id,
        )

    @classmethod
    def resuming(cls, bot: Bot, chat_id: int, message_id: int, origin: str) -> Outbox:
        """Where to answer a message recorded before a restart (`origin()` of its outbox):
        always as a reply to it, since the answer comes late and others may have followed."""
        try:
            where = json.loads(origin) if origin else {}
        except ValueError:
            where = {}
        thread = where.get("thread") if isinstance(where, dict) else None
        private = bool(where.get("private", True)) if isinstance(where, dict) else True
        return cls(
            bot,
            chat_id,
            private=private,
            thread_id=thread if isinstance(thread, int) else None,
            reply_to=message_id,
        )

    def origin(self) -> str:
        """What `resuming` needs to answer in the same place, kept with the message."""
        return json.dumps({"private": self.private, "thread": self.thread_id})

    async def send(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        return await self.bot.send_message(
            self.chat_id,
            text,
            reply_parameters=self._reply,
            message_thread_id=self.thread_id,
            reply_markup=markup,
            link_preview_options=_NO_PREVIEW,
        )

    async def say(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        """send(), waiting out flood control: for one-off answers (the renderer has its own)."""
        for _ in range(_SAY_RETRIES):
            try:
                return await self.send(text, markup)
            except RetryAfter as error:
                await asyncio.sleep(_retry_seconds(error))
        return await self.send(text, markup)

    async def send_photo(self, png: bytes) -> Message:
        return await self.bot.send_photo(
            self.chat_id, png, reply_parameters=self._reply, message_thread_id=self.thread_id
        )


@dataclass
class Posted:
    """A sent message; mutable because a deleted message is replaced by a new one."""

    message_id: int


class TelegramSink:
    """adapters.streaming.MessageSink over plain-text Telegram messages (no parse_mode, so
    model output can never fail with "can't parse entities").

    Timeouts, 5xx answers and reset connections (PTB's NetworkError other than BadRequest)
    are Transient: retried. Telegram has no idempotency key for sendMessage, so a send that
    reached Telegram but whose answer was lost is posted twice, and a message made as the
    process died cannot be found again: the renderer records each send as under way first,
    and a reply after such a retry or restart says a cut-off copy may show. editMessageText
    is safe to repeat ("message is not modified" is success). See docs/reliability.md."""

    keyed_sends = False

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def send(self, text: str, key: str | None = None) -> Posted:
        try:
            message = await self.outbox.send(text)
        except RetryAfter as error:
            raise RateLimited(_retry_seconds(error)) from error
        except BadRequest:
            raise
        except NetworkError as error:
            raise Transient(str(error)) from error
        return Posted(message.message_id)

    async def edit(self, handle: Posted, text: str) -> None:
        try:
            await self.outbox.bot.edit_message_text(
                text,
                chat_id=self.outbox.chat_id,
                message_id=handle.message_id,
                link_preview_options=_NO_PREVIEW,
            )
        except RetryAfter as error:
            raise RateLimited(_retry_seconds(error)) from error
        except BadRequest as error:
            reason = error.message.lower()
            if "message is not modified" in reason:
                return
            if "message to edit not found" in reason or "message can't be edited" in reason:
                # Someone deleted the message mid-stream; keep the text, in a new message.
                handle.message_id = (await self.send(text)).message_id
                return
            raise
        except NetworkError as error:
            raise Transient(str(error)) from error

    async def delete(self, handle: Posted) -> None:
        try:
            await self.outbox.bot.delete_message(self.outbox.chat_id, handle.message_id)
        except TelegramError as error:
            # Left showing an older text: untidy, never a lost answer.
            log.warning("telegram: could not delete a reply message no longer needed: %s", error)

    async def typing(self) -> None:
        await self.outbox.bot.send_chat_action(
            self.outbox.chat_id, ChatAction.TYPING, message_thread_id=self.outbox.thread_id
        )

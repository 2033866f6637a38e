"""Telegram adapter: Bot API updates in, engine replies out, via python-telegram-bot.

A thin translator. Private chats: every text is answered. Groups: only messages that
@mention the bot or reply to one of its messages (each trigger configurable), answered as a
reply. The reply streams through adapters.streaming.ReplyRenderer with the sink from
adapters.telegram.chat; commands run through engine.chat.commands and are rendered here.

Polling (or, with TELEGRAM_WEBHOOK_URL, the webhook server) runs inside the caller's event
loop (initialize/start/start_polling rather than run_polling, which would own the loop), so
Telegram, Discord and the console share one. A message the bot will answer is recorded in the
inbox as its update enters PTB's queue, before Telegram is told it arrived
(adapters/telegram/arrival.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, MessageLimit
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    Updater,
    filters,
)

from adapters.inflight import InFlight
from adapters.resume import Resumer, answer_late
from adapters.streaming import Messages, RateLimited, RenderLimits, ReplyRenderer, Transient
from adapters.telegram.arrival import RecordingQueue
from adapters.telegram.chat import (
    Outbox,
    Posted,
    TelegramSink,
    addressed_text,
    from_human,
    leading_command,
)
from adapters.telegram.checkin import TelegramCheckins
from adapters.telegram.config import TelegramConfig
from adapters.telegram.digest import TelegramDigest
from adapters.telegram.journal import attach_corrections, send_files
from adapters.telegram.journal import press as press_correction
from engine.chat import texts
from engine.chat.commands import Caller, Commands
from engine.chat.digest import DigestRun
from engine.chat.service import ChatService
from engine.types import IncomingMessage, MessageKey, ReplyMessages, Unfinished, UserKey

__all__ = ["TelegramAdapter", "TelegramAuthError", "TelegramConfig"]

log = logging.getLogger(__name__)

PLATFORM = "telegram"

# A confirmation button: "<command>:<yes|no>:<asker's user id>".
_CONFIRM_DATA = re.compile(r"^(\w+):(yes|no):(\d+)$")
_ALLOWED_UPDATES = ["message", "callback_query"]

Context = ContextTypes.DEFAULT_TYPE


class TelegramAuthError(RuntimeError):
    """Telegram refused the token. Raised instead of PTB's InvalidToken, whose text holds it."""


class _Application(Application[Any, Any, Any, Any, Any, Any]):
    """PTB's Application, less one leak: after every update it notes the user's and the chat's
    id for a persistence to save, and only a persistence's run ever clears those sets. The bot
    keeps what it keeps in its own database and gives PTB no persistence, so without this the
    sets held every id that ever wrote, for as long as the process ran."""

    def _mark_for_persistence_update(self, *, update: object = None, job: Any = None) -> None:
        if self.persistence is not None:
            super()._mark_for_persistence_update(update=update, job=job)


class TelegramAdapter:
    name = "telegram"

    def __init__(self, service: ChatService, config: TelegramConfig) -> None:
        self.service = service
        self.config = config
        self._app: Application | None = None
        # The started app's bot, for recording arrivals; kept while stop() drains the updater
        # (which clears _app first), since updates may still be queued meanwhile.
        self._bot: Bot | None = None
        self._inflight = InFlight("telegram")
        self.commands = Commands(service)
        self._redactor = _TokenRedactor(config.token)
        self._resumer = Resumer(service, PLATFORM, self._resume)
        self.digest = TelegramDigest(service)
        self.checkins = TelegramCheckins(service)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._app is not None:
            raise RuntimeError("the Telegram adapter is already started")
        _keep_token_out_of_logs(self._redactor, install=True)
        app = (
            ApplicationBuilder()
            .application_class(_Application)
            .token(self.config.token)
            .base_url(self.config.api_base_url)
            .base_file_url(self.config.api_file_url)
            .concurrent_updates(True)  # one user's long reply must not hold up the others
            .update_queue(RecordingQueue(self._record))
            .build()
        )
        self._app, self._bot = app, app.bot
        only_messages = filters.UpdateType.MESSAGE  # not edited messages, not channel posts
        names = [name for name, _ in Commands.menu()]
        app.add_handler(CommandHandler(names, self._on_command, filters=only_messages))
        app.add_handler(MessageHandler(only_messages, self._on_message))
        app.add_handler(CallbackQueryHandler(self._on_callback))
        app.add_error_handler(self._on_error)
        self.digest.schedule(app.job_queue)  # runs once app.start() has started the JobQueue
        self.checkins.schedule(app.job_queue)
        try:
            await app.initialize()  # getMe: fails here on a bad token or unreachable API
            await self._set_commands(app.bot)
            await app.start()
            # Before polling: messages left unanswered by a previous run queue for their
            # users' turns ahead of anything new.
            await self._resumer.sweep(app.create_task)
            self._resumer.start(app.create_task)
            assert app.updater is not None  # ApplicationBuilder always builds one
            if self.config.webhook:
                await self._start_webhook(app.updater)
            else:
                await app.updater.start_polling(
                    timeout=timedelta(seconds=self.config.poll_timeout_s),
                    allowed_updates=_ALLOWED_UPDATES,
                    bootstrap_retries=3,
                    error_callback=_polling_failed,
                )
        except BaseException as error:
            await self.stop()
            if isinstance(error, InvalidToken):
                raise TelegramAuthError(
                    "Telegram rejected TELEGRAM_BOT_TOKEN; check it with @BotFather"
                ) from None
            redacted = self._redactor.redact(str(error))
            if redacted != str(error):
                raise RuntimeError(f"Telegram adapter failed to start: {redacted}") from None
            raise
        mode = f"webhook {self.config.webhook_url}" if self.config.webhook else "polling"
        log.info("telegram: %s as @%s", mode, app.bot.username)

    async def _start_webhook(self, updater: Updater) -> None:
        """Serve the webhook (PTB's tornado server) and point Telegram at it. Every replica
        sets the same URL and secret, so starting one more changes nothing for the others;
        stopping leaves the webhook set, for the replicas still running."""
        host, port = self.config.listen_address
        await updater.start_webhook(
            listen=host,
            port=port,
            url_path=self.config.webhook_path,
            webhook_url=self.config.webhook_url,
            secret_token=self.config.webhook_secret,  # requests without it get a 403
            allowed_updates=_ALLOWED_UPDATES,
            bootstrap_retries=3,
        )
        log.info("telegram: webhook server listening on %s:%d/%s", host, port,
                 self.config.webhook_path)  # fmt: skip

    async def stop(self) -> None:
        """Stop polling, let in-flight replies finish (bounded), then close. Never raises."""
        app, self._app = self._app, None
        if app is None:
            return
        await self._resumer.stop()
        updater = app.updater
        if updater is not None and updater.running:
            await _logged("stopping the updater", updater.stop())
        if app.running:
            await self._inflight.finish(self.config.stop_grace_s)
            await _logged("stopping the application", app.stop())
        await _logged("shutting down", app.shutdown())
        # After a failed initialize() the Application skips this, but the HTTP clients are open.
        await _logged("closing the HTTP clients", app.bot.shutdown())
        self._bot = None
        _keep_token_out_of_logs(self._redactor, install=False)

    async def send_digests(self) -> DigestRun:
        """Send this week's digest now (what the weekly job does)."""
        if self._app is None:
            raise RuntimeError("the Telegram adapter is not started")
        return await self.digest.send_now(self._app.bot)

    async def _set_commands(self, bot: Bot) -> None:
        commands = [BotCommand(name, about) for name, about in Commands.menu()]
        try:
            await bot.set_my_commands(commands)
        except TelegramError as error:
            # Only the command menu is missing; the commands themselves still work.
            log.warning("telegram: setMyCommands failed: %s", error)

    async def _on_error(self, update: object, context: Context) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        if isinstance(context.error, Forbidden):
            # Blocked by the user or removed from the group: nothing to fix on our side.
            log.info("telegram: update %s: %s", update_id, context.error)
            return
        log.error("telegram: update %s failed", update_id, exc_info=context.error)

    # --- messages -----------------------------------------------------------------------------

    def _allowed(self, user_id: int) -> bool:
        return not self.config.allowed_user_ids or user_id in self.config.allowed_user_ids

    def _to_answer(self, message: Message | None, bot: Bot) -> IncomingMessage | None:
        """The message as the chat service gets it when the bot will answer it with a reply;
        None for what gets a note, a command's answer or silence (see _on_message)."""
        if message is None or not from_human(message) or message.text is None:
            return None
        if leading_command(message) is not None:
            return None
        assert message.from_user is not None
        text = addressed_text(message, bot.id, bot.username or "", self.config)
        if text is None or not self._allowed(message.from_user.id):
            return None
        return IncomingMessage(
            PLATFORM,
            str(message.from_user.id),
            str(message.chat_id),
            text,
            message_id=str(message.message_id),  # unique within its chat: seen once
            origin=Outbox.answering(bot, message).origin(),
            private=message.chat.type == ChatType.PRIVATE,  # a support note only there
        )

    async def _record(self, update: Update) -> None:
        """Record the update's message, if the bot will answer it, before PTB confirms the
        update to Telegram (RecordingQueue). Edits, channel posts, button presses, commands
        and chatter the bot stays out of are not recorded.

        Never raises: PTB's polling loop would die of it. A failure here only leaves the
        recording to the handler, as before (ChatService.receive logs its own)."""
        if self._bot is None:
            return
        try:
            incoming = self._to_answer(update.message, self._bot)
            if incoming is not None:
                await self.service.receive([incoming])
        except Exception:
            log.exception("telegram: could not record update %s on arrival", update.update_id)

    async def _on_message(self, update: Update, context: Context) -> None:
        message = update.message
        if message is None or not from_human(message):
            return
        if message.text is None and message.effective_attachment is None:
            return  # service messages: joins, pins, title changes…
        assert message.from_user is not None
        outbox = Outbox.answering(context.bot, message)
        command = leading_command(message)
        if command is not None:
            # Known commands never get here (their CommandHandler took them). In groups a bare
            # or foreign /command may be meant for another bot.
            _, target = command
            me = (context.bot.username or "").lower()
            if outbox.private or (target is not None and target.lower() == me):
                await self._answer(outbox, message.from_user.id, texts.UNKNOWN_COMMAND)
            return
        text = addressed_text(message, context.bot.id, context.bot.username or "", self.config)
        if text is None:
            return
        if not self._allowed(message.from_user.id):
            await outbox.say(texts.NOT_ALLOWED)
            return
        if message.text is None:
            await outbox.say(texts.NOT_TEXT)
            return
        incoming = self._to_answer(message, context.bot)
        assert incoming is not None  # the same checks as above, which it passed
        await self._stream_reply(outbox, message, incoming)

    async def _stream_reply(
        self, outbox: Outbox, message: Message, incoming: IncomingMessage
    ) -> None:
        if not self._inflight.track():
            return  # stopping
        renderer = self._renderer(outbox, incoming.key, doubt=texts.cut_off_copy(incoming.text))
        # aclosing: if stop() cancels us, the chat service still releases this user's lock.
        async with contextlib.aclosing(self.service.handle(incoming, confirm=True)) as events:
            try:
                result = await renderer.render(events)
            except Forbidden as error:
                # Blocked by the user (or removed from the group) mid-reply. The message was
                # received, so it still runs to the end: its mood event is stored and its inbox
                # row done, rather than left as unfinished work to be answered again.
                log.warning(
                    "telegram: chat %s refused the reply to message %s (%s): stored, not shown",
                    message.chat_id,
                    message.message_id,
                    error,
                )
                async for _ in events:
                    pass
                await self.service.delivered(incoming.key)
                return
        if result.failure is not None:
            log.info("telegram: reply failed (%s)", result.failure.reason)
        elif result.sentiment is not None and result.first is not None:
            # Stored by now (ReplyDone comes after the store), so the buttons find the event.
            await attach_corrections(outbox, result.first, str(message.message_id),
                                     result.sentiment)  # fmt: skip

    def _renderer(
        self,
        outbox: Outbox,
        key: MessageKey | None,
        begun: ReplyMessages | None = None,
        note: str = "",
        doubt: str = "",
    ) -> ReplyRenderer[Posted]:
        interval = self.config.edit_interval_s
        if not outbox.private:
            interval = self.config.group_edit_interval_s
        limits = RenderLimits(max_chars=MessageLimit.MAX_TEXT_LENGTH, edit_interval_s=interval)

        async def posted(messages: Messages[Posted]) -> None:
            if key is not None:
                await self.service.note_reply(key, ReplyMessages(
                    tuple(str(sent.message_id) for sent in messages.chunks),
                    None if messages.support is None else str(messages.support.message_id),
                    messages.sending,
                ))  # fmt: skip

        async def delivered() -> None:
            await self.service.delivered(key)

        existing = None
        if begun is not None:
            support = None if begun.support is None else Posted(int(begun.support))
            chunks = tuple(Posted(int(ref)) for ref in begun.chunks)
            existing = Messages(chunks, support, begun.sending)
        return ReplyRenderer(TelegramSink(outbox), limits, existing=existing, note=note,
                             doubt=doubt, on_messages=posted,
                             on_delivered=delivered)  # fmt: skip

    # --- after a restart ----------------------------------------------------------------------

    async def _resume(self, pending: Unfinished) -> None:
        """Answer a message a dead process recorded and never answered (it crashed, or was
        stopped mid-reply; Telegram will not send it again: its update was confirmed)."""
        if self._app is None:
            return
        key = pending.key
        outbox = Outbox.resuming(self._app.bot, int(key.chat_id), int(key.message_id),
                                 pending.message.origin)  # fmt: skip
        # Whether the chat is private is kept in the origin, not in the store's message.
        pending = replace(pending, message=replace(pending.message, private=outbox.private))
        if not self._inflight.track():
            return

        def renderer(begun: ReplyMessages, note: str, doubt: str) -> ReplyRenderer[Posted]:
            return self._renderer(outbox, key, begun, note, doubt)

        failed = (TelegramError, RateLimited, Transient)
        result = await answer_late(self.service, pending, renderer, Forbidden, failed)
        if result is not None and result.sentiment is not None and result.first is not None:
            await attach_corrections(outbox, result.first, key.message_id, result.sentiment)

    async def _answer(self, outbox: Outbox, user_id: int, text: str) -> None:
        await outbox.say(text if self._allowed(user_id) else texts.NOT_ALLOWED)

    # --- commands -----------------------------------------------------------------------------

    async def _command_preamble(self, update: Update, context: Context) -> Outbox | None:
        """The outbox to answer into, or None when the command is to be ignored or refused."""
        message = update.message
        if message is None or not from_human(message):
            return None
        outbox = Outbox.answering(context.bot, message)
        assert message.from_user is not None
        if not self._allowed(message.from_user.id):
            await outbox.say(texts.NOT_ALLOWED)
            return None
        return outbox

    async def _on_command(self, update: Update, context: Context) -> None:
        outbox = await self._command_preamble(update, context)
        if outbox is None or update.message is None:
            return
        command = leading_command(update.message)
        assert command is not None  # CommandHandler matched it
        # Keyed by the caller's own id, so in a group nobody sees anyone else's data.
        caller = Caller(_user_key(update), str(outbox.chat_id), private=outbox.private,
                        own_chat=outbox.private)  # fmt: skip
        result = await self.commands.run(command[0], caller, " ".join(context.args or ()))
        markup = None
        if result.confirm is not None:
            # The asker's id rides in the button data, so only they can confirm, even after
            # a restart and even in a group where everyone sees the buttons.
            data = f"{result.confirm.action}:{{}}:{caller.user.user_id}"
            markup = InlineKeyboardMarkup([[
                InlineKeyboardButton(result.confirm.yes, callback_data=data.format("yes")),
                InlineKeyboardButton(result.confirm.no, callback_data=data.format("no")),
            ]])  # fmt: skip
        await outbox.say(result.text, markup=markup)
        if result.chart_png is not None:
            try:
                await outbox.send_photo(result.chart_png)
            except TelegramError:
                # The summary went out; a missing picture is not worth failing the command.
                log.exception("telegram: sending the mood chart failed")
        if result.files:
            try:
                await send_files(outbox, result.files)
            except TelegramError:
                log.exception("telegram: sending the export failed")

    async def _on_callback(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None:
            return
        notice: str | None = None
        alert = False
        try:
            if Commands.is_correction(query.data or ""):
                if self._allowed(query.from_user.id):
                    notice, alert = await press_correction(query, self.commands)
                else:
                    notice, alert = texts.NOT_ALLOWED, True
                return
            match = _CONFIRM_DATA.match(query.data or "")
            if match is None or not self.commands.asks_first(match.group(1)):
                return
            action, choice, owner = match.groups()
            if str(query.from_user.id) != owner:
                notice, alert = texts.FORGET_NOT_YOURS, True
                return
            chat_id = str(query.message.chat.id) if query.message else owner
            caller = Caller(UserKey(PLATFORM, owner), chat_id)
            result = await self.commands.confirm(action, caller, choice == "yes")
            try:
                await query.edit_message_text(result.text)  # also removes the buttons
            except BadRequest as error:
                if "message is not modified" not in error.message.lower():
                    log.info("telegram: could not edit the /%s prompt: %s", action, error)
                    notice = result.text  # the prompt is gone or too old: say it in a toast
        finally:
            # Always answer, or the user's client shows a spinner on the button for a while.
            await query.answer(notice, show_alert=alert)


def _polling_failed(error: TelegramError) -> None:
    # PTB retries getUpdates by itself (1 s, then 1.5x longer up to 30 s); its default callback
    # would log each transient network error at ERROR with a traceback.
    log.warning("telegram: getUpdates failed, retrying: %s", error)


def _user_key(update: Update) -> UserKey:
    assert update.effective_user is not None
    return UserKey(PLATFORM, str(update.effective_user.id))


async def _logged(what: str, step: Awaitable[object]) -> None:
    try:
        await step
    except Exception:
        log.exception("telegram: %s failed", what)


class _TokenRedactor(logging.Filter):
    """Replaces the token in records, tracebacks included: PTB logs its API URL, which
    carries the token, at DEBUG, and the text of InvalidToken holds it too."""

    def __init__(self, token: str) -> None:
        super().__init__()
        # Case-insensitive: TelegramError capitalize()s its message, lowering the rest.
        self._token = re.compile(re.escape(token), re.IGNORECASE)

    def redact(self, text: str) -> str:
        return self._token.sub("<token>", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's to report
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters use a pre-set exc_text instead of formatting the exception again.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def _guarded_loggers() -> list[logging.Logger]:
    # Logger filters do not apply to records from child loggers, so every PTB logger gets one
    # (PTB creates them all at import time).
    names = [name for name in logging.Logger.manager.loggerDict if name.startswith("telegram")]
    return [logging.getLogger(name) for name in [*names, __name__, "adapters.telegram.chat"]]


def _keep_token_out_of_logs(redactor: _TokenRedactor, install: bool) -> None:
    for logger in _guarded_loggers():
        if install:
            logger.addFilter(redactor)
        else:
            logger.removeFilter(redactor)
    # httpx logs every request URL at INFO (before any filter of ours could see it).
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)

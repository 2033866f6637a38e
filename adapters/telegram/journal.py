"""Telegram's side of the journal (engine/chat/journal.py): correction buttons under a label, their
presses, and /export's files as documents.

The buttons go on the label message once its exchange is stored (the mood event they correct
exists from then on). Their callback data names the message and the tone; the owner check is
the store's, so a press works after a restart and in groups, where everyone sees the buttons.
"""

from __future__ import annotations

import logging

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, TelegramError

from adapters.telegram.chat import Outbox, Posted
from engine.chat.commands import Caller, Commands, CorrectionResult
from engine.chat.journal import ExportFile
from engine.types import Sentiment, UserKey

log = logging.getLogger(__name__)


def correction_markup(message_id: str, sentiment: Sentiment) -> InlineKeyboardMarkup:
    buttons = Commands.correction_buttons(message_id, sentiment.tone)
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in buttons]]
    )


async def attach_corrections(
    outbox: Outbox, label: Posted, message_id: str, sentiment: Sentiment
) -> None:
    """Put the correction buttons under the label message (best effort: without them the
    label still stands, and /wrong still corrects it)."""
    try:
        await outbox.bot.edit_message_reply_markup(
            chat_id=outbox.chat_id,
            message_id=label.message_id,
            reply_markup=correction_markup(message_id, sentiment),
        )
    except TelegramError as error:
        log.info("telegram: could not add the correction buttons: %s", error)


async def press(query: CallbackQuery, commands: Commands) -> tuple[str | None, bool]:
    """Handle a correction button; returns the toast text and whether it is an alert."""
    message = query.message
    if not isinstance(message, Message):
        return None, False  # too old for Telegram to tell us which message: nothing to correct
    caller = Caller(_user(query), str(message.chat.id))
    result = await commands.press_correction(caller, query.data or "")
    if result.label_line is not None:
        await _show_correction(message, result)
        return result.text, False
    return result.text, True  # refused: an alert, so the reason is read


async def _show_correction(message: Message, result: CorrectionResult) -> None:
    assert result.label_line is not None
    _, _, rest = (message.text or "").partition("\n")
    text = f"{result.label_line}\n{rest}" if rest else result.label_line
    try:
        await message.edit_text(text)  # also removes the buttons: it can be corrected once
    except BadRequest as error:
        log.info("telegram: could not show the correction: %s", error)


async def send_files(outbox: Outbox, files: tuple[ExportFile, ...]) -> None:
    for file in files:
        await outbox.bot.send_document(
            outbox.chat_id, file.data, filename=file.name, message_thread_id=outbox.thread_id
        )


def _user(query: CallbackQuery) -> UserKey:
    return UserKey("telegram", str(query.from_user.id))

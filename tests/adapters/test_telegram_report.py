"""/mood report on Telegram, against the fake Bot API: the PDF arrives as a document (its
name, its type) in a private chat; a group is refused with a pointer and gets no file."""

from __future__ import annotations

from adapters.telegram.adapter import TelegramAdapter
from engine.chat import texts
from tests.adapters import test_telegram
from tests.adapters.test_telegram import USER, wait_text
from tests.engine.chat.test_report import pdf_pages
from tests.fakes.telegram_api import GROUP_ID, FakeTelegramAPI, Upload

# The Telegram suite's fixtures: the fake Bot API and an adapter on the scripted engine.
api = test_telegram.api
make_adapter = test_telegram.make_adapter
bot = test_telegram.bot

DRAWING_S = 120.0  # a hang guard: matplotlib's first PDF takes seconds on a loaded machine


async def test_the_report_is_a_pdf_document_in_private_and_refused_in_a_group(
    bot: TelegramAdapter, api: FakeTelegramAPI
) -> None:
    api.private_text(USER, "I am so happy today")
    await wait_text(api, USER, "reply to: I am so happy today")
    api.private_text(USER, "everything went wrong")
    await wait_text(api, USER, "reply to: everything went wrong")

    api.group_text(USER, "/mood report")
    await wait_text(api, GROUP_ID, texts.MOOD_PRIVATE_ONLY)
    api.private_text(USER, "/mood report 14")
    await wait_text(api, USER, texts.report_caption(14, 2), DRAWING_S)
    documents = await api.wait_for(lambda: api.documents, DRAWING_S, what="the report")
    [(chat, data)] = documents
    assert chat == USER  # nothing went to the group
    assert isinstance(data, Upload)
    assert data.filename.startswith("mood-report-")
    assert data.filename.endswith("-14d.pdf")
    assert data.content_type == "application/pdf"
    text = " ".join(pdf_pages(data))
    assert "Mood report" in text
    assert "2 messages: Positive 1 (50%), Neutral 0 (0%), Negative 1 (50%)" in text
    assert "You corrected 0 / 2 labels (0.0%)." in text

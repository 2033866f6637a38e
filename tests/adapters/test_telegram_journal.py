"""The journal on Telegram, end to end against the fake Bot API: correction buttons under
the label (only the author's press counts, once), /export as documents in private only, and
the menu."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from adapters.telegram.adapter import TelegramAdapter
from engine.chat import texts
from tests.adapters import test_telegram
from tests.adapters.test_telegram import OTHER, USER, key, wait_text
from tests.conftest import ScriptedEngine
from tests.fakes.telegram_api import GROUP_ID, FakeTelegramAPI
from tests.support import EPOCH

# The Telegram suite's fixtures: the fake Bot API and an adapter on the scripted engine.
api = test_telegram.api
make_adapter = test_telegram.make_adapter
bot = test_telegram.bot


async def label_with_buttons(api: FakeTelegramAPI, chat_id: int, fragment: str) -> Any:
    """The bot's message showing `fragment`, once its correction buttons are on it."""
    await wait_text(api, chat_id, fragment)

    def found() -> Any:
        return next(
            (
                m
                for m in api.bot_messages(chat_id)
                if fragment in (m.get("text") or "") and m.get("reply_markup")
            ),
            None,
        )

    return await api.wait_for(found, what="the correction buttons")


def buttons(message: Any) -> dict[str, str]:
    """callback data by the tone it offers"""
    row = message["reply_markup"]["inline_keyboard"][0]
    return {b["callback_data"].rsplit(":", 1)[1]: b["callback_data"] for b in row}


async def answers(api: FakeTelegramAPI, count: int) -> list[Any]:
    return await api.wait_for(
        lambda: (calls := api.calls_to("answerCallbackQuery"))[count - 1 :] and calls
    )


async def test_the_author_corrects_a_label_once_and_mood_counts_it(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    sent = api.private_text(USER, "I am so happy today")
    label = await label_with_buttons(api, USER, "reply to: I am so happy today")
    offered = buttons(label)
    assert sorted(offered) == ["negative", "neutral"]  # the other side and neutral
    assert offered["negative"] == f"mood:fix:{sent['message_id']}:negative"

    api.press_button(USER, label, offered["negative"])
    [answer] = await answers(api, 1)
    assert answer.params["text"] == texts.correction_done("positive", "negative")
    shown = await wait_text(api, USER, texts.corrected_line("positive", "negative"))
    assert shown.endswith("reply to: I am so happy today")  # the reply stays
    assert "reply_markup" not in api.bot_messages(USER)[0]  # the buttons went
    report = await scripted_engine.service.mood(key(USER), 7)
    assert (report.positive, report.negative) == (0, 1)

    # A second press (a stale client still showing the buttons) changes nothing, and says why.
    api.press_button(USER, label, offered["neutral"])
    second = (await answers(api, 2))[1]
    assert second.params["text"] == texts.CORRECTION_ALREADY
    assert second.params["show_alert"] is True
    [event] = await scripted_engine.store.mood_events(key(USER), EPOCH)
    assert event.corrected == "negative"


async def test_in_a_group_someone_else_cannot_correct(
    bot: TelegramAdapter, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    api.group_text(USER, "@testbot what a great day")
    label = await label_with_buttons(api, GROUP_ID, "reply to: what a great day")
    api.press_button(OTHER, label, buttons(label)["neutral"])
    [refusal] = await answers(api, 1)
    assert refusal.params["text"] == texts.CORRECTION_NOT_YOURS
    assert refusal.params["show_alert"] is True
    assert api.bot_messages(GROUP_ID)[-1].get("reply_markup")  # still there for the author
    report = await scripted_engine.service.mood(key(USER), 7)
    assert (report.positive, report.neutral) == (1, 0)


async def test_export_sends_csv_and_json_in_private_and_refuses_in_a_group(
    bot: TelegramAdapter, api: FakeTelegramAPI
) -> None:
    api.private_text(USER, "I am so happy today")
    label = await label_with_buttons(api, USER, "reply to: I am so happy today")
    api.press_button(USER, label, buttons(label)["neutral"])
    await answers(api, 1)

    api.group_text(USER, "/export")
    await wait_text(api, GROUP_ID, texts.EXPORT_PRIVATE_ONLY)
    api.group_text(USER, "/link")  # a code shown to a group would open the history to it
    await wait_text(api, GROUP_ID, texts.LINK_PRIVATE_ONLY)
    api.private_text(USER, "/export")
    await wait_text(api, USER, texts.export_done(1, 1, 2))
    await api.wait_for(lambda: len(api.documents) == 2, what="two documents")
    documents = api.documents
    assert {chat for chat, _ in documents} == {USER}  # nothing went to the group
    by_kind = {data.lstrip(b"\xef\xbb\xbf")[:1]: data for _, data in documents}
    document = json.loads(by_kind[b"{"])
    assert document["mood_events"][0]["corrected"] == "neutral"
    rows = list(csv.DictReader(io.StringIO(by_kind[b"c"].decode("utf-8-sig"))))
    assert (rows[0]["shown"], rows[0]["counted"]) == ("positive", "neutral")


async def test_the_menu_lists_the_journal_commands(
    bot: TelegramAdapter, api: FakeTelegramAPI
) -> None:
    names = [c["command"] for c in api.calls_to("setMyCommands")[0].params["commands"]]
    assert {"wrong", "link", "unlink", "export"} <= set(names)

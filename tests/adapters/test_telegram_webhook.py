"""Telegram in webhook mode: updates are posted to the bot's own HTTP server (as Telegram,
or a load balancer in front of several bot processes, would), replies go to the fake Bot API.
Only requests carrying the secret token are processed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from telegram.ext import Updater

from adapters.telegram.adapter import TelegramAdapter, TelegramConfig
from engine.chat import texts
from engine.types import Sentiment, UserKey
from tests.conftest import ScriptedEngine
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI, private_chat, user_json
from tests.support import stored_mood_events
from tests.webhook_socket import listening_socket, serve_webhooks_on

USER = 111
SECRET = "s3cret-hook_token-" * 2
HOOK_URL = "https://bot.example.test/hooks/telegram"


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI(DEFAULT_TOKEN) as fake:
        yield fake


MakeAdapter = Callable[..., Awaitable[TelegramAdapter]]


@pytest.fixture
async def hook(
    scripted_engine: ScriptedEngine, api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A started adapter in webhook mode; yields the local address to post updates to."""
    sock = listening_socket()  # bound here, once, and served by the adapter's webhook
    port = sock.getsockname()[1]
    monkeypatch.setattr(Updater, "start_webhook", Updater.start_webhook)  # restored after
    serve_webhooks_on(sock)
    config = TelegramConfig.model_construct(
        token=DEFAULT_TOKEN,
        api_base_url=api.base_url,
        api_file_url=api.file_url,
        edit_interval_s=0.05,
        group_edit_interval_s=0.05,
        webhook_url=HOOK_URL,
        webhook_listen=f"127.0.0.1:{port}",
        webhook_secret=SECRET,
    )
    adapter = TelegramAdapter(scripted_engine.service, config)
    await adapter.start()
    try:
        yield f"http://127.0.0.1:{port}/hooks/telegram"
    finally:
        await adapter.stop()


async def post(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=update, headers=headers) as response,
    ):
        return response.status


def update_from(api: FakeTelegramAPI, text: str) -> dict[str, Any]:
    return api.message_update(private_chat(USER), user_json(USER), text)


async def test_start_sets_the_webhook_with_its_secret(hook: str, api: FakeTelegramAPI) -> None:
    assert api.webhook["url"] == HOOK_URL
    assert api.webhook["secret_token"] == SECRET
    assert set(api.webhook["allowed_updates"]) == {"message", "callback_query"}
    assert api.calls_to("getUpdates") == []  # no polling in webhook mode


async def test_an_update_with_the_secret_is_answered_and_stored(
    hook: str, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    assert await post(hook, update_from(api, "I am so happy today"), SECRET) == 200
    reply = "A cheerful reply to: I am so happy today"
    expected = f"{texts.label_line(Sentiment('positive', 0.9))}\n\n{reply}"
    await api.wait_for(lambda: api.bot_texts(USER) == [expected], what="the reply")
    events = await stored_mood_events(scripted_engine.store, UserKey("telegram", str(USER)), 1)
    assert [e.label for e in events] == ["positive"]


@pytest.mark.parametrize("secret", [None, "wrong-secret", SECRET[:-1]])
async def test_a_wrong_or_missing_secret_gets_403_and_nothing_is_stored(
    hook: str, api: FakeTelegramAPI, scripted_engine: ScriptedEngine, secret: str | None
) -> None:
    assert await post(hook, update_from(api, "I am so happy today"), secret) == 403
    # Then a genuine update, so we know the forged one had every chance to be handled.
    assert await post(hook, update_from(api, "second"), SECRET) == 200
    await api.wait_for(lambda: len(api.bot_texts(USER)) == 1 and "second" in api.bot_texts(USER)[0])
    events = await stored_mood_events(scripted_engine.store, UserKey("telegram", str(USER)), 1)
    assert len(events) == 1
    assert [text for batch in scripted_engine.runner.tag_calls for text in batch] == ["second"]


async def test_the_same_update_posted_twice_is_answered_once(
    hook: str, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    update = update_from(api, "I am so happy today")
    assert await post(hook, update, SECRET) == 200
    assert await post(hook, update, SECRET) == 200  # Telegram retries what it thinks was lost
    await api.wait_for(lambda: api.bot_texts(USER) and "cheerful reply" in api.bot_texts(USER)[0])
    assert await post(hook, update_from(api, "and then?"), SECRET) == 200
    await api.wait_for(lambda: len(api.bot_texts(USER)) == 2)
    assert len(api.calls_to("sendMessage")) == 2
    events = await stored_mood_events(scripted_engine.store, UserKey("telegram", str(USER)), 2)
    assert len(events) == 2


# --- the 200 comes after the message is recorded (#18) ----------------------------------------


def inbox_rows(engine: ScriptedEngine) -> list[tuple[str, str, str | None]]:
    """(message id, state, text) of every inbox row, read as another process would."""
    with sqlite3.connect(engine.db_path) as conn:
        return [tuple(r) for r in conn.execute("SELECT message_id, state, text FROM inbox")]


async def test_the_200_comes_after_the_message_is_recorded(
    hook: str,
    api: FakeTelegramAPI,
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A busy database (each inbox write 0.3 s late) and a model that labels nothing until
    # released: the row must exist when the 200 is returned, and the reply not yet begun.
    claim = scripted_engine.store.claim_message

    async def slow_claim(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0.3)
        return await claim(*args, **kwargs)

    monkeypatch.setattr(scripted_engine.store, "claim_message", slow_claim)
    release = threading.Event()
    tag = scripted_engine.runner.tag

    def held_tag(texts_: Any) -> list[Sentiment]:
        release.wait(30)
        return tag(texts_)

    monkeypatch.setattr(scripted_engine.runner, "tag", held_tag)
    update = update_from(api, "I am so happy today")
    message_id = str(update["message"]["message_id"])

    assert await post(hook, update, SECRET) == 200
    assert inbox_rows(scripted_engine) == [(message_id, "received", "I am so happy today")]
    # The handler is blocked in the model, and the next update is acknowledged all the same.
    second = update_from(api, "and another happy one")
    assert await post(hook, second, SECRET) == 200
    assert len(inbox_rows(scripted_engine)) == 2
    assert api.calls_to("sendMessage") == []

    release.set()
    await api.wait_for(lambda: len(api.bot_texts(USER)) == 2, what="both replies")
    await stored_mood_events(scripted_engine.store, UserKey("telegram", str(USER)), 2)
    # Done once the final edit is on Telegram, a moment after the chat shows it.
    states = lambda: [state for _, state, _ in inbox_rows(scripted_engine)]  # noqa: E731
    await api.wait_for(lambda: states() == ["done", "done"], what="both done")


async def test_updates_the_bot_does_not_answer_are_acknowledged_without_a_row(
    hook: str, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    command = update_from(api, "/help")
    edited = update_from(api, "I am so happy today")
    edited["edited_message"] = edited.pop("message")
    assert await post(hook, command, SECRET) == 200
    assert await post(hook, edited, SECRET) == 200
    await api.wait_for(lambda: any("/mood" in t for t in api.bot_texts(USER)), what="/help")
    assert inbox_rows(scripted_engine) == []

"""Bad input (issue #18): one table of awkward messages, run through the chat service and its
commands, the console, Telegram and Discord (the real clients on the loopback fakes).

Every case has an outcome class, the rule docs/reliability.md ("What the bot answers") states:
`answered` (label and reply; the model gets `sees`, the text as engine/chat/input_text.py cleans and
MAX_INPUT_CHARS cuts it), `empty` (the EMPTY_MESSAGE answer) or, for commands, the command's
own answer. Nothing is lost: an answered message has its mood event, and on the platforms
its inbox row is `done`. Replies go out as plain text: no parse_mode on Telegram, and on
Discord `allowed_mentions` with nothing to ping (an `@everyone` in a reply pings nobody).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest

from adapters.console import ConsoleAdapter, ConsoleConfig
from engine.chat import texts
from engine.chat.commands import Caller, Commands
from engine.chat.config import ChatConfig
from engine.chat.service import ChatService
from engine.model.worker import ModelWorker
from engine.types import (
    IncomingMessage,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    UserKey,
)
from storage.store import SqlMoodStore
from tests.adapters import test_discord as discord_suite
from tests.adapters import test_telegram as telegram_suite
from tests.conftest import ScriptedEngine
from tests.fakes.discord_api import FakeDiscord, iso_now, user_payload
from tests.fakes.telegram_api import FakeTelegramAPI, private_chat, user_json
from tests.postgres import PostgresCluster
from tests.scripted import ScriptedRunner, scripted_sentiment
from tests.support import EPOCH, inbox_states, stored_mood_events, worker_config

# The adapter suites' fixtures, under names of their own here.
api = telegram_suite.api
telegram_adapter = telegram_suite.make_adapter
fake = discord_suite.fake
discord_adapter = discord_suite.make_adapter

MAX = ChatConfig().max_input_chars
LONG = "fine " * 4000  # 20,000 characters
WORD = "x" * 5000

Outcome = Literal["answered", "empty"]


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    outcome: Outcome
    sees: str | None = None  # what the model gets, when not the text itself

    @property
    def model_text(self) -> str:
        return self.text if self.sees is None else self.sees


CASES = [
    Case("empty", "", "empty"),
    Case("whitespace only", " \t \n  ", "empty"),
    Case("zero-width only", "\u200b\u200b\u2060\ufeff", "empty"),
    Case("emoji only", "🎉🎉👍", "answered"),
    Case("emoji joined by ZWJ", "👨\u200d👩\u200d👧 ❤️", "answered"),
    Case("20,000 characters", LONG, "answered", sees=LONG.strip()[:MAX]),
    Case("one 5,000-character word", WORD, "answered", sees=WORD[:MAX]),
    Case(
        "right-to-left override",
        "\u202etxet desrever\u202c and \u2067isolated\u2069",
        "answered",
        sees="txet desrever and isolated",
    ),
    Case("NUL bytes", "nul\x00in\x00the middle", "answered", sees="nulinthe middle"),
    Case(
        "control characters",
        "bell\x07 and escape \x1b[31mred",
        "answered",
        sees="bell and escape [31mred",
    ),
    # Half an emoji (a JSON "\\ud83d" escape on its own): no character, no UTF-8 for it.
    Case("lone surrogate", "cut \ud83d emoji", "answered", sees="cut \ufffd emoji"),
    Case("code block", "```python\nprint('hi')\n```", "answered"),
    Case(
        "markdown and html",
        "*bold* _it_ <b>tag</b> [link](https://example.com) @everyone",
        "answered",
    ),
]
IDS = [case.name for case in CASES]

# Commands with junk, as typed; what the service, the console and Telegram answer. Discord's
# /mood takes a typed integer (1–365) that its client checks, and a "/name" sent as text there
# gets texts.PICK_FROM_MENU.
COMMANDS = [
    ("/mood lots", texts.bad_days("lots")),
    ("/mood -5", texts.bad_days("-5")),
    ("/mood 99999999999999999999", texts.bad_days("99999999999999999999")),
    ("/mood 7 days", texts.bad_days("7 days")),
    ("/mood " + "9" * 5000, texts.bad_days("9" * 5000)),
    ("/frobnicate now", texts.UNKNOWN_COMMAND),
]


def expected_reply(case: Case) -> str:
    """What the scripted model's reply looks like on screen: label line, then the reply."""
    sentiment = scripted_sentiment(case.model_text)
    tone = {"negative": "comforting", "neutral": "friendly"}.get(sentiment.tone, "cheerful")
    return f"{texts.label_line(sentiment)}\n\nA {tone} reply to: {case.model_text}".strip()


def squeezed(text: str) -> str:
    return "".join(text.split())


def assert_shown(messages: list[str], case: Case, limit: int) -> None:
    """The chat shows the case's whole outcome: one message, or split with nothing lost."""
    if case.outcome == "empty":
        assert messages == [texts.EMPTY_MESSAGE], case.name
        return
    expected = expected_reply(case)
    assert all(len(m) <= limit for m in messages), case.name
    if len(messages) == 1:
        assert messages == [expected], case.name
    else:  # split at the platform's limit, on whitespace where there was some
        assert squeezed("".join(messages)) == squeezed(expected), case.name


def shows(messages: Callable[[], list[str]], fragment: str) -> bool:
    """The chat's messages, joined, hold `fragment` (whitespace aside: a split may move it)."""
    return squeezed(fragment) in squeezed("".join(messages()))


def inbox_done(db: Path, message: tuple[str, str, str]) -> bool:
    return inbox_states(db).get(message) == "done"


def test_the_long_cases_are_as_long_as_the_issue_says() -> None:
    assert (len(LONG), len(WORD)) == (20_000, 5_000)
    assert len(texts.bad_days("9" * 5000)) < 120  # junk is not echoed back in full


# --- (a) the chat service and commands ---------------------------------------------------------


async def handle(engine: ScriptedEngine, message: IncomingMessage) -> list[ReplyEvent]:
    return [event async for event in engine.service.handle(message)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_service(case: Case, scripted_engine: ScriptedEngine) -> None:
    message = IncomingMessage("test", "u1", "c1", case.text, message_id="7")
    events = await handle(scripted_engine, message)
    mood = await scripted_engine.store.mood_events(message.user, EPOCH)
    assert inbox_states(scripted_engine.db_path) == {("test", "c1", "7"): "done"}
    if case.outcome == "empty":
        assert events == [ReplyFailed("empty", texts.EMPTY_MESSAGE)]
        assert mood == []
        assert scripted_engine.runner.tag_calls == []
        return
    done = events[-1]
    assert isinstance(done, ReplyDone)
    assert done.text == expected_reply(case).split("\n\n", 1)[1]
    assert scripted_engine.runner.tag_calls == [[case.model_text]]
    assert scripted_engine.runner.reply_calls[0].user_text == case.model_text
    assert len(mood) == 1


async def test_nul_bytes_are_stored_on_postgresql(postgres: PostgresCluster) -> None:
    # PostgreSQL refuses NUL in text outright: unremoved, the exchange could not be stored and
    # the message would stay unfinished. Stored with the excerpt too, which holds the text.
    store = await SqlMoodStore.open(postgres.new_database())
    runner = ScriptedRunner()
    worker = ModelWorker(lambda: runner, worker_config(queue_size=4, request_timeout_s=30))
    await worker.start()
    try:
        service = ChatService(worker, store, ChatConfig(store_message_text=True))
        message = IncomingMessage("test", "u1", "c1", "nul\x00in\x00the middle", message_id="7")
        events = [event async for event in service.handle(message)]
        assert isinstance(events[-1], ReplyDone)
        [event] = await store.mood_events(message.user, EPOCH)
        assert event.excerpt == "nulinthe middle"[: service.config.excerpt_chars]
        turns = await store.recent_turns(message.user, "c1", 2)
        assert turns[0].content == "nulinthe middle"
    finally:
        await worker.stop()
        await store.close()


@pytest.mark.parametrize(("line", "answer"), COMMANDS, ids=[c[0][:20] for c in COMMANDS])
async def test_commands(line: str, answer: str, scripted_engine: ScriptedEngine) -> None:
    name, _, args = line[1:].partition(" ")
    caller = Caller(UserKey("test", "u1"), "c1")
    result = await Commands(scripted_engine.service).run(name, caller, args)
    assert result.text == answer
    assert result.chart_png is None


# --- (b) the console -------------------------------------------------------------------------


async def test_console(scripted_engine: ScriptedEngine) -> None:
    # One line is one message, so the cases' newlines become spaces here; raw bytes go in as
    # they would from a pipe: NUL bytes and invalid UTF-8 included.
    # A lone surrogate has no UTF-8, so no pipe carries one (its invalid bytes are the Latin-1
    # line's case below).
    cases = [case for case in CASES if case.name != "lone surrogate"]
    lines = [case.text.replace("\n", " ").encode() for case in cases]
    lines += [line.encode() for line, _ in COMMANDS]
    lines.append(b"caf\xe9 au lait \xff\xfe")  # Latin-1, not UTF-8
    lines.append(b"still answered after that")
    stdin = io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n"), encoding="utf-8")
    stdout = io.StringIO()
    console = ConsoleAdapter(scripted_engine.service, ConsoleConfig(jsonl=True), stdin, stdout)
    await console.start()
    await asyncio.wait_for(console.finished.wait(), 30)
    await console.stop()

    records = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert len(records) == len(lines)  # one answer per line: the loop never died
    for case, record in zip(cases, records, strict=False):
        if case.outcome == "empty":
            assert record == {"error": "empty", "text": texts.EMPTY_MESSAGE}, case.name
        else:
            console_case = Case(case.name, case.text.replace("\n", " "), case.outcome, case.sees)
            reply = expected_reply(console_case).split("\n\n", 1)[1]
            assert record["reply"] == reply.replace("\n", " "), case.name
    command_records = records[len(cases) : len(cases) + len(COMMANDS)]
    assert [r["text"] for r in command_records] == [answer for _, answer in COMMANDS]
    latin1, after = records[-2:]
    assert latin1["reply"] == "A comforting reply to: caf\ufffd au lait \ufffd\ufffd"
    assert after["reply"] == "A comforting reply to: still answered after that"
    answered = sum(case.outcome == "answered" for case in cases) + 2
    mood = await scripted_engine.store.mood_events(UserKey("console", "local"), EPOCH)
    assert len(mood) == answered


# --- (c) Telegram ----------------------------------------------------------------------------

TG_LIMIT = 4096


async def test_telegram(
    telegram_adapter: Any, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    await telegram_adapter()
    users = {case.name: 3000 + index for index, case in enumerate(CASES)}
    sent = {case.name: api.private_text(users[case.name], case.text) for case in CASES}
    command_users = [4000 + index for index in range(len(COMMANDS))]
    for user, (line, _) in zip(command_users, COMMANDS, strict=True):
        api.private_text(user, line)
    # Forwarded text in a private chat is answered like the user's own.
    forwarded = api.push_message(
        private_chat(5000),
        user_json(5000),
        text="I am so happy for them",
        forward_origin={"type": "user", "date": 1, "sender_user": user_json(6000)},
    )

    for case in CASES:
        chat = users[case.name]
        final = expected_reply(case)[-20:] if case.outcome == "answered" else texts.EMPTY_MESSAGE
        await api.wait_for(
            partial(shows, partial(api.bot_texts, chat), final),
            timeout=15,
            what=case.name,
        )
    for user, (_, answer) in zip(command_users, COMMANDS, strict=True):
        await telegram_suite.wait_text(api, user, answer)
    await telegram_suite.wait_text(api, 5000, "A cheerful reply to: I am so happy for them")

    for case in CASES:
        chat = users[case.name]
        assert_shown(api.bot_texts(chat), case, TG_LIMIT)
        message = ("telegram", str(chat), str(sent[case.name]["message_id"]))
        await api.wait_for(partial(inbox_done, scripted_engine.db_path, message), what=case.name)
        mood = await stored_mood_events(
            scripted_engine.store,
            UserKey("telegram", str(chat)),
            at_least=int(case.outcome == "answered"),
        )
        assert len(mood) == (case.outcome == "answered"), case.name
    for user in command_users:
        assert len(api.bot_texts(user)) == 1
    assert len(await stored_mood_events(scripted_engine.store, UserKey("telegram", "5000"), 1)) == 1
    forward_key = ("telegram", "5000", str(forwarded["message_id"]))
    await api.wait_for(lambda: inbox_states(scripted_engine.db_path).get(forward_key) == "done")
    # Plain text everywhere: model output and user text can never be parsed as markup.
    writes = api.calls_to("sendMessage") + api.calls_to("editMessageText")
    assert writes
    assert all("parse_mode" not in call.params for call in writes)
    html = expected_reply(CASES[-1])
    assert api.bot_texts(users[CASES[-1].name]) == [html]  # "<b>tag</b>" shown as typed


async def test_telegram_edits_and_channel_posts_are_silence(
    telegram_adapter: Any, api: FakeTelegramAPI, scripted_engine: ScriptedEngine
) -> None:
    # test_telegram.py's test_edits_channel_posts_and_bots_are_ignored_without_error covers
    # edits, channel posts and bots after an answered message; here, an edit that turns an
    # empty message into a real one stays unanswered too (the rule: edits are never read).
    await telegram_adapter()
    original = api.private_text(3100, " ")
    await telegram_suite.wait_text(api, 3100, texts.EMPTY_MESSAGE)
    api.edited_text(3100, original, "now with words")
    api.channel_post("/mood lots")
    api.private_text(3100, "sentinel")
    await telegram_suite.wait_text(api, 3100, "reply to: sentinel")
    assert [t for batch in scripted_engine.runner.tag_calls for t in batch] == ["sentinel"]


# --- (d) Discord -----------------------------------------------------------------------------

DISCORD_LIMIT = 2000
WRITES = (discord_suite.MESSAGES, discord_suite.EDITS)


def discord_dm(fake: FakeDiscord, user_id: int, content: str, **extra: Any) -> dict[str, Any]:
    return fake.message(
        channel_id=user_id + 10_000,
        author=user_payload(user_id, f"u{user_id}"),
        content=content,
        **extra,
    )


async def test_discord(
    discord_adapter: Any, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await discord_adapter()
    users = {case.name: 3000 + index for index, case in enumerate(CASES)}
    sent: dict[str, dict[str, Any]] = {}
    for case in CASES:
        sent[case.name] = discord_dm(fake, users[case.name], case.text)
        await fake.dispatch("MESSAGE_CREATE", sent[case.name])
    command_users = [4000 + index for index in range(len(COMMANDS))]
    for user, (line, _) in zip(command_users, COMMANDS, strict=True):
        await fake.dispatch("MESSAGE_CREATE", discord_dm(fake, user, line))

    def shown(user: int) -> list[str]:
        return [m["content"] for m in fake.channel_messages(user + 10_000)]

    for case in CASES:
        user = users[case.name]
        final = expected_reply(case)[-20:] if case.outcome == "answered" else texts.EMPTY_MESSAGE
        await fake.wait_for(
            partial(shows, partial(shown, user), final),
            timeout=15,
            what=case.name,
        )
    for user in command_users:
        await fake.wait_for(partial(shows, partial(shown, user), texts.PICK_FROM_MENU))
    assert all(shown(user) == [texts.PICK_FROM_MENU] for user in command_users)

    for case in CASES:
        user = users[case.name]
        assert_shown(shown(user), case, DISCORD_LIMIT)
        channel = str(user + 10_000)
        message = ("discord", channel, sent[case.name]["id"])
        await fake.wait_for(partial(inbox_done, scripted_engine.db_path, message), what=case.name)
        mood = await stored_mood_events(
            scripted_engine.store,
            UserKey("discord", str(user)),
            at_least=int(case.outcome == "answered"),
        )
        assert len(mood) == (case.outcome == "answered"), case.name
    # Nothing the bot writes may ping: "@everyone" from the markdown case is in a reply,
    # sent (and every edit made) with no mention type allowed.
    writes = [c for c in fake.calls if c.route in WRITES and c.status == 200]
    assert writes
    assert all(call.json["allowed_mentions"] == {"parse": []} for call in writes)
    assert "@everyone" in shown(users[CASES[-1].name])[0]


async def test_discord_edits_are_silence_and_forwards_get_a_note(
    discord_adapter: Any, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await discord_adapter()
    original = discord_dm(fake, 3200, "hello there")
    await fake.dispatch("MESSAGE_CREATE", original)
    await fake.wait_for(
        lambda: any("reply to: hello there" in m["content"] for m in fake.channel_messages(13200))
    )
    edited = {**original, "content": "hello again", "edited_timestamp": iso_now()}
    await fake.dispatch("MESSAGE_UPDATE", edited)
    snapshot: dict[str, Any] = {
        "content": "someone else's words",
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "type": 0,
        "flags": 0,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
    }
    forward = discord_dm(fake, 3200, "")
    forward["message_reference"] = {"type": 1, "message_id": "1", "channel_id": "2"}
    forward["message_snapshots"] = [{"message": snapshot}]
    await fake.dispatch("MESSAGE_CREATE", forward)
    await fake.wait_for(
        lambda: [m for m in fake.channel_messages(13200) if m["content"] == texts.NOT_TEXT]
    )
    await fake.dispatch("MESSAGE_CREATE", discord_dm(fake, 3200, "sentinel"))
    await fake.wait_for(
        lambda: any("reply to: sentinel" in m["content"] for m in fake.channel_messages(13200))
    )

    assert [t for batch in scripted_engine.runner.tag_calls for t in batch] == [
        "hello there",
        "sentinel",
    ]
    assert len(fake.channel_messages(13200)) == 3  # two replies and the note

"""The Discord adapter, driven through the real discord.py client against a loopback fake."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import discord
import pytest

from adapters.discord.adapter import DiscordAdapter, DiscordConfig, DiscordStartError
from adapters.discord.chat_cog import CONTENT_INTENT_HINT
from engine.chat import safety, texts
from engine.errors import StorageError
from engine.types import IncomingMessage, Sentiment, UserKey
from storage.store import SqlMoodStore
from tests.conftest import ScriptedEngine
from tests.fakes.discord_api import EPHEMERAL, JSON, FakeDiscord, user_payload
from tests.scripted import ScriptedRunner, scripted_p_positive
from tests.support import stored_mood_events

TOKEN = "test-token"
HANG = 30.0  # only a guard against hanging forever; no test waits this long
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
GUILD, CHANNEL, OTHER_CHANNEL = 7100, 7101, 7102
ALICE_ID, BOB_ID = 501, 502
ALICE, BOB = user_payload(ALICE_ID, "alice"), user_payload(BOB_ID, "bob")
DM_OF = {ALICE_ID: 8801, BOB_ID: 8802}
MESSAGES = "POST /channels/{channel_id}/messages"
EDITS = "PATCH /channels/{channel_id}/messages/{message_id}"
TYPING = "POST /channels/{channel_id}/typing"
CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"
EDIT_ORIGINAL = "PATCH /webhooks/{application_id}/{token}/messages/@original"


@pytest.fixture
def scripted_runner() -> ScriptedRunner:
    # A little latency per word, so replies really stream as several edits.
    return ScriptedRunner(delay_s=0.01)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(token=TOKEN, guilds={GUILD: [CHANNEL, OTHER_CHANNEL]})
    await server.start()
    yield server
    await server.close()


class AdapterFactory:
    """Starts adapters on the fake; afterwards stops them and checks nothing logged an error."""

    def __init__(self, fake: FakeDiscord, engine: ScriptedEngine) -> None:
        self.fake, self.engine = fake, engine
        self.started: list[DiscordAdapter] = []
        self.errors_expected = False

    async def __call__(self, **overrides: Any) -> DiscordAdapter:
        adapter = DiscordAdapter(self.engine.service, config(self.fake, **overrides))
        self.started.append(adapter)
        await adapter.start()
        return adapter


@pytest.fixture
async def make_adapter(
    fake: FakeDiscord,
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[AdapterFactory]:
    factory = AdapterFactory(fake, scripted_engine)
    yield factory
    for adapter in factory.started:  # the client closes before the fake server does
        await adapter.stop()
    records = [r for phase in ("setup", "call") for r in caplog.get_records(phase)]
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert factory.errors_expected or not errors, errors


@pytest.fixture
async def adapter(make_adapter: AdapterFactory) -> DiscordAdapter:
    return await make_adapter()


def config(fake: FakeDiscord, **overrides: Any) -> DiscordConfig:
    values: dict[str, Any] = {
        "token": TOKEN,
        "proxy": fake.proxy_url,
        "edit_interval_s": 0.05,
        "guild_ready_timeout_s": 0.01,
        "ready_timeout_s": 5.0,
    }
    # Faster than the settings allow, so the tests run quickly: built without validation.
    return DiscordConfig.model_construct(**{**values, **overrides})


async def test_discord_is_reached_at_its_own_urls_through_the_proxy(
    adapter: DiscordAdapter, fake: FakeDiscord
) -> None:
    assert fake.proxy is not None
    assert "discord.com:443" in fake.proxy.tunnels  # REST
    assert "gateway.discord.gg:443" in fake.proxy.tunnels  # the gateway websocket
    # Nothing process-wide was repointed: another client in this process would reach Discord.
    assert discord.http.Route.BASE == "https://discord.com/api/v10"
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "wss://gateway.discord.gg/"


# --- helpers --------------------------------------------------------------------------------


def dm(fake: FakeDiscord, author: JSON, content: str = "", **extra: Any) -> JSON:
    return fake.message(
        channel_id=DM_OF[int(author["id"])], author=author, content=content, **extra
    )


def in_channel(fake: FakeDiscord, author: JSON, content: str = "", **extra: Any) -> JSON:
    extra.setdefault("channel_id", CHANNEL)
    return fake.message(guild_id=GUILD, author=author, content=content, **extra)


def mention(fake: FakeDiscord) -> str:
    return f"<@{fake.bot_id}>"


def expected_reply(user_text: str) -> str:
    """What the scripted engine's finished reply looks like on screen."""
    sentiment = Sentiment.from_p_positive(scripted_p_positive(user_text))
    tone = "cheerful" if sentiment.label == "positive" else "comforting"
    return f"{texts.label_line(sentiment)}\n\nA {tone} reply to: {user_text}"


async def wait_for_message(fake: FakeDiscord, channel_id: int, content: str) -> JSON:
    found = await fake.wait_for(
        lambda: [m for m in fake.channel_messages(channel_id) if m["content"] == content]
    )
    return found[0]


def tagged_texts(engine: ScriptedEngine) -> list[str]:
    return [text for batch in engine.runner.tag_calls for text in batch]


def slash(
    fake: FakeDiscord, user: JSON, name: str, options: list[JSON] | None = None, **extra: Any
) -> JSON:
    command = next(c for c in fake.commands[None] if c["name"] == name)
    data = {"id": command["id"], "name": name, "type": 1, "options": options or []}
    extra.setdefault("channel_id", DM_OF[int(user["id"])])
    return fake.interaction(user=user, data=data, **extra)


def press(fake: FakeDiscord, user: JSON, prompt: JSON, style: int) -> JSON:
    """A click on the button with `style` (4 = danger, 2 = secondary) of the prompt message."""
    buttons = [b for row in prompt["components"] for b in row["components"]]
    button = next(b for b in buttons if b["style"] == style)
    data = {"custom_id": button["custom_id"], "component_type": 2}
    channel_id = int(prompt["channel_id"])
    return fake.interaction(user=user, channel_id=channel_id, data=data, type=3, message=prompt)


async def wait_for_call(fake: FakeDiscord, route: str, token: str) -> Any:
    calls = await fake.wait_for(
        lambda: [c for c in fake.calls_to(route) if c.params["token"] == token and c.status]
    )
    return calls[0]


async def mood_events(engine: ScriptedEngine, user_id: int, at_least: int = 0) -> list[Any]:
    return await stored_mood_events(engine.store, UserKey("discord", str(user_id)), at_least)


# --- messages -------------------------------------------------------------------------------


async def test_dm_shows_label_then_streams_the_reply_by_edits(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    text = "I am so happy today, everything went great at work and the sun is out"
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, text))
    final = await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply(text))

    posts = [c for c in fake.calls_to(MESSAGES) if c.status == 200]
    assert [c.json["content"] for c in posts] == [texts.label_line(Sentiment("positive", 0.9))]
    assert posts[0].json["allowed_mentions"] == {"parse": []}  # the model cannot ping anyone
    assert "message_reference" not in posts[0].json  # no quoting in a DM
    edits = [  # the text's edits (the correction buttons come in one more, without text)
        c.json["content"]
        for c in fake.calls_to(EDITS)
        if c.params["message_id"] == final["id"] and "content" in c.json
    ]
    assert len(edits) >= 2, edits  # streamed, not sent in one go
    assert all(final["content"].startswith(edit) for edit in edits)  # it only grew
    assert edits[-1] == final["content"]
    assert fake.calls_to(TYPING)
    assert scripted_engine.runner.reply_calls[-1].user_text == text

    [event] = await mood_events(scripted_engine, ALICE_ID, at_least=1)
    assert (event.label, event.chat_id) == ("positive", str(DM_OF[ALICE_ID]))


async def test_a_message_dispatched_twice_is_answered_once(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    # A gateway resume may replay events; a second process may see the same message.
    text = "I am so happy today"
    message = dm(fake, ALICE, text)
    await fake.dispatch("MESSAGE_CREATE", message)
    await fake.dispatch("MESSAGE_CREATE", message)
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply(text))
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "and then?"))  # in order, after it
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("and then?"))

    assert tagged_texts(scripted_engine) == [text, "and then?"]
    assert len([c for c in fake.calls_to(MESSAGES) if c.status == 200]) == 2
    assert len(await mood_events(scripted_engine, ALICE_ID, at_least=2)) == 2


async def test_server_channel_needs_a_mention_which_is_stripped(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    chatter = in_channel(fake, ALICE, "just chatting with friends")
    await fake.dispatch("MESSAGE_CREATE", chatter)
    addressed = in_channel(fake, ALICE, f"{mention(fake)} how are you?", mentions=[fake.bot])
    await fake.dispatch("MESSAGE_CREATE", addressed)

    await wait_for_message(fake, CHANNEL, expected_reply("how are you?"))
    assert tagged_texts(scripted_engine) == ["how are you?"]
    [post] = [c for c in fake.calls_to(MESSAGES) if c.status == 200]
    assert str(post.json["message_reference"]["message_id"]) == addressed["id"]  # quotes the asker
    assert post.json["allowed_mentions"] == {"parse": []}  # ...without pinging them


async def test_replies_to_the_bot_are_answered_replies_to_others_are_not(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    first = in_channel(fake, ALICE, f"{mention(fake)} hello", mentions=[fake.bot])
    await fake.dispatch("MESSAGE_CREATE", first)
    bot_message = await wait_for_message(fake, CHANNEL, expected_reply("hello"))

    await fake.dispatch("MESSAGE_CREATE", in_channel(fake, BOB, "me too", reply_to=first))
    await fake.dispatch(
        "MESSAGE_CREATE", in_channel(fake, ALICE, "tell me more", reply_to=bot_message)
    )
    await wait_for_message(fake, CHANNEL, expected_reply("tell me more"))
    assert tagged_texts(scripted_engine) == ["hello", "tell me more"]


async def test_triggers_can_be_turned_off(
    make_adapter: AdapterFactory, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await make_adapter(reply_on_mention=False, reply_on_reply=True)
    await fake.dispatch(
        "MESSAGE_CREATE", in_channel(fake, ALICE, f"{mention(fake)} hi", mentions=[fake.bot])
    )
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "still here?"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("still here?"))
    assert tagged_texts(scripted_engine) == ["still here?"]  # DMs are always answered


async def test_long_reply_is_split_at_2000_characters_without_losing_text(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    words = [f"word{i}" for i in range(900)]  # about 6000 characters
    scripted_engine.runner.reply_text = " ".join(words)
    scripted_engine.runner.delay_s = 0.0
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "tell me a long story"))

    def shown_words() -> list[str]:
        return " ".join(m["content"] for m in fake.channel_messages(DM_OF[ALICE_ID])).split()

    await fake.wait_for(lambda: shown_words()[-1:] == [words[-1]])
    messages = fake.channel_messages(DM_OF[ALICE_ID])
    assert len(messages) == 4
    assert all(len(m["content"]) <= 2000 for m in messages)
    label = texts.label_line(Sentiment("negative", 0.1)).split()
    assert shown_words() == label + words
    assert all(c.status < 300 for c in fake.calls)  # the fake rejects > 2000 with a 400


@pytest.mark.parametrize("via", [True, False], ids=["retried-by-discord.py", "mapped-to-429"])
async def test_rate_limited_posts_and_edits_lose_no_text(
    adapter: DiscordAdapter, fake: FakeDiscord, via: bool
) -> None:
    # With Via discord.py waits the 429 out itself; without it raises, and the adapter hands
    # the renderer a RateLimited to wait out. The label post and the edits are both hit.
    fake.fail("POST", "/channels/{channel_id}/messages", times=1, retry_after=0.1, via=via)
    fake.fail(
        "PATCH", "/channels/{channel_id}/messages/{message_id}", times=3, retry_after=0.1, via=via
    )
    text = "what a great day this has been for everyone"
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, text))

    final = await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply(text))
    assert len(fake.channel_messages(DM_OF[ALICE_ID])) == 1  # the 429'd post was not doubled
    statuses = [c.status for c in fake.calls if c.route in (MESSAGES, EDITS)]
    assert statuses.count(429) == 4
    text_edits = [c for c in fake.calls_to(EDITS) if "content" in c.json]  # not the buttons'
    assert text_edits[-1].json["content"] == final["content"]


async def test_gateway_reconnect_resumes_and_keeps_answering(
    adapter: DiscordAdapter, fake: FakeDiscord
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "before"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("before"))

    await fake.force_reconnect()
    await fake.wait_for(lambda: len(fake.resumes) == 1 and len(fake.connections) == 2)
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "after"))

    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("after"))
    assert len(fake.identifies) == 1  # resumed the session, not a fresh login
    assert fake.resumes[0]["token"] == TOKEN


async def test_bots_and_own_messages_are_ignored(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    other_bot = user_payload(777, "otherbot", bot=True)
    await fake.dispatch(
        "MESSAGE_CREATE", fake.message(channel_id=8899, author=other_bot, content="hi")
    )
    await fake.dispatch(
        "MESSAGE_CREATE",
        in_channel(fake, fake.bot, f"{mention(fake)} talking to myself", mentions=[fake.bot]),
    )
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "a human"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("a human"))
    assert tagged_texts(scripted_engine) == ["a human"]
    assert not fake.channel_messages(8899)
    assert not fake.channel_messages(CHANNEL)


async def test_allow_lists(
    make_adapter: AdapterFactory, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await make_adapter(
        allowed_user_ids=frozenset({ALICE_ID}), allowed_channel_ids=frozenset({CHANNEL})
    )
    await fake.dispatch("MESSAGE_CREATE", dm(fake, BOB, "let me in"))
    await wait_for_message(fake, DM_OF[BOB_ID], texts.NOT_ALLOWED)

    addressed = {"mentions": [fake.bot]}
    await fake.dispatch(
        "MESSAGE_CREATE",
        in_channel(
            fake, ALICE, f"{mention(fake)} elsewhere", channel_id=OTHER_CHANNEL, **addressed
        ),
    )
    await fake.dispatch(
        "MESSAGE_CREATE", in_channel(fake, ALICE, f"{mention(fake)} here", **addressed)
    )
    await wait_for_message(fake, CHANNEL, expected_reply("here"))
    assert tagged_texts(scripted_engine) == ["here"]
    assert not fake.channel_messages(OTHER_CHANNEL)  # silence, not a refusal

    interaction = slash(fake, BOB, "mood")
    await fake.dispatch("INTERACTION_CREATE", interaction)
    call = await wait_for_call(fake, CALLBACK, interaction["token"])
    assert call.json["data"]["content"] == texts.NOT_ALLOWED
    assert call.json["data"]["flags"] == EPHEMERAL


async def test_non_text_messages(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    picture = {
        "id": "1",
        "filename": "cat.png",
        "size": 10,
        "url": "https://cdn.example/cat.png",
        "proxy_url": "https://cdn.example/cat.png",
    }
    await fake.dispatch("MESSAGE_CREATE", in_channel(fake, ALICE, attachments=[picture]))
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, attachments=[picture]))
    await wait_for_message(fake, DM_OF[ALICE_ID], texts.NOT_TEXT)
    sticker = {"id": "2", "name": "wave", "format_type": 1}
    await fake.dispatch("MESSAGE_CREATE", dm(fake, BOB, sticker_items=[sticker]))
    await wait_for_message(fake, DM_OF[BOB_ID], texts.NOT_TEXT)

    assert not fake.channel_messages(CHANNEL)  # unaddressed in a channel: silence
    assert tagged_texts(scripted_engine) == []


async def test_empty_content_warns_once_about_the_message_content_intent(
    adapter: DiscordAdapter, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, ""))
    await fake.dispatch("MESSAGE_CREATE", dm(fake, BOB, ""))
    await wait_for_message(fake, DM_OF[ALICE_ID], texts.EMPTY_MESSAGE)
    await wait_for_message(fake, DM_OF[BOB_ID], texts.EMPTY_MESSAGE)
    warnings = [r for r in caplog.records if r.getMessage() == CONTENT_INTENT_HINT]
    assert len(warnings) == 1


# --- slash commands -------------------------------------------------------------------------


async def test_commands_are_synced_on_start(
    make_adapter: AdapterFactory, fake: FakeDiscord
) -> None:
    await make_adapter(command_guild_id=GUILD)
    names = {"mood", "reset", "forget", "help", "start", "wrong", "link", "unlink", "export",
             "digest", "checkin"}  # fmt: skip
    assert {c["name"] for c in fake.commands[GUILD]} == names
    days = fake.commands[GUILD][0]["options"][0]
    assert (days["name"], days["min_value"], days["max_value"]) == ("days", 1, 365)


async def test_mood_is_deferred_ephemeral_and_has_the_callers_chart(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "a great day"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("a great day"))

    interaction = slash(fake, ALICE, "mood", [{"name": "days", "type": 4, "value": 30}])
    await fake.dispatch("INTERACTION_CREATE", interaction)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, interaction["token"])

    ack = await wait_for_call(fake, CALLBACK, interaction["token"])
    assert ack.json["type"] == 5
    assert ack.json["data"]["flags"] == EPHEMERAL
    assert ack.status == 200  # the fake refuses acknowledgements later than 3 s
    report = await scripted_engine.service.mood(UserKey("discord", str(ALICE_ID)), 30)
    assert report.total == 1
    assert answer.json["content"] == report.text
    [chart] = answer.files
    assert chart.filename == "mood.png"
    assert chart.data.startswith(b"\x89PNG\r\n\x1a\n")
    original = fake.original_message(int(interaction["id"]))
    assert original is not None
    assert original["flags"] == EPHEMERAL

    # Bob has no history: his report is his own, and there is no chart to draw.
    other = slash(fake, BOB, "mood")
    await fake.dispatch("INTERACTION_CREATE", other)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, other["token"])
    assert answer.files == []
    bob_report = await scripted_engine.service.mood(UserKey("discord", str(BOB_ID)), 7)
    assert answer.json["content"] == bob_report.text != report.text


async def test_a_failing_command_tells_the_user(
    make_adapter: AdapterFactory,
    fake: FakeDiscord,
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await make_adapter()
    make_adapter.errors_expected = True

    async def locked(*args: Any) -> Any:
        raise StorageError("database is locked")

    monkeypatch.setattr(scripted_engine.service, "mood", locked)
    interaction = slash(fake, ALICE, "mood")
    await fake.dispatch("INTERACTION_CREATE", interaction)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, interaction["token"])
    assert answer.json["content"] == texts.STORAGE_ERROR


async def test_forget_needs_the_callers_confirmation(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "remember me"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("remember me"))

    ask = slash(fake, ALICE, "forget")
    await fake.dispatch("INTERACTION_CREATE", ask)
    ack = await wait_for_call(fake, CALLBACK, ask["token"])
    assert ack.json["type"] == 4
    assert ack.json["data"]["flags"] == EPHEMERAL
    assert ack.json["data"]["content"] == texts.FORGET_ASK
    prompt = fake.original_message(int(ask["id"]))
    assert prompt is not None

    intruder = press(fake, BOB, prompt, style=4)
    await fake.dispatch("INTERACTION_CREATE", intruder)
    refused = await wait_for_call(fake, CALLBACK, intruder["token"])
    assert refused.json["data"]["content"] == texts.FORGET_NOT_YOURS
    assert refused.json["data"]["flags"] == EPHEMERAL
    assert len(await mood_events(scripted_engine, ALICE_ID, at_least=1)) == 1

    confirm = press(fake, ALICE, prompt, style=4)
    await fake.dispatch("INTERACTION_CREATE", confirm)
    assert (await wait_for_call(fake, CALLBACK, confirm["token"])).json["type"] == 6
    done = await wait_for_call(fake, EDIT_ORIGINAL, confirm["token"])
    forget_done = re.escape(texts.forget_done(12345)).replace("12345", r"[1-9]\d*")
    assert re.fullmatch(forget_done, done.json["content"])  # "deleted N rows", N > 0
    assert done.json["components"] == []  # the buttons are gone
    assert await mood_events(scripted_engine, ALICE_ID) == []
    user = UserKey("discord", str(ALICE_ID))
    assert await scripted_engine.store.recent_turns(user, str(DM_OF[ALICE_ID]), 10) == []


async def test_forget_cancel_deletes_nothing(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "keep this"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("keep this"))
    ask = slash(fake, ALICE, "forget")
    await fake.dispatch("INTERACTION_CREATE", ask)
    await wait_for_call(fake, CALLBACK, ask["token"])

    cancel = press(fake, ALICE, fake.original_message(int(ask["id"])) or {}, style=2)
    await fake.dispatch("INTERACTION_CREATE", cancel)
    answer = await wait_for_call(fake, CALLBACK, cancel["token"])
    assert answer.json["type"] == 7  # the prompt is updated in place
    assert answer.json["data"]["content"] == texts.FORGET_CANCELLED
    assert answer.json["data"]["components"] == []
    assert len(await mood_events(scripted_engine, ALICE_ID, at_least=1)) == 1


async def test_reset_and_help(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "hello"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("hello"))
    user = UserKey("discord", str(ALICE_ID))

    reset = slash(fake, ALICE, "reset")
    await fake.dispatch("INTERACTION_CREATE", reset)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, reset["token"])
    assert answer.json["content"] == texts.RESET_DONE
    assert (await wait_for_call(fake, CALLBACK, reset["token"])).json["data"]["flags"] == EPHEMERAL
    assert await scripted_engine.store.recent_turns(user, str(DM_OF[ALICE_ID]), 10) == []
    kept = await mood_events(scripted_engine, ALICE_ID, at_least=1)
    assert len(kept) == 1  # mood history is kept

    help_ = slash(fake, ALICE, "help", guild_id=GUILD, channel_id=CHANNEL)
    await fake.dispatch("INTERACTION_CREATE", help_)
    answer = await wait_for_call(fake, CALLBACK, help_["token"])
    assert answer.json["type"] == 4
    assert answer.json["data"]["content"] == texts.help_text()
    assert answer.json["data"]["flags"] == EPHEMERAL


async def test_start_introduces_the_bot_and_what_it_keeps(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    start = slash(fake, ALICE, "start")
    await fake.dispatch("INTERACTION_CREATE", start)
    answer = await wait_for_call(fake, CALLBACK, start["token"])
    assert answer.json["type"] == 4
    assert answer.json["data"]["content"] == texts.start_text(12)
    assert answer.json["data"]["flags"] == EPHEMERAL
    assert await mood_events(scripted_engine, ALICE_ID) == []  # a command is not a mood
    assert tagged_texts(scripted_engine) == []


# --- lifecycle ------------------------------------------------------------------------------


async def test_stop_closes_cleanly_and_is_idempotent(
    adapter: DiscordAdapter, fake: FakeDiscord
) -> None:
    await adapter.stop()
    assert adapter.client is not None
    assert adapter.client.is_closed()
    await asyncio.wait_for(fake.connections[-1].closed.wait(), 5)  # the client hung up
    await adapter.stop()
    # The gateway task, the only thing that reconnects, is over: the client cannot come back.
    assert adapter._connect_task is not None
    assert adapter._connect_task.done()
    assert len(fake.connections) == 1


async def test_stop_drops_a_reply_that_outlives_the_grace_period(
    make_adapter: AdapterFactory, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    adapter = await make_adapter(shutdown_grace_s=0.1)
    hold = scripted_engine.runner.hold = threading.Event()  # the reply's rest waits for it
    scripted_engine.runner.reply_text = "first and then the words nobody will see"
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "take your time"))
    try:
        await fake.wait_for(lambda: fake.channel_messages(DM_OF[ALICE_ID]))  # the label is out
        await asyncio.wait_for(adapter.stop(), HANG)  # the reply is still held: it outlives it
        assert adapter.client is not None
        assert adapter.client.is_closed()
    finally:
        hold.set()
    # The engine stream was closed, so the worker abandons the generation at its next step.
    reply = scripted_engine.runner.replies[-1]
    assert await asyncio.to_thread(reply.closed_signal.wait, HANG)
    assert not reply.finished
    shown = " ".join(m["content"] for m in fake.channel_messages(DM_OF[ALICE_ID]))
    assert "nobody" not in shown


async def test_stop_before_start_is_safe(scripted_engine: ScriptedEngine) -> None:
    adapter = DiscordAdapter(scripted_engine.service, DiscordConfig(token="x"))
    await asyncio.wait_for(adapter.stop(), HANG)
    assert adapter.client is None  # nothing was started to connect
    assert adapter.track() is False  # and no message is taken after it


async def test_bad_token_fails_start_clearly(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    adapter = DiscordAdapter(scripted_engine.service, config(fake, token="wrong-token"))
    with pytest.raises(DiscordStartError, match="DISCORD_BOT_TOKEN"):
        await adapter.start()
    await adapter.stop()
    assert "wrong-token" not in repr(adapter.config)


async def test_disabled_message_content_intent_fails_start_clearly(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    fake.reject_intents = True
    adapter = DiscordAdapter(scripted_engine.service, config(fake))
    with pytest.raises(DiscordStartError, match="Message Content"):
        await adapter.start()
    intents = discord.Intents._from_value(fake.identifies[0]["intents"])
    assert intents.message_content
    assert intents.dm_messages
    await adapter.stop()


async def test_unreachable_discord_fails_start_clearly(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    assert fake.proxy is not None
    fake.proxy.refused.add("discord.com")
    with pytest.raises(DiscordStartError, match="could not reach the Discord API") as raised:
        await DiscordAdapter(scripted_engine.service, config(fake)).start()
    assert fake.proxy_url in str(raised.value)  # the way it tried is named

    # REST works but the gateway is unreachable: a failure or a timeout, named either way.
    fake.proxy.refused = {"gateway.discord.gg"}
    adapter = DiscordAdapter(scripted_engine.service, config(fake, ready_timeout_s=0.5))
    with pytest.raises(DiscordStartError, match=r"Discord gateway at wss://gateway\.discord\.gg"):
        await adapter.start()
    assert adapter.client is not None
    assert adapter.client.is_closed()


# --- configuration --------------------------------------------------------------------------


def test_config_from_env_defaults_and_parsing() -> None:
    assert DiscordConfig.from_env({}) is None
    assert DiscordConfig.from_env({"DISCORD_BOT_TOKEN": "  "}) is None

    plain = DiscordConfig.from_env({"DISCORD_BOT_TOKEN": "secret"})
    assert plain == DiscordConfig(token="secret")
    assert "secret" not in repr(plain)

    full = DiscordConfig.from_env(
        {
            "DISCORD_BOT_TOKEN": "secret",
            "DISCORD_PROXY": "http://127.0.0.1:9",
            "DISCORD_ALLOWED_USER_IDS": "1, 2 3",
            "DISCORD_ALLOWED_CHANNEL_IDS": "4",
            "DISCORD_TRIGGERS": "reply",
            "DISCORD_EDIT_INTERVAL_S": "1.5",
            "DISCORD_COMMAND_GUILD_ID": "99",
        }
    )
    assert full is not None
    assert full.proxy == "http://127.0.0.1:9"
    assert full.allowed_user_ids == {1, 2, 3}
    assert full.allowed_channel_ids == {4}
    assert (full.reply_on_mention, full.reply_on_reply) == (False, True)
    assert full.edit_interval_s == 1.5
    assert full.command_guild_id == 99

    dms_only = DiscordConfig.from_env({"DISCORD_BOT_TOKEN": "t", "DISCORD_TRIGGERS": ""})
    assert dms_only is not None
    assert not (dms_only.reply_on_mention)
    assert not (dms_only.reply_on_reply)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DISCORD_ALLOWED_USER_IDS", "alice"),
        ("DISCORD_ALLOWED_CHANNEL_IDS", "12,-3"),
        ("DISCORD_TRIGGERS", "mention,everything"),
        ("DISCORD_EDIT_INTERVAL_S", "soon"),
        ("DISCORD_EDIT_INTERVAL_S", "0"),
        ("DISCORD_PROXY", "127.0.0.1:3128"),
        ("DISCORD_PROXY", "socks5://127.0.0.1:1080"),
        ("DISCORD_COMMAND_GUILD_ID", "1,2"),
    ],
)
def test_config_from_env_names_the_bad_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key):
        DiscordConfig.from_env({"DISCORD_BOT_TOKEN": "t", key: value})


# --- after a restart ------------------------------------------------------------------------


async def test_a_message_left_unanswered_by_a_dead_process_is_answered_on_ready(
    make_adapter: AdapterFactory, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    # Recorded by a process that died before it had sent anything: on READY it is answered,
    # quoting it (the answer comes late), with the retry note; once.
    message_id = fake.snowflake()
    incoming = IncomingMessage("discord", str(ALICE_ID), str(CHANNEL), "I am so happy",
                               str(message_id))  # fmt: skip
    dead = await SqlMoodStore.open(scripted_engine.db_path)
    assert await dead.claim_message(incoming.key, incoming.user, datetime.now(UTC), incoming)  # type: ignore[arg-type]
    await dead.close()

    await make_adapter()
    reply = "A cheerful reply to: I am so happy"
    await fake.wait_for(
        lambda: any(reply in m["content"] for m in fake.channel_messages(CHANNEL)), 5
    )
    [shown] = fake.channel_messages(CHANNEL)
    positive = texts.label_line(Sentiment.from_p_positive(scripted_p_positive("I am so happy")))
    assert shown["content"] == f"{texts.RETRY_NOTE}\n{positive}\n\n{reply}"
    assert int(shown["message_reference"]["message_id"]) == message_id
    assert shown["allowed_mentions"]["parse"] == []  # still never pings anyone
    assert len(await stored_mood_events(scripted_engine.store, incoming.user, 1)) == 1
    assert await scripted_engine.service.unfinished("discord") == []


# --- the support note (engine/chat/safety.py) -----------------------------------------------------

CRISIS = "我真的不想活了。"
NEGATIVE_LABEL = texts.label_line(Sentiment("negative", 0.1))


async def test_a_crisis_message_in_a_dm_gets_the_reply_then_the_note_as_its_own_message(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, CRISIS))
    note = safety.support_note("words", CRISIS)
    await wait_for_message(fake, DM_OF[ALICE_ID], note)
    contents = [m["content"] for m in fake.channel_messages(DM_OF[ALICE_ID])]
    # The scripted reply ("A comforting reply to: …") has no word of care: the template.
    assert contents == [f"{NEGATIVE_LABEL}\n\n{safety.CARING_REPLY['zh']}", note]
    user = UserKey("discord", str(ALICE_ID))
    assert [n.trigger for n in await scripted_engine.store.support_notes(user, EPOCH)] == ["words"]


async def test_no_note_in_a_server_channel(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    asked = in_channel(fake, ALICE, f"{mention(fake)} {CRISIS}", mentions=[fake.bot])
    await fake.dispatch("MESSAGE_CREATE", asked)
    await wait_for_message(fake, CHANNEL, f"{NEGATIVE_LABEL}\n\n{safety.CARING_REPLY['zh']}")
    sentinel = in_channel(fake, BOB, f"{mention(fake)} sentinel", mentions=[fake.bot])
    await fake.dispatch("MESSAGE_CREATE", sentinel)
    await wait_for_message(fake, CHANNEL, expected_reply("sentinel"))
    assert not any("findahelpline" in m["content"] for m in fake.channel_messages(CHANNEL))
    user = UserKey("discord", str(ALICE_ID))
    assert await scripted_engine.store.support_notes(user, EPOCH) == []

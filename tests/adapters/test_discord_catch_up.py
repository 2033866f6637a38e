"""Messages sent on Discord while no bot process was connected: Discord does not replay them,
so at start-up the adapter reads each recent chat's history on from the latest message the
inbox recorded there, and answers what it missed, once, quoted and noted as late."""

from __future__ import annotations

import functools
import logging

import pytest

import adapters.discord.chat_cog as chat_cog
import tests.adapters.test_discord as base
from engine.chat import texts
from tests.adapters.test_discord import (
    ALICE,
    ALICE_ID,
    BOB,
    CALLBACK,
    CHANNEL,
    DM_OF,
    EDIT_ORIGINAL,
    AdapterFactory,
    dm,
    expected_reply,
    in_channel,
    mention,
    mood_events,
    press,
    slash,
    tagged_texts,
    wait_for_call,
    wait_for_message,
)
from tests.conftest import ScriptedEngine
from tests.fakes.discord_api import JSON, FakeDiscord

HISTORY = "GET /channels/{channel_id}/messages"

# The Discord adapter suite's fixtures: the fake (gateway, REST, TLS proxy) and the adapter.
fake = base.fake
make_adapter = base.make_adapter
scripted_runner = base.scripted_runner


def answers_to(fake: FakeDiscord, message: JSON, text: str = "") -> list[JSON]:
    """The bot's complete answers that quote `message` (whose text, the mention stripped,
    is `text`)."""
    reply = expected_reply(text or message["content"]).split("\n\n")[1]
    return [sent for sent in fake.channel_messages(int(message["channel_id"]))
            if str(sent.get("message_reference", {}).get("message_id")) == message["id"]
            and reply in sent["content"]]  # fmt: skip


async def test_what_was_sent_while_offline_is_answered_at_the_next_start(
    make_adapter: AdapterFactory, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    first = await make_adapter()
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "I am so happy today"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("I am so happy today"))
    await fake.dispatch("MESSAGE_CREATE", in_channel(fake, BOB, f"{mention(fake)} hello there"))
    await wait_for_message(fake, CHANNEL, expected_reply("hello there"))
    await first.stop()

    # While no bot is connected: two DMs, a channel message addressed to the bot, and one
    # that is not (the bot would not have answered it live either).
    offline = [dm(fake, ALICE, "the train was late again"), dm(fake, ALICE, "and it rained")]
    for message in offline:
        fake.post_unseen(message)
    fake.post_unseen(in_channel(fake, BOB, "just chatting, not to the bot"))
    fake.post_unseen(in_channel(fake, BOB, f"{mention(fake)} are you back?"))

    await make_adapter()
    for message in offline:
        late = await fake.wait_for(functools.partial(answers_to, fake, message))
        assert texts.LATE_NOTE in late[0]["content"]
    await fake.wait_for(
        lambda: [m for m in fake.channel_messages(CHANNEL) if "are you back?" in m["content"]]
    )
    # Once each, in order within a chat (chats are caught up side by side); what was
    # answered before the stop is not answered again.
    tagged = tagged_texts(scripted_engine)
    assert tagged[:2] == ["I am so happy today", "hello there"]
    assert sorted(tagged[2:]) == sorted(["the train was late again", "and it rained",
                                         "are you back?"])  # fmt: skip
    assert tagged.index("the train was late again") < tagged.index("and it rained")
    assert {call.params["channel_id"] for call in fake.calls_to(HISTORY)} == {
        str(DM_OF[ALICE_ID]),
        str(CHANNEL),
    }


async def test_what_a_user_forgot_is_not_answered_again_after_a_restart(
    make_adapter: AdapterFactory, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    first = await make_adapter()
    # Bob, then Alice, in one channel: Alice's is the newest message the bot recorded there.
    bob_first = in_channel(fake, BOB, f"{mention(fake)} good morning")
    await fake.dispatch("MESSAGE_CREATE", bob_first)
    await fake.wait_for(functools.partial(answers_to, fake, bob_first, "good morning"))
    alices = in_channel(fake, ALICE, f"{mention(fake)} my secret worry")
    await fake.dispatch("MESSAGE_CREATE", alices)
    await fake.wait_for(functools.partial(answers_to, fake, alices, "my secret worry"))
    assert len(await mood_events(scripted_engine, ALICE_ID, at_least=1)) == 1

    ask = slash(fake, ALICE, "forget")
    await fake.dispatch("INTERACTION_CREATE", ask)
    await wait_for_call(fake, CALLBACK, ask["token"])
    confirm = press(fake, ALICE, fake.original_message(int(ask["id"])) or {}, style=4)
    await fake.dispatch("INTERACTION_CREATE", confirm)
    await wait_for_call(fake, EDIT_ORIGINAL, confirm["token"])
    assert await mood_events(scripted_engine, ALICE_ID) == []
    await first.stop()

    # While offline, Bob asks again; at the next start only his message is caught up on.
    bob_again = in_channel(fake, BOB, f"{mention(fake)} are you back?")
    fake.post_unseen(bob_again)
    await make_adapter()
    await fake.wait_for(functools.partial(answers_to, fake, bob_again, "are you back?"))
    # A chat is caught up oldest first, so Alice's would have come before Bob's.
    assert tagged_texts(scripted_engine).count("my secret worry") == 1
    assert len(answers_to(fake, alices, "my secret worry")) == 1
    assert await mood_events(scripted_engine, ALICE_ID) == []


async def test_a_full_re_login_catches_up_too(
    make_adapter: AdapterFactory, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await make_adapter()
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "hello again"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("hello again"))

    # Sent while the session is down; Discord ends the session, the bot logs in again.
    missed = dm(fake, ALICE, "did you get this one?")
    fake.post_unseen(missed)
    await fake.end_session()
    # discord.py waits 5 s before any login but the first (Client.before_identify_hook).
    late = await fake.wait_for(functools.partial(answers_to, fake, missed), timeout=30)
    assert texts.LATE_NOTE in late[0]["content"]
    assert len(fake.identifies) == 2  # a new login, not a resume
    assert tagged_texts(scripted_engine) == ["hello again", "did you get this one?"]


async def test_beyond_the_limit_the_newest_are_answered_and_the_rest_logged(
    make_adapter: AdapterFactory,
    fake: FakeDiscord,
    scripted_engine: ScriptedEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(chat_cog, "CATCH_UP_MAX", 2)
    first = await make_adapter()
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "before the outage"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("before the outage"))
    await first.stop()

    offline = [dm(fake, ALICE, f"offline message {n}") for n in range(5)]
    for message in offline:
        fake.post_unseen(message)
    caplog.set_level(logging.INFO, logger="adapters.discord.chat_cog")
    await make_adapter()
    for message in offline[3:]:
        await fake.wait_for(functools.partial(answers_to, fake, message))
    assert tagged_texts(scripted_engine) == [
        "before the outage", "offline message 3", "offline message 4"
    ]  # fmt: skip
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == [
        f"Discord channel {DM_OF[ALICE_ID]}: 5 messages to the bot came while it was offline; "
        "answering the latest 2, skipped 3 older ones"
    ]

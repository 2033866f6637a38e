"""Messages sent on Discord while no bot process was connected: Discord does not replay them,
so at start-up the adapter reads each recent chat's history on from the latest message the
inbox recorded there, and answers what it missed, once, quoted and noted as late."""

from __future__ import annotations

import functools

import tests.adapters.test_discord as base
from engine.chat import texts
from tests.adapters.test_discord import (
    ALICE,
    ALICE_ID,
    BOB,
    CHANNEL,
    DM_OF,
    AdapterFactory,
    dm,
    expected_reply,
    in_channel,
    mention,
    tagged_texts,
    wait_for_message,
)
from tests.conftest import ScriptedEngine
from tests.fakes.discord_api import JSON, FakeDiscord

HISTORY = "GET /channels/{channel_id}/messages"

# The Discord adapter suite's fixtures: the fake (gateway, REST, TLS proxy) and the adapter.
fake = base.fake
make_adapter = base.make_adapter
scripted_runner = base.scripted_runner


def answers_to(fake: FakeDiscord, message: JSON) -> list[JSON]:
    """The bot's complete answers that quote `message`."""
    reply = expected_reply(message["content"]).split("\n\n")[1]
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

"""The journal on Discord, through the real discord.py client against the fake: correction
buttons under the label (only the author's press counts, once; others are told why,
ephemerally), the journal's slash commands, and /export's files, ephemeral."""

from __future__ import annotations

import copy
import csv
import io
import json
from typing import Any

from adapters.discord.adapter import DiscordAdapter
from engine.chat import texts
from engine.types import UserKey
from tests.adapters import test_discord
from tests.adapters.test_discord import (
    ALICE,
    ALICE_ID,
    BOB,
    CALLBACK,
    CHANNEL,
    DM_OF,
    EDIT_ORIGINAL,
    dm,
    expected_reply,
    in_channel,
    mention,
    slash,
    wait_for_call,
    wait_for_message,
)
from tests.conftest import ScriptedEngine
from tests.fakes.discord_api import EPHEMERAL, JSON, FakeDiscord
from tests.support import EPOCH

# The Discord suite's fixtures: the fake, and adapters on the scripted engine.
scripted_runner = test_discord.scripted_runner
fake = test_discord.fake
make_adapter = test_discord.make_adapter
adapter = test_discord.adapter

ALICE_KEY = UserKey("discord", str(ALICE_ID))


async def with_buttons(fake: FakeDiscord, channel_id: int, content: str) -> JSON:
    await wait_for_message(fake, channel_id, content)
    found = await fake.wait_for(
        lambda: [
            m
            for m in fake.channel_messages(channel_id)
            if m["content"] == content and m.get("components")
        ]
    )
    return copy.deepcopy(found[0])  # as a client saw it (the fake edits its own in place)


def buttons(message: JSON) -> dict[str, str]:
    """custom ids by the tone they offer"""
    row = message["components"][0]["components"]
    return {b["custom_id"].rsplit(":", 1)[1]: b["custom_id"] for b in row}


def press(fake: FakeDiscord, user: JSON, message: JSON, custom_id: str, **extra: Any) -> JSON:
    data = {"custom_id": custom_id, "component_type": 2}
    channel_id = int(message["channel_id"])
    return fake.interaction(
        user=user, channel_id=channel_id, data=data, type=3, message=message, **extra
    )


async def test_the_author_corrects_a_label_once_and_mood_counts_it(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    sent = dm(fake, ALICE, "I am so happy today")
    await fake.dispatch("MESSAGE_CREATE", sent)
    label = await with_buttons(fake, DM_OF[ALICE_ID], expected_reply("I am so happy today"))
    offered = buttons(label)
    assert sorted(offered) == ["negative", "neutral"]
    assert offered["negative"] == f"mood:fix:{sent['id']}:negative"

    pressed = press(fake, ALICE, label, offered["negative"])
    await fake.dispatch("INTERACTION_CREATE", pressed)
    update = await wait_for_call(fake, CALLBACK, pressed["token"])
    assert update.json["type"] == 7  # the label message is updated in place
    content = update.json["data"]["content"]
    assert content.startswith(texts.corrected_line("positive", "negative"))
    assert content.endswith("reply to: I am so happy today")
    assert update.json["data"]["components"] == []  # corrected once: the buttons go
    note = await fake.wait_for(
        lambda: [m for m in fake.channel_messages(DM_OF[ALICE_ID]) if m["flags"] & EPHEMERAL]
    )
    assert note[0]["content"] == texts.correction_done("positive", "negative")
    report = await scripted_engine.service.mood(ALICE_KEY, 7)
    assert (report.positive, report.negative) == (0, 1)
    answered = [c for c in fake.calls_to(CALLBACK) if c.params["token"] == pressed["token"]]
    assert len(answered) == 1  # handled once (by the DynamicItem alone)

    again = press(fake, ALICE, label, offered["neutral"])  # a stale client's second press
    await fake.dispatch("INTERACTION_CREATE", again)
    refused = await wait_for_call(fake, CALLBACK, again["token"])
    assert refused.json["data"]["content"] == texts.CORRECTION_ALREADY
    assert refused.json["data"]["flags"] == EPHEMERAL
    [event] = await scripted_engine.store.mood_events(ALICE_KEY, EPOCH)
    assert event.corrected == "negative"


async def test_in_a_channel_someone_else_is_refused_with_why(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    text = "what a great day"
    await fake.dispatch("MESSAGE_CREATE", in_channel(fake, ALICE, f"{mention(fake)} {text}"))
    label = await with_buttons(fake, CHANNEL, expected_reply(text))
    intruder = press(fake, BOB, label, buttons(label)["neutral"], guild_id=test_discord.GUILD)
    await fake.dispatch("INTERACTION_CREATE", intruder)
    refused = await wait_for_call(fake, CALLBACK, intruder["token"])
    assert refused.json["data"]["content"] == texts.CORRECTION_NOT_YOURS
    assert refused.json["data"]["flags"] == EPHEMERAL
    report = await scripted_engine.service.mood(ALICE_KEY, 7)
    assert (report.positive, report.neutral) == (1, 0)


async def test_wrong_and_export_are_ephemeral_slash_commands(
    adapter: DiscordAdapter, fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "everything went wrong"))
    await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply("everything went wrong"))
    wrong = slash(fake, ALICE, "wrong", [{"name": "label", "type": 3, "value": "neutral"}])
    await fake.dispatch("INTERACTION_CREATE", wrong)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, wrong["token"])
    assert answer.json["content"] == texts.correction_done("negative", "neutral")

    export = slash(fake, ALICE, "export", channel_id=CHANNEL, guild_id=test_discord.GUILD)
    await fake.dispatch("INTERACTION_CREATE", export)
    answer = await wait_for_call(fake, EDIT_ORIGINAL, export["token"])
    ack = await wait_for_call(fake, CALLBACK, export["token"])
    assert ack.json["data"]["flags"] == EPHEMERAL  # only Alice sees it, even in a channel
    assert answer.json["content"] == texts.export_done(1, 1, 2)
    files = {f.filename.rsplit(".", 1)[1]: f.data for f in answer.files}
    assert sorted(files) == ["csv", "json"]
    assert json.loads(files["json"])["mood_events"][0]["corrected"] == "neutral"
    [row] = csv.DictReader(io.StringIO(files["csv"].decode("utf-8-sig")))
    assert (row["shown"], row["counted"]) == ("negative", "neutral")

"""/mood report on Discord, through the real discord.py client against the fake: the PDF is an
attachment of the ephemeral answer, wherever the command is run."""

from __future__ import annotations

from adapters.discord.adapter import DiscordAdapter
from engine.chat import texts
from tests.adapters import test_discord
from tests.adapters.test_discord import (
    ALICE,
    ALICE_ID,
    CALLBACK,
    CHANNEL,
    DM_OF,
    EDIT_ORIGINAL,
    dm,
    expected_reply,
    slash,
    wait_for_message,
)
from tests.engine.chat.test_report import pdf_pages
from tests.fakes.discord_api import EPHEMERAL, ApiCall, FakeDiscord

# The Discord suite's fixtures: the fake, and adapters on the scripted engine.
scripted_runner = test_discord.scripted_runner
fake = test_discord.fake
make_adapter = test_discord.make_adapter
adapter = test_discord.adapter

DRAWING_S = 120.0  # a hang guard: matplotlib's first PDF takes seconds on a loaded machine


async def test_the_report_is_an_ephemeral_pdf_attachment(
    adapter: DiscordAdapter, fake: FakeDiscord
) -> None:
    for text in ("I am so happy today", "everything went wrong"):
        await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, text))
        await wait_for_message(fake, DM_OF[ALICE_ID], expected_reply(text))

    options = [{"name": "view", "type": 3, "value": "report"},
               {"name": "days", "type": 4, "value": 14}]  # fmt: skip
    report = slash(fake, ALICE, "mood", options, channel_id=CHANNEL, guild_id=test_discord.GUILD)
    await fake.dispatch("INTERACTION_CREATE", report)

    def answered() -> list[ApiCall]:
        return [c for c in fake.calls_to(EDIT_ORIGINAL)
                if c.params["token"] == report["token"] and c.status]  # fmt: skip

    [answer] = await fake.wait_for(answered, DRAWING_S, what="the report")
    ack = next(c for c in fake.calls_to(CALLBACK) if c.params["token"] == report["token"])
    assert ack.json["data"]["flags"] == EPHEMERAL  # only Alice sees it, even in a channel
    assert answer.json["content"] == texts.report_caption(14, 2)
    [file] = answer.files
    assert file.filename.endswith("-14d.pdf")
    text = " ".join(pdf_pages(file.data))
    assert "2 messages: Positive 1 (50%), Neutral 0 (0%), Negative 1 (50%)" in text


async def test_the_views_without_days_ignore_them(
    adapter: DiscordAdapter, fake: FakeDiscord
) -> None:
    options = [{"name": "view", "type": 3, "value": "why"},
               {"name": "days", "type": 4, "value": 14}]  # fmt: skip
    why = slash(fake, ALICE, "mood", options)
    await fake.dispatch("INTERACTION_CREATE", why)

    def answered() -> list[ApiCall]:
        return [c for c in fake.calls_to(EDIT_ORIGINAL)
                if c.params["token"] == why["token"] and c.status]  # fmt: skip

    [answer] = await fake.wait_for(answered, what="the answer to /mood why")
    assert answer.json["content"] == texts.WHY_NOTHING

"""Discord platform faults during a streamed reply (issue #18), on the loopback fake.

Each fault is injected while a reply streams; the final message must show the whole reply,
nothing may crash (the adapter fixture fails a test that logged an ERROR), and other users
keep being answered. Covered elsewhere, not repeated here: a few 429s on the label post and
on edits, with and without the `Via` header that makes discord.py wait them out itself
(test_discord.py, test_rate_limited_posts_and_edits_lose_no_text), and a RECONNECT (op 7)
between two messages (test_gateway_reconnect_resumes_and_keeps_answering).
"""

from __future__ import annotations

import logging

import pytest

from engine.chat import texts
from engine.types import Sentiment
from tests.adapters import test_discord as base
from tests.adapters.test_discord import (
    ALICE,
    ALICE_ID,
    BOB,
    BOB_ID,
    DM_OF,
    EDITS,
    MESSAGES,
    dm,
    mood_events,
    wait_for_message,
)
from tests.conftest import ScriptedEngine
from tests.fakes.discord_api import FakeDiscord
from tests.scripted import ScriptedRunner
from tests.support import inbox_states

# The Discord adapter suite's fixtures: the fake (gateway, REST, TLS proxy) and the adapter.
fake = base.fake
make_adapter = base.make_adapter
adapter = base.adapter

WORDS = [f"word{i}" for i in range(40)]
REPLY = " ".join(WORDS)
SHOWN = f"{texts.label_line(Sentiment('negative', 0.1))}\n\n{REPLY}"


@pytest.fixture
def scripted_runner() -> ScriptedRunner:
    # 40 words at 0.05 s: two seconds of streaming, so the faults land mid-reply.
    return ScriptedRunner(reply_text=REPLY, delay_s=0.05)


@pytest.mark.slow  # a long scripted fault sequence
async def test_a_429_storm_on_edits_outlasting_discord_py_retries_loses_no_text(
    adapter: base.DiscordAdapter, fake: FakeDiscord
) -> None:
    # discord.py waits out five 429s of one request (Retry-After, X-RateLimit-Reset-After),
    # then raises; the renderer takes over from there. Eight in a row hit several calls.
    fake.fail("PATCH", "/channels/{channel_id}/messages/{message_id}", times=8, retry_after=0.1)
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "tell me something"))
    await fake.dispatch("MESSAGE_CREATE", dm(fake, BOB, "me too"))

    await wait_for_message(fake, DM_OF[ALICE_ID], SHOWN)
    await wait_for_message(fake, DM_OF[BOB_ID], SHOWN)
    assert [c.status for c in fake.calls_to(EDITS)].count(429) == 8
    assert len([c for c in fake.calls_to(MESSAGES) if c.status == 200]) == 2  # none resent
    for channel in DM_OF.values():
        [message] = fake.channel_messages(channel)
        assert message["content"] == SHOWN


@pytest.mark.slow  # a long scripted fault sequence
async def test_a_gateway_drop_mid_reply_resumes_and_the_reply_completes(
    adapter: base.DiscordAdapter, fake: FakeDiscord
) -> None:
    await fake.dispatch("MESSAGE_CREATE", dm(fake, ALICE, "tell me something"))
    posted = await fake.wait_for(lambda: fake.channel_messages(DM_OF[ALICE_ID]))
    await fake.drop_gateway(4000)  # Discord's "unknown error": resumable
    assert WORDS[-1] not in posted[0]["content"]  # the reply was still streaming
    # Sent while the gateway is down: delivered on the resumed connection.
    await fake.dispatch("MESSAGE_CREATE", dm(fake, BOB, "hello?"))

    await wait_for_message(fake, DM_OF[ALICE_ID], SHOWN)
    await wait_for_message(fake, DM_OF[BOB_ID], SHOWN)
    assert len(fake.identifies) == 1  # resumed, not a fresh session
    assert len(fake.resumes) == 1
    assert len(fake.connections) == 2


@pytest.mark.slow  # a long scripted fault sequence
async def test_a_user_whose_dms_are_closed_is_stored_warned_once_and_others_go_on(
    adapter: base.DiscordAdapter,
    fake: FakeDiscord,
    scripted_engine: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.fail("POST", "/channels/{channel_id}/messages", status=403)  # the label post
    closed = dm(fake, ALICE, "I closed my DMs")
    await fake.dispatch("MESSAGE_CREATE", closed)
    await fake.wait_for(lambda: [c for c in fake.calls_to(MESSAGES) if c.status == 403])
    await fake.dispatch("MESSAGE_CREATE", dm(fake, BOB, "still here"))

    await wait_for_message(fake, DM_OF[BOB_ID], SHOWN)
    [event] = await mood_events(scripted_engine, ALICE_ID, at_least=1)
    assert event.chat_id == str(DM_OF[ALICE_ID])
    message = ("discord", str(DM_OF[ALICE_ID]), closed["id"])
    await fake.wait_for(lambda: inbox_states(scripted_engine.db_path).get(message) == "done")
    assert fake.channel_messages(DM_OF[ALICE_ID]) == []
    refused = [r for r in caplog.records if "refused the reply" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.WARNING]

"""A flood of /mood why through the real Telegram entry point (python-telegram-bot against the
loopback fake Bot API, concurrent updates on): capped per user like a flood of messages, so
another user's message sent in the middle of it still gets its label and reply."""

from __future__ import annotations

import pytest

from adapters.telegram.adapter import TelegramAdapter
from engine.chat import texts
from tests.adapters.test_telegram import (  # noqa: F401 - fixtures
    OTHER,
    POSITIVE,
    USER,
    api,
    bot,
    make_adapter,
    wait_text,
)
from tests.conftest import ScriptedEngine
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.scripted import GatedRunner

FLOOD = 40  # more than the worker's queue in these tests (16): enough to fill it
WAIT_S = 30.0


@pytest.fixture
def scripted_runner() -> GatedRunner:
    return GatedRunner()


async def test_a_flood_of_mood_why_slows_down_its_sender_and_not_another_user(
    bot: TelegramAdapter,  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
    scripted_engine: ScriptedEngine,
    scripted_runner: GatedRunner,
) -> None:
    said = "I lost my keys, but the party was great!"
    api.private_text(USER, said)
    await wait_text(api, USER, "reply to: I lost my keys", WAIT_S)

    scripted_runner.gate.clear()  # the first /mood why's label pass holds the worker
    for _ in range(FLOOD):
        api.private_text(USER, "/mood why")

    def answered() -> int:
        return len(api.bot_texts(USER)) - 1  # the reply before the flood

    # The refused ones are answered at once, whatever refuses them (the cap, or a full queue).
    await api.wait_for(lambda: answered() >= FLOOD - 16, WAIT_S, what="the flood's excess")
    api.private_text(OTHER, "what a great day")
    worker = scripted_engine.worker
    # Its label job waits at the worker behind the flooder's one, or it was refused.
    await api.wait_for(
        lambda: texts.BUSY in api.bot_texts(OTHER) or worker.outstanding == 2,
        WAIT_S,
        what="the other user's label job at the worker",
    )
    scripted_runner.gate.set()

    shown = await api.wait_for(lambda: api.bot_texts(OTHER), WAIT_S, what="an answer")
    assert shown[0].startswith(POSITIVE)  # its label, not "busy"
    final = await wait_text(api, OTHER, "reply to: what a great day", WAIT_S)
    assert final.startswith(POSITIVE)
    await api.wait_for(lambda: answered() == FLOOD, WAIT_S, what="every /mood why answered")
    answers = api.bot_texts(USER)[1:]
    cap = scripted_engine.service.config.user_queue_max
    assert sum(answer.startswith("🔎 Why") for answer in answers) == cap + 1
    assert answers.count(texts.SLOW_DOWN) == FLOOD - cap - 1
    # Its label, then one pass per explanation; counted per text, as the worker may label the
    # other user's message in the same batch as an explanation.
    explained = sum(call.count(said) for call in scripted_runner.tag_calls)
    assert explained == 1 + cap + 1

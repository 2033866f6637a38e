"""Commands that use the model (/mood why, /mood week, the weekly digest) take the user's turn
like messages do: a flood of them is capped per user at USER_QUEUE_MAX, its excess told to slow
down, and another user's message is labelled meanwhile instead of finding the model's queue
full of the flooder's work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from engine.chat import digest, texts
from engine.chat.commands import Caller, CommandResult, Commands
from engine.chat.findings import WeekSummary
from engine.types import DigestSubscription, ReplyDone, ReplyFailed, SentimentTagged, UserKey
from tests.conftest import ScriptedEngine
from tests.engine.chat.test_flood import HANG, capped, holding, msg, run, start
from tests.scripted import GatedRunner

FLOODER, OTHER = "42", "99"
FLOODER_KEY = UserKey("telegram", FLOODER)
AT_HOME = Caller(FLOODER_KEY, f"chat-{FLOODER}")
WHY_PREFIX = "🔎 Why"


@pytest.fixture
def scripted_runner() -> GatedRunner:
    return GatedRunner()


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(HANG):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


def why_tasks(commands: Commands, count: int) -> list[asyncio.Task[CommandResult]]:
    return [asyncio.create_task(commands.run("mood", AT_HOME, "why")) for _ in range(count)]


async def test_a_flood_of_mood_why_is_capped_and_another_users_message_still_gets_its_label(
    scripted_engine: ScriptedEngine, scripted_runner: GatedRunner
) -> None:
    cap, flood = 2, 40  # 40 > the worker's queue (16 in these tests): the flood could fill it
    service = capped(scripted_engine, cap)
    commands = Commands(service)
    said = "I lost my keys, but the party was great!"
    assert isinstance((await run(service, msg(said, "a0", user=FLOODER)))[-1], ReplyDone)

    scripted_runner.gate.clear()  # the first /mood why's label pass holds the worker
    whys = why_tasks(commands, flood)
    worker = scripted_engine.worker
    # Refused ones are answered at once, whichever refuses them (the cap, or a full queue).
    await until(lambda: sum(task.done() for task in whys) >= flood - 16, "the flood's excess")
    other = start(service, msg("a great day", "b1", user=OTHER))
    # The other user's label job is at the worker (behind the flooder's one), or refused.
    await until(lambda: other.done() or worker.outstanding == 2, "the other user's label job")
    scripted_runner.gate.set()

    events = await asyncio.wait_for(other, HANG)
    assert isinstance(events[0], SentimentTagged), events
    assert isinstance(events[-1], ReplyDone)
    answers = [result.text for result in await asyncio.wait_for(asyncio.gather(*whys), HANG)]
    # One explained, `cap` waited their turn, and only the flooder is told to wait.
    assert sum(answer.startswith(WHY_PREFIX) for answer in answers) == cap + 1
    assert answers.count(texts.SLOW_DOWN) == flood - cap - 1
    # The message's label, then one pass per explanation. Counted per text, not per call: the
    # worker may label the other user's message in the same batch as an explanation.
    whole = sum(call.count(said) for call in scripted_runner.tag_calls)
    assert whole == 1 + cap + 1
    assert service._user_locks == {}


async def test_commands_and_messages_share_the_cap_and_a_command_waits_its_turn(
    scripted_engine: ScriptedEngine,
) -> None:
    service = capped(scripted_engine, 1)
    commands = Commands(service)
    await run(service, msg("I lost my keys, but the party was great!", "0", user=FLOODER))
    first = await holding(service, msg("what a great day, but so tired", "1", user=FLOODER))
    # In line behind the message being answered: it must explain that one, not the one before.
    (why,) = why_tasks(commands, 1)
    await until(lambda: service._user_locks[FLOODER_KEY].holders == 2, "/mood why in line")
    week = await asyncio.wait_for(commands.run("mood", AT_HOME, "week"), HANG)
    assert week == CommandResult(texts.SLOW_DOWN)
    assert await run(service, msg("one more", "2", user=FLOODER)) == [
        ReplyFailed("slow_down", texts.SLOW_DOWN)
    ]
    assert not why.done()
    assert isinstance([event async for event in first][-1], ReplyDone)
    answer = (await asyncio.wait_for(why, HANG)).text
    assert answer.startswith(WHY_PREFIX)
    assert "what a great day" in answer
    # Drained: commands are answered as usual again.
    assert (await commands.run("mood", AT_HOME, "why")).text.startswith(WHY_PREFIX)


async def test_the_digest_waits_its_turn_and_is_never_refused(
    scripted_engine: ScriptedEngine,
) -> None:
    service = capped(scripted_engine, 0)
    await run(service, msg("I am so happy today", "0", user=FLOODER))
    await digest.set_digest(service, FLOODER_KEY, f"chat-{FLOODER}", on=True)
    first = await holding(service, msg("what a great day", "1", user=FLOODER))
    sent: list[str] = []

    async def send(subscription: DigestSubscription, summary: WeekSummary) -> None:
        sent.append(summary.text)

    job = asyncio.create_task(digest.send_digests(service, "telegram", send))
    await until(lambda: service._user_locks[FLOODER_KEY].holders == 2, "the digest in line")
    assert not job.done()  # behind the message being answered, although USER_QUEUE_MAX=0
    async for _ in first:
        pass
    done = await asyncio.wait_for(job, HANG)
    assert done.sent == [FLOODER_KEY]
    assert "2 messages" in sent[0]  # the message it waited for is in the week

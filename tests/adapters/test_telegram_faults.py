"""Telegram platform faults during a streamed reply (issue #18), on the loopback fake Bot API.

Each fault is injected while a reply streams; the reply's final text must be the whole reply,
nothing may crash, and other users keep being answered. Covered elsewhere, not repeated here:
a single 429 on the final edit or on the label post (test_telegram.py,
test_flood_control_is_waited_out_and_no_text_is_lost), "message is not modified" and a deleted
message at the sink (test_sink_ignores_not_modified_and_replaces_a_deleted_message).
"""

from __future__ import annotations

import itertools
import logging

import pytest

from engine.chat import texts
from engine.types import Sentiment
from tests.adapters import test_telegram as base
from tests.adapters.test_telegram import OTHER, USER, MakeAdapter, key, wait_text
from tests.conftest import ScriptedEngine
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.support import inbox_states, stored_mood_events

# The Telegram adapter suite's fixtures: the fake Bot API and an adapter factory on it.
api = base.api
make_adapter = base.make_adapter

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
WORDS = [f"word{i}" for i in range(20)]
REPLY = " ".join(WORDS)
LABEL = texts.label_line(Sentiment("negative", 0.1))  # what every message here is tagged
SHOWN = f"{LABEL}\n\n{REPLY}"


@pytest.fixture
def slow_reply(scripted_engine: ScriptedEngine) -> ScriptedEngine:
    """20 words at 0.05 s each: about a second of streaming, so faults land mid-reply."""
    scripted_engine.runner.reply_text = REPLY
    scripted_engine.runner.delay_s = 0.05
    return scripted_engine


def problems(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


async def final_text(api: FakeTelegramAPI, chat_id: int, timeout: float = 15.0) -> list[str]:
    """The chat's bot messages once the last word of REPLY shows."""
    await wait_text(api, chat_id, WORDS[-1], timeout=timeout)
    return api.bot_texts(chat_id)


# PTB's own RetryAfter constructor trips its retry_after deprecation warning.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
@pytest.mark.slow  # a long scripted fault sequence
async def test_a_storm_of_429s_on_edits_loses_no_text(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    slow_reply: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await make_adapter(edit_interval_s=0.05)
    # Five edits in a row refused (Telegram's minimum wait is 1 s), hitting intermediate
    # frames of both chats and the final one: more than any one call waits out on its own.
    api.fail_next("editMessageText", 429, retry_after=1, times=5)
    api.private_text(USER, "tell me something")
    api.private_text(OTHER, "me too")

    assert await final_text(api, USER) == [SHOWN]
    assert await final_text(api, OTHER) == [SHOWN]
    edits = api.calls_to("editMessageText")
    assert [c.status for c in edits].count(429) == 5
    for chat in (USER, OTHER):
        mine = [c for c in edits if c.params["chat_id"] == chat]
        # After a 429 the chat's next edit came only once retry_after had passed: the
        # renderer held back (the forced final frame too) instead of earning more 429s.
        for refused, after in itertools.pairwise(mine):
            if refused.status == 429:
                assert after.at - refused.at >= 0.95, (refused.at, after.at)
    assert len(api.calls_to("sendMessage")) == 2  # one message each: nothing resent
    assert problems(caplog) == []


async def test_not_modified_from_an_edit_that_got_through_is_not_an_error(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    slow_reply: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await make_adapter(edit_interval_s=0.05)
    # Telegram applied these edits yet answered "not modified", as it does to the retry of an
    # edit whose first answer was lost; the final edit is among them.
    api.fail_next("editMessageText", 400, description=NOT_MODIFIED, applied=True, times=50)
    api.private_text(USER, "tell me something")

    assert await final_text(api, USER) == [SHOWN]
    assert {c.status for c in api.calls_to("editMessageText")} == {400}
    assert len(await stored_mood_events(slow_reply.store, key(USER), at_least=1)) == 1
    assert problems(caplog) == []


@pytest.mark.parametrize("method", ["sendMessage", "editMessageText"])
async def test_a_user_who_blocked_the_bot_is_stored_warned_once_and_others_go_on(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    slow_reply: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
    method: str,
) -> None:
    caplog.set_level(logging.INFO)
    await make_adapter(edit_interval_s=0.05)
    api.forbid(method)  # the label post, or the first edit of the streamed reply
    blocked = api.private_text(USER, "I blocked you")
    await api.wait_for(lambda: [c for c in api.calls_to(method) if c.status == 403])
    api.private_text(OTHER, "still here")

    assert await final_text(api, OTHER) == [SHOWN]
    [event] = await stored_mood_events(slow_reply.store, key(USER), at_least=1)
    assert event.chat_id == str(USER)
    # The message ran to the end: done, not left as unfinished work to be answered again.
    message = ("telegram", str(USER), str(blocked["message_id"]))
    await api.wait_for(lambda: inbox_states(slow_reply.db_path).get(message) == "done")
    assert api.bot_texts(USER) == ([] if method == "sendMessage" else [LABEL])
    # Only the first refused call was made: nothing was sent into the blocked chat after it.
    assert [c.status for c in api.calls if c.params.get("chat_id") == USER and c.status != 200] == [
        403
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "refused the reply" in warnings[0].getMessage()
    assert problems(caplog) == []


@pytest.mark.slow  # a long scripted fault sequence
async def test_polling_survives_network_errors_and_answers_what_came_meanwhile(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    slow_reply: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two connections reset, then a 502 from a proxy in front of Telegram: PTB retries after
    # 1 s, 1.5 s and 2.25 s.
    api.drop_next("getUpdates", times=2)
    api.fail_next("getUpdates", 502, description="Bad Gateway")
    api.private_text(USER, "are you there")
    await make_adapter()

    assert await final_text(api, USER) == [SHOWN]
    statuses = [c.status for c in api.calls_to("getUpdates")]
    assert statuses[:3] == [0, 0, 502]
    assert 200 in statuses
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "getUpdates failed" in w]) == 3
    assert problems(caplog) == []  # transient: warnings, not errors with tracebacks
    api.private_text(OTHER, "and me")
    assert await final_text(api, OTHER) == [SHOWN]


async def answered_once(
    api: FakeTelegramAPI, engine: ScriptedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """The user's one message ends done in the inbox, with one mood event and no error."""
    done = lambda: list(inbox_states(engine.db_path).values()) == ["done"]  # noqa: E731
    await api.wait_for(done, what="the message done")
    assert len(await stored_mood_events(engine.store, key(USER))) == 1
    assert problems(caplog) == []


async def test_a_bad_gateway_and_reset_connections_are_retried_not_the_end_of_a_reply(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    slow_reply: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Intermediate frames throttled away: the label post and the final edit are the calls.
    await make_adapter(edit_interval_s=60)
    api.fail_next("sendMessage", 502, description="Bad Gateway")
    api.drop_next("editMessageText", times=2)
    api.private_text(USER, "tell me something")

    # One message, the whole reply. Telegram may have made the first label all the same
    # (here it did not): the reply says a cut-off copy may show.
    doubt = texts.cut_off_copy("tell me something")
    assert await final_text(api, USER) == [f"{doubt}\n{SHOWN}"]
    assert [c.status for c in api.calls_to("sendMessage")] == [502, 200]
    assert [c.status for c in api.calls_to("editMessageText")] == [0, 0, 200]
    await answered_once(api, slow_reply, caplog)


async def test_a_send_made_although_its_answer_failed_leaves_a_copy_the_reply_owns_up_to(
    make_adapter: MakeAdapter,
    api: FakeTelegramAPI,
    slow_reply: ScriptedEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Telegram made the label and its answer was lost (a gateway error after the fact): the
    # retry posts a second label, which carries the reply. The first cannot be found again
    # (no idempotent send, no way to list a chat), so the reply says a copy may show.
    await make_adapter(edit_interval_s=60)
    api.fail_next("sendMessage", 502, description="Bad Gateway", applied=True)
    api.private_text(USER, "我今天有点累")

    doubt = texts.cut_off_copy("我今天有点累")
    assert doubt.startswith("⚠️ 中断时")  # in the language of the message
    assert await final_text(api, USER) == [LABEL, f"{doubt}\n{SHOWN}"]
    await answered_once(api, slow_reply, caplog)


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_reply_without_a_failed_send_carries_no_note(
    make_adapter: MakeAdapter, api: FakeTelegramAPI, slow_reply: ScriptedEngine
) -> None:
    await make_adapter(edit_interval_s=60)
    api.fail_next("sendMessage", 429, retry_after=1)  # refused, never made: no doubt
    api.private_text(USER, "tell me something")
    assert await final_text(api, USER) == [SHOWN]

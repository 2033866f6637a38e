"""The inbox's record of a reply's delivery on both databases: every message a reply took
(each chunk, its support note, a send under way) is kept for a restart, and an answer stored
before it was shown in full stays 'received', with the answer, until mark_done."""

from __future__ import annotations

import pytest

from engine.types import IncomingMessage, MessageKey, ReplyMessages, Sentiment, StoredReply
from storage.store import SqlMoodStore
from tests.storage.test_storage import ALICE, T0, Db, db, event, exchange, store  # noqa: F401

pytestmark = pytest.mark.asyncio

KEY = MessageKey("telegram", "chat-1", "100")
MESSAGE = IncomingMessage("telegram", "42", "chat-1", "so tired today", "100", "{}")
ANSWER = StoredReply("Rest a little, you earned it. 🌙", Sentiment("negative", 0.2), "💛 note")


async def test_every_message_of_a_reply_is_kept_for_a_restart(
    store: SqlMoodStore,  # noqa: F811
    db: Db,  # noqa: F811
) -> None:
    assert await store.claim_message(KEY, ALICE, T0, MESSAGE)
    await store.set_reply_messages(KEY, ReplyMessages(("11",), None, "key-2"))
    await store.set_reply_messages(KEY, ReplyMessages(("11", "12", "13"), "14", None))
    other = await SqlMoodStore.open(db.target)
    try:
        await store.close()  # as its process's death would
        [pending] = await other.unfinished("telegram")
        assert pending.messages == ReplyMessages(("11", "12", "13"), "14", None)
        assert pending.reply_ref == "11 12 13"
        await other.set_reply_messages(KEY, ReplyMessages(("11", "12"), None, "key-3"))
        [pending] = await other.unfinished("telegram")  # its own now? not taken yet: listed
        assert pending.messages == ReplyMessages(("11", "12"), None, "key-3")
    finally:
        await other.close()


async def test_an_answer_stored_before_it_is_shown_stays_received_until_mark_done(
    store: SqlMoodStore,  # noqa: F811
    db: Db,  # noqa: F811
) -> None:
    assert await store.claim_message(KEY, ALICE, T0, MESSAGE)
    await store.record_exchange(event(), exchange(1), done=KEY, reply=ANSWER)
    assert await db.count("mood_events") == 1
    assert await db.count("inbox", "state = 'received' AND text IS NOT NULL") == 1
    assert await store.stored_reply(KEY) == ANSWER
    await store.keep_reply(KEY, StoredReply(ANSWER.text, ANSWER.sentiment, "another note"))
    assert (await store.stored_reply(KEY)) == StoredReply(ANSWER.text, ANSWER.sentiment,
                                                          "another note")  # fmt: skip
    await store.mark_done(KEY, T0)
    assert await store.stored_reply(KEY) is None
    assert await db.count("inbox", "state = 'done' AND text IS NULL AND reply IS NULL") == 1
    # A done row stays done: an answer stored again (a late duplicate) is not kept.
    await store.record_exchange(event(), exchange(2), done=KEY, reply=ANSWER)
    assert await db.count("inbox", "state = 'done' AND reply IS NULL") == 1


async def test_without_a_reply_the_exchange_marks_the_message_done_at_once(
    store: SqlMoodStore,  # noqa: F811
    db: Db,  # noqa: F811
) -> None:
    assert await store.claim_message(KEY, ALICE, T0, MESSAGE)
    await store.record_exchange(event(), [], done=KEY)  # a failed reply: nothing to show again
    assert await store.stored_reply(KEY) is None
    assert await db.count("inbox", "state = 'done' AND text IS NULL") == 1

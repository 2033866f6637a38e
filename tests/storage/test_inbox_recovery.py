"""The inbox's crash recovery on both databases: a 'received' message keeps what a retry
needs until it is done, and only its owner — or anyone, once its owner is gone — may take it.

A second store on the same database stands for a second bot process; closing a store ends
its presence exactly as its process's death would (the flock's file descriptor, the
PostgreSQL connection holding the owner lock), which the end-to-end tests do with kill -9.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from engine.types import IncomingMessage, MessageKey, Unfinished, UserKey
from storage.migrations import LEGACY_LAST
from storage.presence import OwnerFiles, new_owner
from storage.store import SqlMoodStore
from tests.storage.legacy_migrations import create_postgres, create_sqlite
from tests.storage.test_storage import ALICE, T0, Db, db, event, exchange, store  # noqa: F401

pytestmark = pytest.mark.asyncio

KEY = MessageKey("telegram", "chat-1", "100")
BOB = UserKey("telegram", "7")
MESSAGE = IncomingMessage("telegram", "42", "chat-1", "so tired today", "100", '{"thread": 7}')


async def test_a_received_message_keeps_its_text_until_it_is_done(
    store: SqlMoodStore,  # noqa: F811
    db: Db,  # noqa: F811
) -> None:
    assert await store.claim_message(KEY, ALICE, T0, MESSAGE)
    await store.set_reply_ref(KEY, "555")
    assert await store.take_message(KEY) == 0  # its own claim: no takeover
    assert await store.unfinished("telegram") == []  # being answered here, not unfinished
    other = await SqlMoodStore.open(db.target)
    try:
        assert await other.unfinished("telegram") == []  # its owner lives
        await store.close()  # as its process's death would
        assert await other.unfinished("telegram") == [Unfinished(MESSAGE, T0, "555")]
        assert await other.unfinished("discord") == []
        assert await other.take_message(KEY) == 1
        await other.record_exchange(event(), exchange(1), done=KEY)
        assert await other.unfinished("telegram") == []
        assert await db.count("inbox", "state = 'done' AND text IS NULL AND origin IS NULL") == 1
        assert await other.take_message(KEY) is None  # done: nobody's to answer
        await other.set_reply_ref(KEY, "556")  # too late: a done row is left as it is
        assert await db.value("SELECT reply_ref FROM inbox") == "555"
    finally:
        await other.close()


async def test_mark_done_drops_the_text_too(store: SqlMoodStore, db: Db) -> None:  # noqa: F811
    assert await store.claim_message(KEY, ALICE, T0, MESSAGE)
    await store.mark_done(KEY, T0 + timedelta(seconds=1))
    assert await db.count("inbox", "text IS NULL") == 1


async def test_waiting_before_counts_the_users_earlier_unfinished_messages(
    store: SqlMoodStore,  # noqa: F811
) -> None:
    keys = [MessageKey("telegram", "chat-1", str(i)) for i in range(5)]
    for i, key in enumerate(keys):
        assert await store.claim_message(key, ALICE, T0 + timedelta(seconds=i))
    other_user = MessageKey("telegram", "chat-2", "9")
    assert await store.claim_message(other_user, BOB, T0 + timedelta(seconds=1))
    await store.mark_done(keys[1], T0 + timedelta(seconds=5))
    assert await store.waiting_before(keys[0], ALICE, T0) == 0
    assert await store.waiting_before(keys[4], ALICE, T0) == 3  # 0, 2, 3: not done 1, not 4
    assert await store.waiting_before(keys[4], ALICE, T0 + timedelta(seconds=2)) == 2  # 2, 3
    assert await store.waiting_before(other_user, BOB, T0) == 0


async def test_latest_messages_gives_each_recent_chats_newest_recorded_message(
    store: SqlMoodStore,  # noqa: F811
) -> None:
    rows = [("discord", "c1", "11", 0), ("discord", "c1", "12", 2), ("discord", "c2", "21", 1),
            ("discord", "old", "1", -100), ("telegram", "c1", "99", 3)]  # fmt: skip
    for platform, chat, message, minutes in rows:
        key = MessageKey(platform, chat, message)
        assert await store.claim_message(key, ALICE, T0 + timedelta(minutes=minutes))
    await store.mark_done(MessageKey("discord", "c1", "12"), T0 + timedelta(minutes=3))
    assert await store.latest_messages("discord", T0 - timedelta(minutes=10)) == [
        MessageKey("discord", "c1", "12"),  # done or not: it was recorded, so it was seen
        MessageKey("discord", "c2", "21"),
    ]
    assert await store.latest_messages("telegram", T0 + timedelta(minutes=5)) == []


async def test_forget_does_not_move_a_chats_catch_up_mark_back(
    store: SqlMoodStore,  # noqa: F811
    db: Db,  # noqa: F811
) -> None:
    bob = UserKey("discord", "7")
    alice = UserKey("discord", "42")
    assert await store.claim_message(MessageKey("discord", "c1", "98"), bob, T0)
    assert await store.claim_message(MessageKey("discord", "c1", "99"), alice, T0)
    assert await store.forget_user(alice) > 0
    # Still Alice's message: a catch-up from Bob's would answer and store hers again.
    assert await store.latest_messages("discord", T0) == [MessageKey("discord", "c1", "99")]
    # The mark is a key and a time: no text, no user.
    assert await db.value("SELECT count(*) FROM catch_up_marks") == 1
    # A message claimed late (a catch-up beside live messages) does not move it back; a
    # newer one (a longer id is a later one) moves it on.
    assert await store.claim_message(MessageKey("discord", "c1", "97"), bob, T0)
    assert await store.latest_messages("discord", T0) == [MessageKey("discord", "c1", "99")]
    assert await store.claim_message(MessageKey("discord", "c1", "100"), bob, T0)
    assert await store.latest_messages("discord", T0) == [MessageKey("discord", "c1", "100")]


async def test_the_marks_start_from_the_inbox_on_upgrade(db: Db) -> None:  # noqa: F811
    # A database the bot made before the marks existed (the last hand-written migration),
    # with messages in its inbox.
    at = "'2026-11-20T12:00:00.000000+00:00'"
    rows = [("c1", "98"), ("c1", "100"), ("c1", "99"), ("c2", "5")]
    statements = [
        f"INSERT INTO users (platform, platform_user_id, created_at) VALUES ('discord', '1', {at});"
    ] + [
        "INSERT INTO inbox (platform, chat_id, message_id, user_id, state, received_at) "
        f"VALUES ('discord', '{chat}', '{message}', 1, 'done', {at});"
        for chat, message in rows
    ]
    if db.kind == "sqlite":
        create_sqlite(Path(db.target), LEGACY_LAST, "\n".join(statements))
    else:
        await create_postgres(db.target, LEGACY_LAST, "\n".join(statements))
    store = await SqlMoodStore.open(db.target)  # noqa: F811
    try:
        assert await store.latest_messages("discord", T0) == [
            MessageKey("discord", "c1", "100"), MessageKey("discord", "c2", "5")
        ]  # fmt: skip
    finally:
        await store.close()


async def test_unfinished_lists_oldest_first_and_skips_rows_without_text(db: Db) -> None:  # noqa: F811
    dead = await SqlMoodStore.open(db.target)
    later = MessageKey("telegram", "chat-1", "101")
    assert await dead.claim_message(later, ALICE, T0 + timedelta(seconds=5), MESSAGE)
    assert await dead.claim_message(KEY, ALICE, T0, MESSAGE)
    # A claim without the message (as before migration 6) cannot be retried.
    assert await dead.claim_message(MessageKey("telegram", "chat-1", "99"), ALICE, T0)
    await dead.close()
    store = await SqlMoodStore.open(db.target)  # noqa: F811
    try:
        found = await store.unfinished("telegram")
    finally:
        await store.close()
    assert [u.key.message_id for u in found] == ["100", "101"]
    assert found[0].message.user_id == "42"
    assert found[0].message.origin == '{"thread": 7}'


async def test_a_live_owners_message_is_not_taken_a_gone_owners_is_once(db: Db) -> None:  # noqa: F811
    owner = await SqlMoodStore.open(db.target)
    others = [await SqlMoodStore.open(db.target) for _ in range(2)]
    try:
        assert await owner.claim_message(KEY, ALICE, T0, MESSAGE)
        # The owner may only be waiting for the user's turn: its message stays its own.
        assert [await other.take_message(KEY) for other in others] == [None, None]
        await owner.close()  # as its process's death would: its presence ends
        first, second = others
        assert await first.take_message(KEY) == 1  # taken over, counted
        assert await second.take_message(KEY) is None  # the new owner lives
        assert await first.take_message(KEY) == 1  # and may go on with it
        assert await db.value("SELECT owner FROM inbox") == first.owner
        await first.close()
        assert await second.take_message(KEY) == 2
    finally:
        for opened in (owner, *others):
            await opened.close()


async def test_the_owner_finds_its_message_taken_and_leaves_it(db: Db) -> None:  # noqa: F811
    owner = await SqlMoodStore.open(db.target)
    other = await SqlMoodStore.open(db.target)
    try:
        assert await owner.claim_message(KEY, ALICE, T0, MESSAGE)
        # The owner's presence was lost while it lived (say its lock connection dropped):
        # another process took the message over; the owner must not answer it too.
        await db.value(f"UPDATE inbox SET owner = '{other.owner}' RETURNING 1")
        assert await owner.take_message(KEY) is None
        assert await other.take_message(KEY) == 0
    finally:
        await owner.close()
        await other.close()


async def test_owner_files_tell_a_live_owner_from_a_gone_one(tmp_path: Path) -> None:
    folder = tmp_path / "bot.db-owners"
    live, dead = OwnerFiles(folder), OwnerFiles(folder)
    live_id, dead_id = new_owner(), new_owner()
    live.hold(live_id)
    dead.hold(dead_id)
    observer = OwnerFiles(folder)
    assert not observer.gone(live_id)
    assert not observer.gone(dead_id)
    # A killed process leaves its file behind, unlocked: read as gone, and swept.
    fd = dead._held[1]  # type: ignore[index]
    dead._held = None
    os.close(fd)
    assert observer.gone(dead_id)
    assert observer.gone(new_owner())  # never seen: gone
    observer.hold(new_owner())
    assert sorted(p.name for p in folder.iterdir()) == sorted([live_id, observer._held[0]])  # type: ignore[index]
    live.release()
    observer.release()
    assert list(folder.iterdir()) == []

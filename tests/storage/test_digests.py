"""The weekly digest's opt-ins in SqlMoodStore, on SQLite and PostgreSQL (the `db` fixture of
test_storage runs each test on both)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.types import DigestSubscription, UserKey
from storage.store import SqlMoodStore
from tests.storage.test_storage import T0, Db, db, event, store  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio

ALICE = UserKey("telegram", "42")
BOB = UserKey("telegram", "43")
CAROL = UserKey("discord", "42")  # the same id on another platform is someone else


async def test_opt_in_and_out_per_platform(store: SqlMoodStore) -> None:  # noqa: F811
    assert await store.set_digest(ALICE, "chat-a", T0) is True
    assert await store.set_digest(ALICE, "chat-a", T0) is False  # already in, same chat
    assert await store.set_digest(BOB, "chat-b", T0 + timedelta(seconds=1)) is True
    assert await store.set_digest(CAROL, "dm-c", T0) is True
    assert await store.digest_subscriptions("telegram") == [
        DigestSubscription(ALICE, "chat-a"),
        DigestSubscription(BOB, "chat-b"),
    ]
    assert await store.digest_subscriptions("discord") == [DigestSubscription(CAROL, "dm-c")]
    assert await store.set_digest(ALICE, "chat-z", T0) is True  # moved to another chat
    assert await store.set_digest(ALICE, None, T0) is True
    assert await store.set_digest(ALICE, None, T0) is False  # already out
    assert await store.digest_subscriptions("telegram") == [DigestSubscription(BOB, "chat-b")]


async def test_the_opt_in_survives_reopening(db: Db) -> None:  # noqa: F811
    first = await SqlMoodStore.open(db.target)
    await first.set_digest(ALICE, "chat-a", T0)
    await first.close()
    again = await SqlMoodStore.open(db.target)
    try:
        assert await again.digest_subscriptions("telegram") == [DigestSubscription(ALICE, "chat-a")]
    finally:
        await again.close()


async def test_a_weeks_digest_is_claimed_once(store: SqlMoodStore) -> None:  # noqa: F811
    await store.set_digest(ALICE, "chat-a", T0)
    week = T0 - timedelta(days=6)
    assert await store.claim_digest(ALICE, week, T0) is True
    assert await store.claim_digest(ALICE, week, T0 + timedelta(minutes=1)) is False
    next_week = T0 + timedelta(days=1)
    assert await store.claim_digest(ALICE, next_week, T0 + timedelta(days=7)) is True
    assert await store.claim_digest(BOB, week, T0) is False  # never opted in


async def test_forget_removes_the_opt_in(store: SqlMoodStore, db: Db) -> None:  # noqa: F811
    await store.record_exchange(event(ALICE), [])
    await store.set_digest(ALICE, "chat-a", T0)
    assert await store.forget_user(ALICE) == 3  # the event, the opt-in, the user
    assert await db.count("digests") == 0
    assert await store.digest_subscriptions("telegram") == []

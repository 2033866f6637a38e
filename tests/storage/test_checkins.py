"""The daily check-in's opt-ins in SqlMoodStore, on SQLite and PostgreSQL (the `db` fixture of
test_storage runs each test on both)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta

import pytest

from engine.types import CheckinSubscription, Turn, UserKey
from storage.store import SqlMoodStore
from tests.storage.test_storage import T0, Db, db, event, store  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio

ALICE = UserKey("telegram", "42")
BOB = UserKey("telegram", "43")
CAROL = UserKey("discord", "42")  # the same id on another platform is someone else
NINE = time(21, 0)
DAY = date(2024, 11, 22)
BEFORE = DAY - timedelta(days=1)


def plan(user: UserKey, chat: str, at: time = NINE, zone: str = "Asia/Shanghai",
         last_day: date | None = BEFORE, since: datetime = T0) -> CheckinSubscription:  # fmt: skip
    return CheckinSubscription(user, chat, at, zone, last_day, since)


async def test_opt_in_move_and_out_per_platform(store: SqlMoodStore) -> None:  # noqa: F811
    await store.set_checkin(ALICE, "chat-a", NINE, "Asia/Shanghai", T0, BEFORE)
    await store.set_checkin(BOB, "chat-b", time(8, 5), "UTC", T0 + timedelta(seconds=1), BEFORE)
    await store.set_checkin(CAROL, "dm-c", NINE, "Europe/Berlin", T0, BEFORE)
    assert await store.checkin_subscriptions("telegram") == [
        plan(ALICE, "chat-a"),
        plan(BOB, "chat-b", time(8, 5), "UTC", since=T0 + timedelta(seconds=1)),
    ]
    assert await store.checkin_subscriptions("discord") == [
        plan(CAROL, "dm-c", zone="Europe/Berlin")
    ]

    # A new time and zone keep the day already claimed and when the opt-in began.
    await store.claim_checkin(ALICE, DAY)
    later = T0 + timedelta(hours=1)
    await store.set_checkin(ALICE, "chat-z", time(22, 30), "UTC", later, BEFORE)
    assert await store.checkins(ALICE) == [plan(ALICE, "chat-z", time(22, 30), "UTC", DAY)]

    assert await store.stop_checkin(ALICE) is True
    assert await store.stop_checkin(ALICE) is False  # already out
    assert await store.checkins(ALICE) == []
    assert [c.user for c in await store.checkin_subscriptions("telegram")] == [BOB]


async def test_the_opt_in_survives_reopening(db: Db) -> None:  # noqa: F811
    first = await SqlMoodStore.open(db.target)
    await first.set_checkin(ALICE, "chat-a", NINE, "Asia/Shanghai", T0, BEFORE)
    await first.close()
    again = await SqlMoodStore.open(db.target)
    try:
        assert await again.checkin_subscriptions("telegram") == [plan(ALICE, "chat-a")]
    finally:
        await again.close()


async def test_a_days_checkin_is_claimed_once_by_two_stores(db: Db) -> None:  # noqa: F811
    """Two bot processes on one database look at the same minute: one of them asks."""
    one, two = await SqlMoodStore.open(db.target), await SqlMoodStore.open(db.target)
    try:
        await one.set_checkin(ALICE, "chat-a", NINE, "UTC", T0, BEFORE)
        won = await asyncio.gather(one.claim_checkin(ALICE, DAY), two.claim_checkin(ALICE, DAY))
        assert sorted(won) == [False, True]
        assert await one.claim_checkin(ALICE, DAY) is False
        assert await two.claim_checkin(ALICE, BEFORE) is False  # an earlier day: long past
        assert await two.claim_checkin(ALICE, DAY + timedelta(days=1)) is True  # the next day
        assert await one.claim_checkin(BOB, DAY) is False  # never opted in
    finally:
        await one.close()
        await two.close()


async def test_the_day_passed_at_opt_in_counts_as_claimed(store: SqlMoodStore) -> None:  # noqa: F811
    await store.set_checkin(ALICE, "chat-a", NINE, "UTC", T0, DAY)
    assert await store.claim_checkin(ALICE, DAY) is False
    # Opting in again with an earlier day never moves the claim back.
    await store.set_checkin(ALICE, "chat-a", NINE, "UTC", T0, BEFORE)
    assert [c.last_day for c in await store.checkins(ALICE)] == [DAY]


async def test_the_question_is_kept_as_the_assistants_turn(store: SqlMoodStore) -> None:  # noqa: F811
    await store.record_exchange(
        event(ALICE, "chat-a"), [Turn("user", "hi"), Turn("assistant", "hello")]
    )
    await store.add_turns(ALICE, "chat-a", [Turn("assistant", "How was your day?")],
                          T0 + timedelta(hours=1), keep_turns=2)  # fmt: skip
    assert await store.recent_turns(ALICE, "chat-a", 10) == [
        Turn("assistant", "hello"),
        Turn("assistant", "How was your day?"),
    ]


async def test_forget_and_a_linked_export_cover_the_opt_in(store: SqlMoodStore, db: Db) -> None:  # noqa: F811
    await store.record_exchange(event(ALICE), [])
    await store.set_checkin(ALICE, "chat-a", NINE, "Asia/Shanghai", T0, BEFORE)
    await store.set_checkin(CAROL, "dm-c", NINE, "Europe/Berlin", T0, BEFORE)
    await store.save_link_code(ALICE, "hash-a", T0, T0 + timedelta(minutes=10))
    assert (await store.offer_link_code(CAROL, "hash-a", T0, T0, 5)).outcome == "offered"
    assert await store.redeem_link_code(CAROL, T0) == "linked"
    assert {c.user for c in await store.checkins(CAROL)} == {ALICE, CAROL}  # one person
    # The event, the link code, both opt-ins and both accounts, each counted.
    assert await store.forget_user(ALICE) == 6
    assert await db.count("checkins") == 0
    assert await store.checkin_subscriptions("telegram") == []
    assert await store.checkin_subscriptions("discord") == []

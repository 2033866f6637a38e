"""The safety net's record (migration 7) on SQLite and PostgreSQL: a support note per row,
with its trigger and time and no text; read per person; deleted by /forget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import StorageError
from engine.types import UserKey
from storage.store import SqlMoodStore
from tests.storage import test_storage
from tests.storage.test_storage import Db

# The storage suite's fixtures: each test runs on a SQLite file and on PostgreSQL.
db = test_storage.db
store = test_storage.store

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TG = UserKey("telegram", "42")
DC = UserKey("discord", "777")
OTHER = UserKey("telegram", "43")


async def test_notes_are_recorded_with_their_trigger_and_read_since_a_time(
    store: SqlMoodStore, db: Db
) -> None:
    await store.record_support_note(TG, "stretch", T0)
    await store.record_support_note(TG, "words", T0 + timedelta(days=8))
    await store.record_support_note(OTHER, "words", T0)
    notes = await store.support_notes(TG, T0)
    assert [(n.platform, n.user_id, n.trigger, n.created_at) for n in notes] == [
        ("telegram", "42", "stretch", T0),
        ("telegram", "42", "words", T0 + timedelta(days=8)),
    ]
    assert [n.trigger for n in await store.support_notes(TG, T0 + timedelta(days=1))] == ["words"]
    assert await store.support_notes(UserKey("telegram", "nobody"), T0) == []
    # Nothing but who, when and why is kept.
    assert await db.count("support_notes") == 3


async def test_only_the_two_triggers_are_stored(store: SqlMoodStore) -> None:
    with pytest.raises(StorageError):
        await store.record_support_note(TG, "diagnosis", T0)  # type: ignore[arg-type]


async def test_linked_accounts_share_their_notes_and_forget_deletes_them_all(
    store: SqlMoodStore, db: Db
) -> None:
    await store.record_support_note(TG, "words", T0)
    await store.record_support_note(DC, "stretch", T0 + timedelta(hours=1))
    await store.record_support_note(OTHER, "words", T0)
    await store.save_link_code(TG, "hash-a", T0, T0 + timedelta(minutes=10))
    assert (await store.offer_link_code(DC, "hash-a", T0, T0, 5)).outcome == "offered"
    assert await store.redeem_link_code(DC, T0) == "linked"
    assert [n.platform for n in await store.support_notes(TG, T0)] == ["telegram", "discord"]
    assert [n.platform for n in await store.support_notes(DC, T0)] == ["telegram", "discord"]

    deleted = await store.forget_user(DC)
    assert deleted >= 2 + 1 + 2  # both notes, the used link code, both user rows
    assert await store.support_notes(TG, T0) == []
    assert await db.count("support_notes") == 1  # the other user's stays
    assert [n.user_id for n in await store.support_notes(OTHER, T0)] == ["43"]

"""The journal's storage (migration 5) on SQLite and PostgreSQL: corrections beside the
label, linked accounts as one person, link codes, and the export's turns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from engine.types import MoodEvent, Turn, UserKey
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
WINDOW = timedelta(minutes=10)


def labelled(
    user: UserKey, message_id: str | None, label: str = "positive", minutes: int = 0
) -> MoodEvent:
    p = 0.9 if label == "positive" else 0.1
    at = T0 + timedelta(minutes=minutes)
    return MoodEvent(user.platform, user.user_id, "chat-1", label, p, at,  # type: ignore[arg-type]
                     "some text", message_id=message_id)  # fmt: skip


async def say(store: SqlMoodStore, event: MoodEvent) -> None:
    await store.record_exchange(event, [Turn("user", "hi"), Turn("assistant", "hello")])


async def test_a_correction_is_stored_beside_the_label_and_counted(
    store: SqlMoodStore, db: Db
) -> None:
    await say(store, labelled(TG, "10", "positive"))
    done = await store.correct_mood(TG, "chat-1", "10", "negative", T0)
    assert done.outcome == "corrected"
    assert done.event is not None
    assert done.event.tone == "negative"

    [event] = await store.mood_events(TG, T0)
    assert (event.label, event.shown_tone, event.corrected, event.tone) == (
        "positive", "positive", "negative", "negative",
    )  # fmt: skip
    assert event.message_id == "10"
    assert await db.count("mood_events", "label = 'positive'") == 1  # the original stays
    # The prompt's history shows the corrected tone too.
    [user_turn, _] = await store.recent_turns(TG, "chat-1", 10)
    assert user_turn.tone == "negative"


async def test_twice_someone_else_the_same_tone_or_no_such_message_change_nothing(
    store: SqlMoodStore,
) -> None:
    await say(store, labelled(TG, "10", "positive"))
    assert (await store.correct_mood(TG, "chat-1", "10", "positive", T0)).outcome == "same"
    assert (await store.correct_mood(OTHER, "chat-1", "10", "negative", T0)).outcome == (
        "not_yours"
    )
    assert (await store.correct_mood(TG, "chat-1", "11", "negative", T0)).outcome == "not_found"
    assert (await store.correct_mood(TG, "chat-2", "10", "negative", T0)).outcome == "not_found"
    assert (await store.correct_mood(TG, "chat-1", "10", "neutral", T0)).outcome == "corrected"
    again = await store.correct_mood(TG, "chat-1", "10", "negative", T0)
    assert again.outcome == "already_corrected"
    [event] = await store.mood_events(TG, T0)
    assert event.corrected == "neutral"


async def test_two_presses_at_once_correct_once(store: SqlMoodStore) -> None:
    await say(store, labelled(TG, "10", "positive"))
    outcomes = await asyncio.gather(
        *(store.correct_mood(TG, "chat-1", "10", "negative", T0) for _ in range(5))
    )
    assert sorted(o.outcome for o in outcomes) == ["already_corrected"] * 4 + ["corrected"]


async def test_without_a_message_id_the_latest_label_of_this_account_is_corrected(
    store: SqlMoodStore,
) -> None:
    console = UserKey("console", "local")
    assert (await store.correct_mood(console, "c", None, "neutral", T0)).outcome == "not_found"
    await say(store, labelled(console, None, "positive", minutes=0))
    await say(store, labelled(console, None, "negative", minutes=1))
    await say(store, labelled(OTHER, None, "negative", minutes=2))
    done = await store.correct_mood(console, "c", None, "positive", T0)
    assert done.outcome == "corrected"
    events = await store.mood_events(console, T0)
    assert [e.corrected for e in events] == [None, "positive"]
    assert [e.message_id for e in await store.corrected_events()] == [None]


async def test_link_shares_one_history_unlink_separates(store: SqlMoodStore, db: Db) -> None:
    await say(store, labelled(TG, "1", "positive"))
    await say(store, labelled(DC, "2", "negative", minutes=1))
    await store.save_link_code(TG, "hash-a", T0, T0 + WINDOW)
    assert await db.count("link_codes") == 1
    outcome = await store.redeem_link_code(DC, "hash-a", T0 + timedelta(minutes=1), T0, 5)
    assert outcome == "linked"
    assert await store.linked_accounts(TG) == [DC]
    assert await store.linked_accounts(DC) == [TG]
    for user in (TG, DC):
        events = await store.mood_events(user, T0)
        assert [(e.platform, e.label) for e in events] == [
            ("telegram", "positive"), ("discord", "negative"),
        ]  # fmt: skip
    assert len(await store.export_turns(DC)) == 4

    assert await store.unlink(DC)
    assert not await store.unlink(DC)
    assert await store.linked_accounts(TG) == []
    assert [e.platform for e in await store.mood_events(TG, T0)] == ["telegram"]
    assert [e.platform for e in await store.mood_events(DC, T0)] == ["discord"]
    assert await db.count("people") == 0  # a person of one account is dissolved


async def test_codes_are_single_use_expire_and_attempts_are_bounded(
    store: SqlMoodStore, db: Db
) -> None:
    await store.save_link_code(TG, "hash-a", T0, T0 + WINDOW)
    assert await store.redeem_link_code(TG, "hash-a", T0, T0, 5) == "own_code"
    assert await store.redeem_link_code(DC, "hash-a", T0, T0, 5) == "linked"
    third = UserKey("console", "x")
    assert await store.redeem_link_code(third, "hash-a", T0, T0, 5) == "expired"  # used

    await store.save_link_code(OTHER, "hash-b", T0, T0 + WINDOW)
    late = T0 + WINDOW + timedelta(seconds=1)
    assert await store.redeem_link_code(third, "hash-b", late, late - WINDOW, 5) == "expired"

    # Asking again voids the older unused code.
    await store.save_link_code(OTHER, "hash-c", T0, T0 + WINDOW)
    await store.save_link_code(OTHER, "hash-d", T0, T0 + WINDOW)
    assert await db.count("link_codes", "used_at IS NULL") == 1

    guesser = UserKey("discord", "999")
    for n in range(5):
        assert await store.redeem_link_code(guesser, f"guess-{n}", T0, T0, 5) == "invalid"
    # Even the right code is refused now, until the window has passed.
    assert await store.redeem_link_code(guesser, "hash-d", T0, T0, 5) == "too_many"
    later = T0 + WINDOW + timedelta(minutes=1)
    await store.save_link_code(OTHER, "hash-e", later, later + WINDOW)
    assert await store.redeem_link_code(guesser, "hash-e", later, later - WINDOW, 5) == "linked"


async def test_linking_into_an_existing_person_and_relinking(store: SqlMoodStore) -> None:
    console = UserKey("console", "local")
    await store.save_link_code(TG, "a", T0, T0 + WINDOW)
    assert await store.redeem_link_code(DC, "a", T0, T0, 5) == "linked"
    await store.save_link_code(console, "b", T0, T0 + WINDOW)
    assert await store.redeem_link_code(DC, "b", T0, T0, 5) == "linked"
    assert sorted(u.platform for u in await store.linked_accounts(TG)) == ["console", "discord"]
    await store.save_link_code(TG, "c", T0, T0 + WINDOW)
    assert await store.redeem_link_code(console, "c", T0, T0, 5) == "already_linked"


async def test_forget_on_either_account_deletes_both(store: SqlMoodStore, db: Db) -> None:
    await say(store, labelled(TG, "1"))
    await say(store, labelled(DC, "2"))
    await say(store, labelled(OTHER, "3"))
    await store.save_link_code(TG, "a", T0, T0 + WINDOW)
    assert await store.redeem_link_code(DC, "a", T0, T0, 5) == "linked"
    rows = await store.forget_user(DC)
    # 2 users, 2 events, 4 turns, 1 code
    assert rows == 9
    assert await store.mood_events(TG, T0) == []
    assert len(await store.mood_events(OTHER, T0)) == 1
    for table in ("people", "link_codes"):
        assert await db.count(table) == 0, table
    assert await db.count("users") == 1

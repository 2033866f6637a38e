"""The journal's storage (migration 5) on SQLite and PostgreSQL: corrections beside the
label, linked accounts as one person, link codes, and the export's turns."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from engine.types import LinkOffer, LinkOutcome, MoodEvent, Turn, UserKey
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


async def link(
    store: SqlMoodStore, issuer: UserKey, enterer: UserKey, code: str = "hash-a"
) -> LinkOutcome:
    """A code asked for by `issuer`, entered and confirmed by `enterer`."""
    await store.save_link_code(issuer, code, T0, T0 + WINDOW)
    offer = await store.offer_link_code(enterer, code, T0, T0 - WINDOW, 5)
    if offer.outcome != "offered":
        return offer.outcome
    return await store.redeem_link_code(enterer, T0)


async def test_link_shares_one_history_unlink_separates(store: SqlMoodStore, db: Db) -> None:
    await say(store, labelled(TG, "1", "positive"))
    await say(store, labelled(DC, "2", "negative", minutes=1))
    before = {user: (await store.mood_events(user, T0), await store.export_turns(user))
              for user in (TG, DC)}  # fmt: skip
    await store.save_link_code(TG, "hash-a", T0, T0 + WINDOW)
    assert await db.count("link_codes") == 1
    at = T0 + timedelta(minutes=1)
    assert await store.offer_link_code(DC, "hash-a", at, T0, 5) == LinkOffer("offered", TG)
    assert await store.linked_accounts(DC) == []  # nothing linked before the confirmation
    assert await store.redeem_link_code(DC, at) == "linked"
    assert await store.linked_accounts(TG) == [DC]
    assert await store.linked_accounts(DC) == [TG]
    for user in (TG, DC):
        events = await store.mood_events(user, T0)
        assert [(e.platform, e.label) for e in events] == [
            ("telegram", "positive"), ("discord", "negative"),
        ]  # fmt: skip
    assert len(await store.export_turns(DC)) == 4
    await say(store, labelled(DC, "3", "negative", minutes=2))  # said while linked: DC's own

    assert await store.unlink(DC)
    assert not await store.unlink(DC)
    assert await store.linked_accounts(TG) == []
    # Each account has what it had, as before the link, plus its own message said meanwhile.
    assert (await store.mood_events(TG, T0), await store.export_turns(TG)) == before[TG]
    events = await store.mood_events(DC, T0)
    assert events[:1] == before[DC][0]
    assert [e.message_id for e in events] == ["2", "3"]
    assert [(t.platform, t.user_id) for t in await store.export_turns(DC)] == [
        ("discord", "777")
    ] * 4
    assert await db.count("people") == 0  # a person of one account is dissolved


async def test_a_code_links_only_once_confirmed_by_the_account_that_entered_it(
    store: SqlMoodStore,
) -> None:
    third = UserKey("console", "x")
    await store.save_link_code(TG, "hash-a", T0, T0 + WINDOW)
    assert await store.redeem_link_code(DC, T0) == "not_offered"  # no code entered
    assert (await store.offer_link_code(DC, "hash-a", T0, T0, 5)).outcome == "offered"
    assert await store.redeem_link_code(third, T0) == "not_offered"  # offered to DC, not it
    # Entered again by another account: that one is asked now, the first no longer.
    assert (await store.offer_link_code(third, "hash-a", T0, T0, 5)).outcome == "offered"
    assert await store.redeem_link_code(DC, T0) == "not_offered"
    assert await store.redeem_link_code(third, T0, "other-hash") == "not_offered"
    late = T0 + WINDOW
    assert await store.redeem_link_code(third, late) == "not_offered"  # the code expired
    assert await store.linked_accounts(TG) == []
    assert await store.redeem_link_code(third, T0, "hash-a") == "linked"
    assert await store.redeem_link_code(third, T0) == "not_offered"  # used
    # One confirmation waits per account: the code it entered last.
    await store.save_link_code(TG, "hash-b", T0, T0 + WINDOW)
    await store.save_link_code(OTHER, "hash-c", T0, T0 + WINDOW)
    assert (await store.offer_link_code(DC, "hash-b", T0, T0, 5)).outcome == "offered"
    assert (await store.offer_link_code(DC, "hash-c", T0, T0, 5)).outcome == "offered"
    assert await store.redeem_link_code(DC, T0, "hash-b") == "not_offered"
    assert await store.redeem_link_code(DC, T0) == "linked"
    assert await store.linked_accounts(DC) == [OTHER]


async def test_codes_are_single_use_expire_and_attempts_are_bounded(
    store: SqlMoodStore, db: Db
) -> None:
    await store.save_link_code(TG, "hash-a", T0, T0 + WINDOW)
    assert await store.offer_link_code(TG, "hash-a", T0, T0, 5) == LinkOffer("own_code")
    assert (await store.offer_link_code(DC, "hash-a", T0, T0, 5)).outcome == "offered"
    assert await store.redeem_link_code(DC, T0) == "linked"
    third = UserKey("console", "x")
    assert await store.offer_link_code(third, "hash-a", T0, T0, 5) == LinkOffer("expired")

    await store.save_link_code(OTHER, "hash-b", T0, T0 + WINDOW)
    late = T0 + WINDOW + timedelta(seconds=1)
    assert (await store.offer_link_code(third, "hash-b", late, late - WINDOW, 5)).outcome == (
        "expired"
    )

    # Asking again voids the older unused code.
    await store.save_link_code(OTHER, "hash-c", T0, T0 + WINDOW)
    await store.save_link_code(OTHER, "hash-d", T0, T0 + WINDOW)
    assert await db.count("link_codes", "used_at IS NULL") == 1

    guesser = UserKey("discord", "999")
    for n in range(5):
        offer = await store.offer_link_code(guesser, f"guess-{n}", T0, T0, 5)
        assert offer == LinkOffer("invalid")
    # Even the right code is refused now, until the window has passed.
    assert await store.offer_link_code(guesser, "hash-d", T0, T0, 5) == LinkOffer("too_many")
    later = T0 + WINDOW + timedelta(minutes=1)
    await store.save_link_code(OTHER, "hash-e", later, later + WINDOW)
    offer = await store.offer_link_code(guesser, "hash-e", later, later - WINDOW, 5)
    assert offer == LinkOffer("offered", OTHER)
    assert await store.redeem_link_code(guesser, later) == "linked"


async def test_linking_into_an_existing_person_and_relinking(store: SqlMoodStore) -> None:
    console = UserKey("console", "local")
    assert await link(store, TG, DC, "a") == "linked"
    assert await link(store, console, DC, "b") == "linked"
    assert sorted(u.platform for u in await store.linked_accounts(TG)) == ["console", "discord"]
    assert await link(store, TG, console, "c") == "already_linked"


async def test_linking_never_joins_two_accounts_of_one_platform(
    store: SqlMoodStore, db: Db
) -> None:
    await say(store, labelled(TG, "1"))
    await say(store, labelled(OTHER, "2"))
    assert await link(store, OTHER, TG, "a") == "same_platform"
    assert await link(store, TG, DC, "b") == "linked"
    # OTHER is telegram too: joining it to DC would put it beside TG.
    assert await link(store, OTHER, DC, "c") == "same_platform"
    assert await link(store, DC, OTHER, "d") == "same_platform"
    assert await store.linked_accounts(OTHER) == []
    assert [e.user_id for e in await store.mood_events(OTHER, T0)] == ["43"]
    assert await db.count("link_attempts") == 0  # a good code refused is no failed guess
    # Checked again at the confirmation: TG linked with another discord account meanwhile.
    await store.unlink(DC)
    second = UserKey("discord", "778")
    await store.save_link_code(DC, "e", T0, T0 + WINDOW)
    assert (await store.offer_link_code(TG, "e", T0, T0, 5)).outcome == "offered"
    assert await link(store, TG, second, "f") == "linked"
    assert await store.redeem_link_code(TG, T0) == "same_platform"
    assert await store.linked_accounts(TG) == [second]


async def test_forget_on_either_account_deletes_both(store: SqlMoodStore, db: Db) -> None:
    await say(store, labelled(TG, "1"))
    await say(store, labelled(DC, "2"))
    await say(store, labelled(OTHER, "3"))
    assert await link(store, TG, DC) == "linked"
    rows = await store.forget_user(DC)
    # 2 users, 2 events, 4 turns, 1 code
    assert rows == 9
    assert await store.mood_events(TG, T0) == []
    assert len(await store.mood_events(OTHER, T0)) == 1
    for table in ("people", "link_codes"):
        assert await db.count(table) == 0, table
    assert await db.count("users") == 1

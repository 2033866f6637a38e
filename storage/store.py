"""engine.ports.MoodStore on SQLAlchemy Core: one set of statements for SQLite and PostgreSQL.

Every write is one transaction; every statement is parameterised (Core binds the values).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    Update,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.errors import StorageError
from engine.types import (
    CheckinSubscription,
    Correction,
    DigestSubscription,
    FailureReason,
    IncomingMessage,
    LinkOffer,
    LinkOutcome,
    MessageKey,
    MoodEvent,
    ReplyMessages,
    Sentiment,
    StoredReply,
    StoredTurn,
    SupportNote,
    SupportTrigger,
    Tone,
    Turn,
    Unfinished,
    UserKey,
)
from storage import migrations
from storage.database import Database
from storage.postgres import PostgresDatabase, PostgresOptions
from storage.presence import new_owner
from storage.schema import (
    aware,
    catch_up_marks,
    checkins,
    digests,
    inbox,
    link_attempts,
    link_codes,
    mood_events,
    people,
    support_notes,
    turns,
    users,
)
from storage.sqlite import DEFAULT_BUSY_TIMEOUT_MS, SqliteDatabase
from storage.target import DatabaseTarget

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10


class SqlMoodStore:
    """Users, their mood events and conversation turns, and the inbox of platform messages,
    in SQLite (one file, WAL) or PostgreSQL (shared by several bot processes)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._closed = False
        # Written on the inbox rows this store claims; see storage/presence.py.
        self.owner = new_owner()

    @classmethod
    async def open(
        cls,
        target: DatabaseTarget | str | Path,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        pool_size: int = DEFAULT_POOL_SIZE,
        postgres: PostgresOptions | None = None,
    ) -> SqlMoodStore:
        """Connect to (creating a SQLite file if needed) and migrate the database; a path or
        URL string is read as DATABASE_URL is. Raises StorageError on failure."""
        if isinstance(target, Path):
            target = DatabaseTarget.sqlite(target)
        elif isinstance(target, str):
            try:
                target = DatabaseTarget.parse(target)
            except ValueError as error:
                raise StorageError(f"DATABASE_URL {error}") from None
        database: Database
        if target.kind == "sqlite":
            database = await SqliteDatabase.open(target, busy_timeout_ms)
        else:
            database = await PostgresDatabase.open(target, pool_size, postgres)
        store = cls(database)
        try:
            await store._migrate()
            await database.announce(store.owner)
        except BaseException:
            await database.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        return self._db.name

    @property
    def shown(self) -> str:
        """The database, for logs: the path, or the URL without its password."""
        return self._db.shown

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.close()

    # --- MoodStore: the inbox ---------------------------------------------------------------

    async def claim_message(
        self, key: MessageKey, user: UserKey, at: datetime, message: IncomingMessage | None = None
    ) -> bool:
        insert = self._db.insert(inbox).on_conflict_do_nothing(
            index_elements=[inbox.c.platform, inbox.c.chat_id, inbox.c.message_id]
        )
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, user, at)
            result = await conn.execute(
                insert,
                {
                    "platform": key.platform,
                    "chat_id": key.chat_id,
                    "message_id": key.message_id,
                    "user_id": user_id,
                    "state": "received",
                    "received_at": aware(at),
                    # Kept only until the message is done: what a retry after a crash needs.
                    "text": message.text if message is not None else None,
                    "origin": message.origin if message is not None else None,
                    "owner": self.owner,
                },
            )
            if result.rowcount != 1:
                return False
            await self._advance_mark(conn, key, at)
            return True

    async def _advance_mark(self, conn: AsyncConnection, key: MessageKey, at: datetime) -> None:
        """Move the chat's catch-up mark to `key` when it is newer than the mark. A message id
        of one chat grows with time (Discord's snowflakes, Telegram's counters): the longer
        id, or of two as long the larger, is newer; a message claimed late (a catch-up
        running beside live messages) does not move the mark back."""
        m = catch_up_marks.c
        new = {"platform": key.platform, "chat_id": key.chat_id, "message_id": key.message_id,
               "seen_at": aware(at)}  # fmt: skip
        insert = self._db.insert(catch_up_marks)
        newer, length = insert.excluded.message_id, func.length(insert.excluded.message_id)
        is_newer = or_(
            length > func.length(m.message_id),
            and_(length == func.length(m.message_id), newer > m.message_id),
        )
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=[m.platform, m.chat_id],
                set_={"message_id": newer, "seen_at": insert.excluded.seen_at},
                where=is_newer,
            ),
            new,
        )

    async def take_message(self, key: MessageKey, again: bool = False) -> int | None:
        async with self._transaction() as conn:
            found = await conn.execute(
                select(inbox.c.state, inbox.c.owner, inbox.c.attempts).where(*_is(key))
            )
            row = found.first()
            if row is None or row.state != "received":
                return None
            if row.owner == self.owner:
                if not again:
                    return int(row.attempts)
                # A retry of a message that failed here counts like a take-over.
                await conn.execute(
                    update(inbox).where(*_is(key)).values(attempts=inbox.c.attempts + 1)
                )
                return int(row.attempts) + 1
            # A row with no owner was claimed before migration 6, by a process now replaced.
            if row.owner is not None and not await self._db.owner_gone(conn, row.owner):
                return None
            owned = inbox.c.owner.is_(None) if row.owner is None else inbox.c.owner == row.owner
            # Compare-and-set: of two processes taking it over at once, one wins.
            result = await conn.execute(
                update(inbox)
                .where(*_is(key), inbox.c.state == "received", owned)
                .values(owner=self.owner, attempts=inbox.c.attempts + 1)
            )
            return int(row.attempts) + 1 if result.rowcount == 1 else None

    async def earlier_unfinished(self, key: MessageKey, user: UserKey) -> list[Unfinished]:
        i = inbox.c
        query = (
            select(i.chat_id, i.message_id, i.text, i.origin, i.received_at, i.reply_ref, i.owner)
            .add_columns(i.support_ref, i.sending)
            .where(i.user_id == _user_id_of(user), i.state == "received", i.text.is_not(None))
        )  # fmt: skip
        async with self._transaction(write=False) as conn:
            rows = (await conn.execute(query)).all()
            this = next(
                (r for r in rows if (r.chat_id, r.message_id) == (key.chat_id, key.message_id)),
                None,
            )
            if this is None:
                return []
            earlier = sorted(
                (r for r in rows if _comes_before(r, this, key.platform)),
                key=lambda r: (r.received_at, r.chat_id, _numeric(r.message_id)),
            )
            return [
                await self._unfinished(conn, key.platform, user.user_id, row, {}) for row in earlier
            ]

    async def waiting_before(self, key: MessageKey, user: UserKey, since: datetime) -> int:
        this = select(inbox.c.received_at).where(*_is(key)).scalar_subquery()
        query = (
            select(func.count())
            .select_from(inbox)
            .where(inbox.c.user_id == _user_id_of(user), inbox.c.state == "received",
                   inbox.c.received_at >= aware(since), inbox.c.received_at < this)
        )  # fmt: skip
        ((count,),) = await self._fetchall(query)
        return int(count)

    async def latest_messages(self, platform: str, since: datetime) -> list[MessageKey]:
        # The marks, not the inbox: /forget deletes inbox rows but leaves the marks.
        m = catch_up_marks.c
        query = (
            select(m.chat_id, m.message_id)
            .where(m.platform == platform, m.seen_at >= aware(since))
            .order_by(m.chat_id)
        )
        return [
            MessageKey(platform, chat, message) for chat, message in await self._fetchall(query)
        ]

    async def unfinished(self, platform: str) -> list[Unfinished]:
        i = inbox.c
        query = (
            select(users.c.platform_user_id, i.chat_id, i.message_id, i.text, i.origin)
            .add_columns(i.received_at, i.reply_ref, i.owner, i.support_ref, i.sending)
            .join_from(inbox, users, users.c.id == i.user_id)
            .where(i.platform == platform, i.state == "received", i.text.is_not(None))
            .order_by(i.received_at, i.chat_id, i.message_id)
        )
        found: list[Unfinished] = []
        async with self._transaction(write=False) as conn:
            gone: dict[str, bool] = {}
            for row in (await conn.execute(query)).all():
                item = await self._unfinished(conn, platform, row.platform_user_id, row, gone)
                if item.held_by != "elsewhere":
                    found.append(item)
        return found

    async def _unfinished(
        self, conn: AsyncConnection, platform: str, user_id: str, row: Any, gone: dict[str, bool]
    ) -> Unfinished:
        """An inbox row as Unfinished, with whose it is (`gone` caches the owners looked at)."""
        owner = row.owner
        held_by: Literal["gone", "here", "elsewhere"] = "gone"
        if owner == self.owner:
            held_by = "here"
        elif owner is not None:
            if owner not in gone:
                gone[owner] = await self._db.owner_gone(conn, owner)
            held_by = "gone" if gone[owner] else "elsewhere"
        message = IncomingMessage(platform, user_id, row.chat_id, row.text, row.message_id,
                                  row.origin or "")  # fmt: skip
        return Unfinished(message, row.received_at, row.reply_ref, row.support_ref, row.sending,
                          held_by)  # fmt: skip

    async def set_reply_messages(self, key: MessageKey, messages: ReplyMessages) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                update(inbox)
                .where(*_is(key), inbox.c.state == "received")
                .values(reply_ref=" ".join(messages.chunks) or None,
                        support_ref=messages.support, sending=messages.sending)
            )  # fmt: skip

    async def set_reply_ref(self, key: MessageKey, reply_ref: str) -> None:
        """The first message only (what migration 6 kept)."""
        await self.set_reply_messages(key, ReplyMessages((reply_ref,)))

    async def stored_reply(self, key: MessageKey) -> StoredReply | None:
        query = select(inbox.c.reply).where(*_is(key), inbox.c.state == "received")
        found = await self._fetchall(query)
        return _stored_reply(found[0][0]) if found and found[0][0] is not None else None

    async def keep_reply(self, key: MessageKey, reply: StoredReply) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                update(inbox)
                .where(*_is(key), inbox.c.state == "received")
                .values(reply=json.dumps(_reply_json(reply), ensure_ascii=False))
            )

    async def mark_done(self, key: MessageKey, at: datetime) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                update(inbox)
                .where(*_is(key))
                .values(state="done", done_at=aware(at), text=None, origin=None, reply=None,
                        sending=None)
            )  # fmt: skip

    # --- MoodStore: exchanges ---------------------------------------------------------------

    async def record_exchange(
        self,
        event: MoodEvent,
        turns_: Sequence[Turn],
        done: MessageKey | None = None,
        keep_turns: int | None = None,
        turn_step: int = 1,
        reply: StoredReply | None = None,
    ) -> None:
        at = aware(event.created_at)
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, UserKey(event.platform, event.user_id), at)
            await conn.execute(
                mood_events.insert(),
                {
                    "user_id": user_id,
                    "chat_id": event.chat_id,
                    "label": event.label,
                    "p_positive": event.p_positive,
                    "created_at": at,
                    "excerpt": event.excerpt,
                    "neutral": event.neutral,
                    "message_id": event.message_id,
                },
            )
            if turns_:
                await conn.execute(
                    turns.insert(),
                    [
                        {
                            "user_id": user_id,
                            "chat_id": event.chat_id,
                            "role": t.role,
                            "content": t.content,
                            "created_at": at,
                        }
                        for t in turns_
                    ],
                )
            if keep_turns is not None:
                await self._prune_turns(conn, user_id, event.chat_id, keep_turns, turn_step)
            if done is not None:
                await self._mark_done_in(conn, done, user_id, at, reply)

    async def _prune_turns(
        self, conn: AsyncConnection, user_id: int, chat_id: str, keep: int, step: int
    ) -> None:
        """Delete the chat's oldest turns beyond `keep`, a multiple of `step` of them (the
        history window's positions count from the chat's first kept turn)."""
        t = turns.c
        mine = (t.user_id == user_id, t.chat_id == chat_id)
        total = int(await conn.scalar(select(func.count()).select_from(turns).where(*mine)) or 0)
        excess = total - keep
        excess -= excess % max(step, 1)
        if excess > 0:
            oldest = select(t.id).where(*mine).order_by(t.created_at, t.id).limit(excess)
            await conn.execute(delete(turns).where(t.id.in_(oldest.scalar_subquery())))

    async def recent_turns(
        self, user: UserKey, chat_id: str, limit: int, step: int = 1
    ) -> list[Turn]:
        if limit <= 0:
            return []
        # The window starts at a multiple of `step` turns into the chat: the first of the last
        # `limit` turns, rounded up to the next such position.
        t = turns.c
        chat = (
            select(
                t.user_id,
                t.role,
                t.content,
                t.created_at,
                (func.row_number().over(order_by=(t.created_at, t.id)) - 1).label("position"),
                func.count().over().label("total"),
            )
            .where(t.user_id == _user_id_of(user), t.chat_id == chat_id)
            .subquery("chat")
        )
        c = chat.c
        first = case((c.total > limit, c.total - limit), else_=0)
        # A user turn's tone is its message's mood event, which record_exchange writes with
        # the same user, chat and timestamp. A subquery rather than a join: two events at one
        # instant (only ever seen in tests) must not duplicate the turn.
        e = mood_events.c
        tone = (
            select(_counted_tone())
            .where(e.user_id == c.user_id, e.chat_id == chat_id, e.created_at == c.created_at)
            .order_by(e.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = (
            select(c.role, c.content, case((c.role == "user", tone), else_=None))
            .where(c.position >= (first + (step - 1)) // step * step)
            .order_by(c.position)
        )
        return [Turn(role, content, shown) for role, content, shown in await self._fetchall(query)]

    async def mood_events(
        self, user: UserKey, since: datetime, until: datetime | None = None
    ) -> list[MoodEvent]:
        # Every account of the user's person: linked accounts share one history.
        query = _event_query().where(
            mood_events.c.user_id.in_(_person_ids(user)),
            mood_events.c.created_at >= aware(since),
        )
        if until is not None:
            query = query.where(mood_events.c.created_at < aware(until))
        return [_event(row) for row in await self._fetchall(query)]

    async def clear_turns(self, user: UserKey, chat_id: str) -> int:
        async with self._transaction() as conn:
            result = await conn.execute(
                delete(turns).where(
                    turns.c.chat_id == chat_id, turns.c.user_id == _user_id_of(user)
                )
            )
            return result.rowcount

    async def forget_user(self, user: UserKey) -> int:
        # Children are deleted explicitly rather than by ON DELETE CASCADE, because cascaded
        # rows are not included in the count we must return. Every account of the person
        # goes: linked accounts are one person's data.
        deleted = 0
        async with self._transaction() as conn:
            rows = (
                await conn.execute(select(users.c.id, users.c.person_id).where(
                    users.c.id.in_(_person_ids(user))
                ))
            ).all()  # fmt: skip
            ids = [row[0] for row in rows]
            persons = {row[1] for row in rows if row[1] is not None}
            for table in (turns, mood_events, inbox, link_codes, link_attempts, digests,
                          support_notes, checkins):  # fmt: skip
                result = await conn.execute(delete(table).where(table.c.user_id.in_(ids)))
                deleted += result.rowcount
            result = await conn.execute(delete(users).where(users.c.id.in_(ids)))
            deleted += result.rowcount
            if persons:
                await conn.execute(delete(people).where(people.c.id.in_(persons)))
        try:
            with self._db.translated():
                await self._db.scrub()
        except StorageError as error:
            # The rows are gone (committed); only the old copies wait for a later overwrite.
            log.warning("deleted, but the old copies could not be scrubbed yet: %s", error)
        return deleted

    # --- JournalStore: corrections ----------------------------------------------------------

    async def correct_mood(
        self, user: UserKey, chat_id: str, message_id: str | None, tone: Tone, at: datetime
    ) -> Correction:
        e, u = mood_events.c, users.c
        query = _event_query().add_columns(e.id)
        if message_id is None:
            # The console has no message ids: its /wrong corrects the latest label.
            query = query.where(u.platform == user.platform, u.platform_user_id == user.user_id)
            query = query.order_by(None).order_by(e.created_at.desc(), e.id.desc()).limit(1)
        else:
            # Found by the message whoever presses, so that someone else's press is told why.
            query = query.where(
                u.platform == user.platform, e.chat_id == chat_id, e.message_id == message_id
            )
        async with self._transaction() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return Correction("not_found")
            event, event_id = _event(tuple(row[:-1])), row[-1]
            if (event.platform, event.user_id) != (user.platform, user.user_id):
                return Correction("not_yours")
            if event.corrected is not None:
                return Correction("already_corrected", event)
            if tone == event.shown_tone:
                return Correction("same", event)
            result = await conn.execute(
                update(mood_events)
                .where(e.id == event_id, e.corrected_label.is_(None))
                .values(corrected_label=tone, corrected_at=aware(at))
            )
            if result.rowcount != 1:  # a second press that raced the first
                return Correction("already_corrected", event)
            return Correction("corrected", replace(event, corrected=tone))

    async def corrected_events(self) -> list[MoodEvent]:
        e = mood_events.c
        query = (
            _event_query()
            .where(e.corrected_label.is_not(None))
            .order_by(None)
            .order_by(e.corrected_at, e.id)
        )
        return [_event(row) for row in await self._fetchall(query)]

    # --- JournalStore: linked accounts ------------------------------------------------------

    async def save_link_code(
        self, user: UserKey, code_hash: str, at: datetime, expires_at: datetime
    ) -> None:
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, user, aware(at))
            # One live code per account: asking again voids the one given before.
            await conn.execute(
                delete(link_codes).where(
                    link_codes.c.user_id == user_id, link_codes.c.used_at.is_(None)
                )
            )
            await conn.execute(
                link_codes.insert(),
                {
                    "code_hash": code_hash,
                    "user_id": user_id,
                    "created_at": aware(at),
                    "expires_at": aware(expires_at),
                },
            )

    async def offer_link_code(
        self, user: UserKey, code_hash: str, at: datetime, since: datetime, max_failures: int
    ) -> LinkOffer:
        c, a, u = link_codes.c, link_attempts.c, users.c
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, user, aware(at))
            failures = (
                await conn.execute(
                    select(func.count()).where(a.user_id == user_id, a.at >= aware(since))
                )
            ).scalar_one()
            if failures >= max_failures:
                return LinkOffer("too_many")
            code = (
                await conn.execute(
                    select(c.user_id, c.used_at, c.expires_at, u.platform, u.platform_user_id)
                    .join_from(link_codes, users, u.id == c.user_id)
                    .where(c.code_hash == code_hash)
                )
            ).first()
            if code is not None and code.user_id == user_id:
                return LinkOffer("own_code")  # not a failure: the code stays good for the other
            if code is None or code.used_at is not None or code.expires_at <= aware(at):
                await conn.execute(link_attempts.insert(), {"user_id": user_id, "at": aware(at)})
                return LinkOffer("invalid" if code is None else "expired")
            problem = await self._link_problem(conn, int(code.user_id), user_id)
            if problem is not None:
                return LinkOffer(problem)
            # Waits for this account's confirmation: of the codes it entered, the last one;
            # of the accounts that entered this code, the last one.
            await conn.execute(
                update(link_codes).where(c.offered_to == user_id).values(offered_to=None)
            )
            await conn.execute(
                update(link_codes).where(c.code_hash == code_hash).values(offered_to=user_id)
            )
            return LinkOffer("offered", UserKey(code.platform, code.platform_user_id))

    async def redeem_link_code(
        self, user: UserKey, at: datetime, code_hash: str | None = None
    ) -> LinkOutcome:
        c = link_codes.c
        waiting: list[ColumnElement[bool]] = [
            c.offered_to == _user_id_of(user), c.used_at.is_(None), c.expires_at > aware(at)
        ]  # fmt: skip
        if code_hash is not None:
            waiting.append(c.code_hash == code_hash)
        async with self._transaction() as conn:
            code = (
                await conn.execute(
                    select(c.code_hash, c.user_id, c.offered_to)
                    .where(*waiting)
                    .order_by(c.created_at.desc())
                    .limit(1)
                )
            ).first()
            if code is None:
                return "not_offered"
            # Checked again: either account may have been linked meanwhile.
            problem = await self._link_problem(conn, int(code.user_id), int(code.offered_to))
            if problem is not None:
                return problem
            # Taken in one statement, so that a code is used once.
            taken = await conn.execute(
                update(link_codes).where(c.code_hash == code.code_hash, *waiting)
                .values(used_at=aware(at))
            )  # fmt: skip
            if taken.rowcount != 1:
                return "not_offered"
            return await self._link(conn, int(code.user_id), int(code.offered_to), aware(at))

    async def _link_problem(
        self, conn: AsyncConnection, first: int, second: int
    ) -> LinkOutcome | None:
        """Why the two accounts cannot be linked, or None: already one person, or the two
        (with the accounts each is linked to) would hold two accounts of one platform."""
        u = users.c
        persons = select(u.person_id).where(u.id.in_([first, second]), u.person_id.is_not(None))
        rows = (
            await conn.execute(
                select(u.id, u.platform, u.person_id).where(
                    or_(u.id.in_([first, second]), u.person_id.in_(persons))
                )
            )
        ).all()
        person = {row.id: row.person_id for row in rows}
        if person.get(first) is not None and person.get(first) == person.get(second):
            return "already_linked"
        platforms = [row.platform for row in rows]
        return "same_platform" if len(set(platforms)) < len(platforms) else None

    async def _link(
        self, conn: AsyncConnection, first: int, second: int, at: datetime
    ) -> LinkOutcome:
        persons = dict(
            (
                await conn.execute(
                    select(users.c.id, users.c.person_id).where(users.c.id.in_([first, second]))
                )
            ).all()
        )
        mine, theirs = persons.get(first), persons.get(second)
        if mine is not None and mine == theirs:
            return "already_linked"
        person = mine or theirs
        if person is None:
            person = (
                await conn.execute(people.insert().returning(people.c.id), {"created_at": at})
            ).scalar_one()
        # Both accounts, and every account already linked to either, become one person.
        joined = [p for p in (mine, theirs) if p is not None]
        await conn.execute(
            update(users)
            .where(or_(users.c.id.in_([first, second]), users.c.person_id.in_(joined)))
            .values(person_id=person)
        )
        for old in joined:
            if old != person:
                await conn.execute(delete(people).where(people.c.id == old))
        return "linked"

    async def unlink(self, user: UserKey) -> bool:
        u = users.c
        async with self._transaction() as conn:
            person = (
                await conn.execute(
                    select(u.person_id).where(
                        u.platform == user.platform, u.platform_user_id == user.user_id
                    )
                )
            ).scalar_one_or_none()
            if person is None:
                return False
            await conn.execute(
                update(users)
                .where(u.platform == user.platform, u.platform_user_id == user.user_id)
                .values(person_id=None)
            )
            # A person of one account is no link at all: dissolve it.
            left = (
                await conn.execute(select(func.count()).where(u.person_id == person))
            ).scalar_one()
            if left <= 1:
                await conn.execute(
                    update(users).where(u.person_id == person).values(person_id=None)
                )
                await conn.execute(delete(people).where(people.c.id == person))
            return True

    async def linked_accounts(self, user: UserKey) -> list[UserKey]:
        u = users.c
        query = (
            select(u.platform, u.platform_user_id)
            .where(
                u.id.in_(_person_ids(user)),
                or_(u.platform != user.platform, u.platform_user_id != user.user_id),
            )
            .order_by(u.id)
        )
        return [UserKey(platform, uid) for platform, uid in await self._fetchall(query)]

    async def export_turns(self, user: UserKey) -> list[StoredTurn]:
        t, u = turns.c, users.c
        query = (
            select(u.platform, u.platform_user_id, t.chat_id, t.role, t.content, t.created_at)
            .join_from(turns, users, u.id == t.user_id)
            .where(t.user_id.in_(_person_ids(user)))
            .order_by(t.created_at, t.id)
        )
        return [StoredTurn(*row) for row in await self._fetchall(query)]

    # --- MoodStore: the safety net's notes --------------------------------------------------

    async def record_support_note(
        self, user: UserKey, trigger: SupportTrigger, at: datetime
    ) -> None:
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, user, aware(at))
            await conn.execute(
                support_notes.insert(),
                {"user_id": user_id, "kind": trigger, "created_at": aware(at)},
            )

    async def support_notes(self, user: UserKey, since: datetime) -> list[SupportNote]:
        n, u = support_notes.c, users.c
        query = (
            select(u.platform, u.platform_user_id, n.kind, n.created_at)
            .join_from(support_notes, users, u.id == n.user_id)
            .where(n.user_id.in_(_person_ids(user)), n.created_at >= aware(since))
            .order_by(n.created_at, n.id)
        )
        return [SupportNote(*row) for row in await self._fetchall(query)]

    # --- MoodStore: the weekly digest's opt-ins ---------------------------------------------

    async def set_digest(self, user: UserKey, chat_id: str | None, at: datetime) -> bool:
        d = digests.c
        async with self._transaction() as conn:
            if chat_id is None:
                result = await conn.execute(delete(digests).where(d.user_id == _user_id_of(user)))
                return result.rowcount == 1
            user_id = await self._user_id(conn, user, aware(at))
            # Moving the digest to another chat keeps when it was last sent: a week is a week.
            upsert = self._db.insert(digests).on_conflict_do_update(
                index_elements=[d.user_id],
                set_={"chat_id": chat_id},
                where=d.chat_id != chat_id,
            )
            row = {"user_id": user_id, "chat_id": chat_id, "created_at": aware(at)}
            result = await conn.execute(upsert, row)
            return result.rowcount == 1

    async def digest_subscriptions(self, platform: str) -> list[DigestSubscription]:
        d, u = digests.c, users.c
        query = (
            select(u.platform_user_id, d.chat_id)
            .join_from(digests, users, u.id == d.user_id)
            .where(u.platform == platform)
            .order_by(d.created_at, d.user_id)
        )
        return [
            DigestSubscription(UserKey(platform, user_id), chat_id)
            for user_id, chat_id in await self._fetchall(query)
        ]

    async def claim_digest(self, user: UserKey, not_since: datetime, at: datetime) -> bool:
        d = digests.c
        async with self._transaction() as conn:
            # One conditional UPDATE: of several processes running the same weekly job, the
            # first to commit wins; the others find last_sent_at already in this week.
            result = await conn.execute(
                update(digests)
                .where(
                    d.user_id == _user_id_of(user),
                    (d.last_sent_at.is_(None)) | (d.last_sent_at < aware(not_since)),
                )
                .values(last_sent_at=aware(at))
            )
            return result.rowcount == 1

    # --- MoodStore: the daily check-in's opt-ins ---------------------------------------------

    async def set_checkin(
        self, user: UserKey, chat_id: str, at: time, timezone: str, now: datetime, passed: date
    ) -> None:
        c = checkins.c
        row = {"chat_id": chat_id, "at_time": at.strftime("%H:%M"), "timezone": timezone}
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, user, aware(now))
            # A new time keeps the day last claimed: moving today's check-in to later today
            # does not ask twice.
            upsert = self._db.insert(checkins).on_conflict_do_update(
                index_elements=[c.user_id], set_=row
            )
            await conn.execute(upsert, {**row, "user_id": user_id, "created_at": aware(now)})
            await conn.execute(_claim_checkin(user_id, passed))

    async def stop_checkin(self, user: UserKey) -> bool:
        async with self._transaction() as conn:
            result = await conn.execute(
                delete(checkins).where(checkins.c.user_id == _user_id_of(user))
            )
            return result.rowcount == 1

    async def checkin_subscriptions(self, platform: str) -> list[CheckinSubscription]:
        c, u = checkins.c, users.c
        query = _checkin_query().where(u.platform == platform).order_by(c.created_at, c.user_id)
        return [_checkin(row) for row in await self._fetchall(query)]

    async def checkins(self, user: UserKey) -> list[CheckinSubscription]:
        c = checkins.c
        query = _checkin_query().where(c.user_id.in_(_person_ids(user))).order_by(c.user_id)
        return [_checkin(row) for row in await self._fetchall(query)]

    async def claim_checkin(self, user: UserKey, day: date) -> bool:
        async with self._transaction() as conn:
            # One conditional UPDATE: of several processes looking at the same minute, the
            # first to commit wins; the others find the day already claimed.
            result = await conn.execute(_claim_checkin(_user_id_of(user), day))
            return result.rowcount == 1

    async def add_turns(
        self,
        user: UserKey,
        chat_id: str,
        turns_: Sequence[Turn],
        at: datetime,
        keep_turns: int | None = None,
        turn_step: int = 1,
    ) -> None:
        async with self._transaction() as conn:
            user_id = await self._user_id(conn, user, aware(at))
            rows = [
                {"user_id": user_id, "chat_id": chat_id, "role": t.role, "content": t.content,
                 "created_at": aware(at)}
                for t in turns_
            ]  # fmt: skip
            if rows:
                await conn.execute(turns.insert(), rows)
            if keep_turns is not None:
                await self._prune_turns(conn, user_id, chat_id, keep_turns, turn_step)

    @asynccontextmanager
    async def user_turn(self, user: UserKey) -> AsyncIterator[None]:
        self._check_open()
        async with self._db.user_turn(user):
            yield

    # --- internals --------------------------------------------------------------------------

    async def _migrate(self) -> None:
        async with self._transaction(write=False) as conn:
            state = await conn.run_sync(migrations.read_state)
        migrations.check(state, self.shown)
        if state.is_current():
            return
        self._check_open()
        with self._db.translated():
            async with self._db.migration() as conn:
                await self._db.lock_schema(conn)
                # Reads the version again under the lock: another process may have
                # migrated meanwhile.
                await conn.run_sync(migrations.upgrade, self.shown)

    async def _user_id(self, conn: AsyncConnection, user: UserKey, at: datetime) -> int:
        """The user's row id, the row inserted if new (inside the caller's transaction)."""
        await conn.execute(
            self._db.insert(users).on_conflict_do_nothing(
                index_elements=[users.c.platform, users.c.platform_user_id]
            ),
            {"platform": user.platform, "platform_user_id": user.user_id, "created_at": at},
        )
        # Inserted or already there; on PostgreSQL a concurrent insert by another process
        # has committed by now (ON CONFLICT waited for it), so the row is visible.
        return int((await conn.execute(select(_user_id_of(user)))).scalar_one())

    async def _mark_done_in(
        self,
        conn: AsyncConnection,
        key: MessageKey,
        user_id: int,
        at: datetime,
        reply: StoredReply | None = None,
    ) -> None:
        # An upsert: /forget may have deleted the row while the reply was being written.
        row = {
            "platform": key.platform,
            "chat_id": key.chat_id,
            "message_id": key.message_id,
            "user_id": user_id,
            "state": "done",
            "received_at": at,
            "done_at": at,
        }
        changes: dict[str, Any] = {"state": "done", "done_at": at, "text": None, "origin": None}
        only: ColumnElement[bool] | None = None
        if reply is not None:
            # Stored, not yet shown in full: 'received' with the answer to show again, done
            # by mark_done once the adapter has shown it (a done row stays as it is).
            changes = {"reply": json.dumps(_reply_json(reply), ensure_ascii=False)}
            row = {**row, **changes, "state": "received", "done_at": None, "owner": self.owner}
            only = inbox.c.state == "received"
        await conn.execute(
            self._db.insert(inbox).on_conflict_do_update(
                index_elements=[inbox.c.platform, inbox.c.chat_id, inbox.c.message_id],
                set_=changes,
                where=only,
            ),
            row,
        )

    async def _fetchall(self, query: Select[Any]) -> list[tuple]:
        async with self._transaction(write=False) as conn:
            result = await conn.execute(query)
            return [tuple(row) for row in result.all()]

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the mood store is closed")

    @asynccontextmanager
    async def _transaction(self, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """One transaction; database errors come out as StorageError with a clear message."""
        self._check_open()
        with self._db.translated():
            async with self._db.transaction(write) as conn:
                yield conn


def _is(key: MessageKey) -> tuple[ColumnElement[bool], ...]:
    return (
        inbox.c.platform == key.platform,
        inbox.c.chat_id == key.chat_id,
        inbox.c.message_id == key.message_id,
    )


def _reply_json(reply: StoredReply) -> dict[str, Any]:
    sentiment = reply.sentiment
    return {"text": reply.text, "label": sentiment.label, "p_positive": sentiment.p_positive,
            "neutral": sentiment.neutral, "support": reply.support,
            **({"failure": reply.failure} if reply.failure else {})}  # fmt: skip


def _stored_reply(value: str) -> StoredReply:
    data = json.loads(value)
    sentiment = Sentiment(data["label"], float(data["p_positive"]), bool(data["neutral"]))
    failure = data.get("failure")
    return StoredReply(str(data["text"]), sentiment, str(data.get("support") or ""),
                       failure if failure in get_args(FailureReason) else None)  # fmt: skip


def _numeric(message_id: str) -> tuple[int, str]:
    """A platform message id in the platform's order: Telegram's and Discord's ids are
    numbers that grow (per chat; Discord's with time), compared as numbers."""
    return (len(message_id), message_id) if message_id.isdigit() else (0, message_id)


def _comes_before(row: Any, this: Any, platform: str) -> bool:
    """Whether an inbox row of the same user was sent before `this` one: in one chat by the
    platform's message ids (two processes may record a burst's messages in either order),
    across chats by when they were recorded."""
    if row.chat_id == this.chat_id:
        return _numeric(row.message_id) < _numeric(this.message_id)
    return bool(row.received_at < this.received_at)


def _person_ids(user: UserKey) -> Select[Any]:
    """The row ids of every account of the user's person: the account itself, and those
    sharing its person_id (none when it has none: NULL equals nothing)."""
    u = users.c
    mine = select(u.person_id).where(
        u.platform == user.platform, u.platform_user_id == user.user_id
    )
    return select(u.id).where(
        or_(
            and_(u.platform == user.platform, u.platform_user_id == user.user_id),
            u.person_id == mine.scalar_subquery(),
        )
    )


def _counted_tone() -> ColumnElement[str]:
    """A mood event's tone as /mood counts it: the user's correction, else the label."""
    e = mood_events.c
    return case(
        (e.corrected_label.is_not(None), e.corrected_label),
        (e.neutral, "neutral"),
        else_=e.label,
    )


def _event_query() -> Select[Any]:
    """Mood events with their accounts, oldest first; read back by _event."""
    e, u = mood_events.c, users.c
    return (
        select(
            u.platform,
            u.platform_user_id,
            e.chat_id,
            e.label,
            e.p_positive,
            e.created_at,
            e.excerpt,
            e.neutral,
            e.message_id,
            e.corrected_label,
        )
        .join_from(mood_events, users, u.id == e.user_id)
        .order_by(e.created_at, e.id)
    )


def _event(row: tuple[Any, ...]) -> MoodEvent:
    platform, user_id, chat_id, label, p_positive, at, excerpt, neutral, message_id, fixed = row
    return MoodEvent(
        platform, user_id, chat_id, label, p_positive, at, excerpt, bool(neutral), message_id, fixed
    )


def _claim_checkin(user_id: int | ScalarSelect[int], day: date) -> Update:
    """Mark the local `day` claimed unless it, or a later day, was ("YYYY-MM-DD" text sorts
    as the days do)."""
    c = checkins.c
    return (
        update(checkins)
        .where(c.user_id == user_id, c.last_day.is_(None) | (c.last_day < day.isoformat()))
        .values(last_day=day.isoformat())
    )


def _checkin_query() -> Select[Any]:
    c, u = checkins.c, users.c
    return select(
        u.platform, u.platform_user_id, c.chat_id, c.at_time, c.timezone, c.last_day, c.created_at
    ).join_from(checkins, users, u.id == c.user_id)


def _checkin(row: tuple[Any, ...]) -> CheckinSubscription:
    platform, user_id, chat_id, at, zone, last_day, created_at = row
    day = date.fromisoformat(last_day) if last_day else None
    return CheckinSubscription(
        UserKey(platform, user_id), chat_id, time.fromisoformat(at), zone, day, created_at
    )


def _user_id_of(user: UserKey) -> ScalarSelect[int]:
    """The scalar subquery for a user's row id."""
    return (
        select(users.c.id)
        .where(users.c.platform == user.platform, users.c.platform_user_id == user.user_id)
        .scalar_subquery()
    )

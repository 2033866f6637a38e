"""What the chat logic needs from the outside: a store, a model, and the adapters' shape.

`storage` implements MoodStore, `engine.model.worker.ModelWorker` implements ModelFacade, and the
platform adapters implement Adapter. Only the types of `engine.types` cross these ports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime, time
from typing import Protocol

from engine.types import (
    CheckinSubscription,
    Correction,
    DigestSubscription,
    IncomingMessage,
    LinkOffer,
    LinkOutcome,
    MessageKey,
    MoodEvent,
    ReplyRequest,
    Sentiment,
    StoredTurn,
    SupportNote,
    SupportTrigger,
    Tone,
    Turn,
    Unfinished,
    UserKey,
)


class JournalStore(Protocol):
    """What engine/chat/journal.py needs beyond the exchanges: corrections, linked accounts (one
    person, one mood history) and the export. A person's mood events, /forget and the export
    cover every account linked to the caller's."""

    async def correct_mood(
        self, user: UserKey, chat_id: str, message_id: str | None, tone: Tone, at: datetime
    ) -> Correction:
        """Store `tone` beside the label of the user's message `message_id` in `chat_id`
        (None: the user's latest labelled message anywhere). Only the owner can, only once."""

    async def corrected_events(self) -> list[MoodEvent]:
        """Every corrected mood event, oldest first: labelled data for the calibration."""

    async def save_link_code(
        self, user: UserKey, code_hash: str, at: datetime, expires_at: datetime
    ) -> None:
        """Keep the hash of a new link code for the user (their older unused ones are voided)."""

    async def offer_link_code(
        self, user: UserKey, code_hash: str, at: datetime, since: datetime, max_failures: int
    ) -> LinkOffer:
        """Check a code the user entered, without using it: good ("offered", with its issuer),
        or why not. A good code is kept waiting for the user's confirmation (redeem_link_code)
        until it expires; linking never joins two accounts of one platform. More than
        `max_failures` failed attempts by the user since `since` refuse further attempts
        ("too_many")."""

    async def redeem_link_code(
        self, user: UserKey, at: datetime, code_hash: str | None = None
    ) -> LinkOutcome:
        """Link the user with the issuer of the code offered to them (offer_link_code; that
        code when `code_hash` is given), once. Each account keeps its own rows: the link only
        groups the accounts, so unlink separates them as they were."""

    async def unlink(self, user: UserKey) -> bool:
        """Take the user's account out of its person; False when it was not linked."""

    async def linked_accounts(self, user: UserKey) -> list[UserKey]:
        """The other accounts of the user's person."""

    async def export_turns(self, user: UserKey) -> list[StoredTurn]:
        """The stored conversation turns of every account of the user's person, oldest first."""


class MoodStore(JournalStore, Protocol):
    """Raises engine.errors.StorageError, with a message fit for the log, when the database
    cannot do what is asked (locked, corrupt, read-only, unreachable)."""

    async def claim_message(
        self, key: MessageKey, user: UserKey, at: datetime, message: IncomingMessage | None = None
    ) -> bool:
        """Record an incoming platform message in the inbox ('received', owned by this
        process) before work on it starts, with what a retry needs (`message`: its text and
        origin; the text is dropped when it is done). False when it was recorded before: a
        redelivery, or another process has it."""

    async def take_message(self, key: MessageKey) -> int | None:
        """Called holding the user's turn, before answering: make sure this process is the one
        to answer a 'received' message. It is when this process recorded it, or when the
        process that did is gone (then it becomes this process's, and is counted as a retry).
        Returns how often the message was taken over from a gone process (0: never), or None
        when it is not this process's to answer (done, or its live owner has it)."""

    async def waiting_before(self, key: MessageKey, user: UserKey, since: datetime) -> int:
        """How many of this user's messages recorded since `since`, and before this one, are
        still 'received' (being answered or waiting), in every process sharing the store."""

    async def latest_messages(self, platform: str, since: datetime) -> list[MessageKey]:
        """Per chat of the platform with a message recorded since `since`, the latest one
        recorded (where a catch-up after downtime starts). Deleting a user's data (/forget)
        does not move it back: what was forgotten is not read, answered and stored again."""

    async def unfinished(self, platform: str) -> list[Unfinished]:
        """The platform's messages still 'received' whose process is gone, oldest first: the
        ones another process may take over (take_message, under the user's turn, decides)."""

    async def set_reply_ref(self, key: MessageKey, reply_ref: str) -> None:
        """Note the adapter's id of the reply message begun for a 'received' message."""

    async def mark_done(self, key: MessageKey, at: datetime) -> None:
        """Mark an inbox message done when it ended without an exchange to store."""

    async def record_exchange(
        self,
        event: MoodEvent,
        turns: Sequence[Turn],
        done: MessageKey | None = None,
        keep_turns: int | None = None,
        turn_step: int = 1,
    ) -> None:
        """Write the mood event and the turns of one message, and mark its inbox entry
        `done` when given, in a single transaction. With `keep_turns`, the chat's older
        turns beyond that many are deleted in it too, a multiple of `turn_step` at a time
        (so recent_turns' window, which moves `turn_step` at a time, stays where it was)."""

    def user_turn(self, user: UserKey) -> AbstractAsyncContextManager[None]:
        """Held while one of the user's messages is handled: other bot processes sharing the
        database wait for it (PostgreSQL), so a user's messages are handled one at a time."""

    async def recent_turns(
        self, user: UserKey, chat_id: str, limit: int, step: int = 1
    ) -> list[Turn]:
        """This user's latest turns in this chat, oldest first: at most `limit`, starting at a
        multiple of `step` turns into the chat, so that the window moves `step` turns at a time
        (the prompts in between all open the same way). Each user turn carries the tone its
        message was shown with (from the mood event stored with it: neutral, or its label)."""

    async def mood_events(
        self, user: UserKey, since: datetime, until: datetime | None = None
    ) -> list[MoodEvent]:
        """This user's events with since <= created_at < until, oldest first."""

    async def clear_turns(self, user: UserKey, chat_id: str) -> int:
        """Delete this user's conversation memory in this chat; returns rows deleted."""

    async def forget_user(self, user: UserKey) -> int:
        """Delete everything stored about this user; returns rows deleted."""

    # --- the safety net's notes (engine/chat/safety.py) ---

    async def record_support_note(
        self, user: UserKey, trigger: SupportTrigger, at: datetime
    ) -> None:
        """Record that a support note was shown to the user at `at`, and why."""

    async def support_notes(self, user: UserKey, since: datetime) -> list[SupportNote]:
        """The notes shown since `since` to every account of the user's person, oldest first
        (what the stretch note's once per 7 days and /export read)."""

    # --- the weekly digest's opt-ins (/digest) ---

    async def set_digest(self, user: UserKey, chat_id: str | None, at: datetime) -> bool:
        """Opt the user in (to be sent to `chat_id`) or out (None); False when nothing
        changed (already in, to the same chat, or already out)."""

    async def digest_subscriptions(self, platform: str) -> list[DigestSubscription]:
        """Everyone on this platform who opted in."""

    async def claim_digest(self, user: UserKey, not_since: datetime, at: datetime) -> bool:
        """Mark the user's digest sent at `at` unless it was sent at or after `not_since`:
        True means this caller sends it (of several bot processes, exactly one does)."""

    # --- the daily check-in's opt-ins (/checkin) ---

    async def set_checkin(
        self, user: UserKey, chat_id: str, at: time, timezone: str, now: datetime, passed: date
    ) -> None:
        """Opt the user in (or move their check-in) to `at` local time in `timezone`, asked in
        `chat_id`; the local day `passed` counts as claimed (its time was before the opt-in)."""

    async def stop_checkin(self, user: UserKey) -> bool:
        """Opt the user out; False when they were not in."""

    async def checkin_subscriptions(self, platform: str) -> list[CheckinSubscription]:
        """Everyone on this platform who opted in."""

    async def checkins(self, user: UserKey) -> list[CheckinSubscription]:
        """The opt-ins of every account of the user's person (for /checkin and /export)."""

    async def claim_checkin(self, user: UserKey, day: date) -> bool:
        """Claim the user's check-in of the local `day` unless that day, or a later one, was
        claimed: True means this caller sends it (of several bot processes, exactly one)."""

    async def add_turns(
        self,
        user: UserKey,
        chat_id: str,
        turns: Sequence[Turn],
        at: datetime,
        keep_turns: int | None = None,
        turn_step: int = 1,
    ) -> None:
        """Store turns that are no exchange (the check-in's question, as the assistant's), so
        the user's answer is read with them; pruned as record_exchange prunes."""

    async def close(self) -> None: ...


class ReplyTokens(Protocol):
    """The text deltas of one reply, as they are decoded; `finished` is known at the end."""

    finished: bool

    def __aiter__(self) -> AsyncIterator[str]: ...

    def cancel(self) -> None:
        """Stop generating (the caller gave up); a no-op once the reply has ended."""


class ModelFacade(Protocol):
    """The model's two jobs. Raises engine.errors.ModelBusy, ModelTimeout or ModelStopped
    when it cannot do them; any other exception is a model failure."""

    async def tag(self, text: str) -> Sentiment: ...

    async def tag_many(self, texts: Sequence[str]) -> list[Sentiment]:
        """Label several texts together, in order: one batched label pass where the backend
        batches (the worker gives the runner one list; vLLM gets one request)."""

    def reply(self, request: ReplyRequest) -> ReplyTokens: ...


class Adapter(Protocol):
    """A platform translator: platform events in, chat logic calls, platform replies out."""

    name: str

    async def start(self) -> None:
        """Connect and begin handling messages; return once running."""

    async def stop(self) -> None:
        """Stop receiving, finish or drop in-flight work, disconnect."""

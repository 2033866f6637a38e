"""The user's journal beyond /mood: correcting a label, one timeline across platforms, and
taking one's data out. Logic only; engine/chat/commands.py exposes it as commands and the adapters
render the buttons.

Corrections. Each mood event remembers the platform message it labelled (mood_events.
message_id), so a button under the label ("mood:fix:<message id>:<tone>", well inside
Telegram's 64 bytes of callback data) finds its event without any state in the adapter, even
after a restart. The correction is stored beside the model's label (corrected_label), never
over it: /mood and the chart count the correction, the export shows both, and
`python -m benchmarks.data.corrections` turns corrected rows into labelled data for the calibration.
Only the message's author can correct it, once; a second press or someone else's press
changes nothing and is told why. The console, which has no buttons or message ids, uses
`/wrong <tone>` on the latest label (available on every platform).

One timeline. `/link` gives a one-time code: 8 characters from an alphabet without look-alikes
(32^8, about 1.1e12), kept only as its SHA-256, valid for 10 minutes and once. Entered on
another platform (`/link CODE`), it links nothing yet: the answer names the code's account and
says what linking means (one mood history, /export of either shows both, /forget on either
wipes both, /unlink separates), and only `/link confirm` from that account, before the code
expires, makes both accounts one person (users.person_id): every mood query, /forget and
/export then covers all of that person's accounts. Someone talked into entering another's
code is told what it would do before anything happens. A code from the same platform is
refused, and so is any link that would join two accounts of one platform. A user gets
MAX_LINK_FAILURES wrong, expired or used codes per LINK_TTL; then further attempts are
refused until the window has passed. Whoever enters a code sees the issuer's history, so
/link works in private chats only. Each account keeps its own rows (the link only groups
them), so `/unlink` takes the caller's account out again as it was. /forget on any account
deletes them all, after waiting for each one's message in progress (ChatService.forget).

Export. CSV (one row per mood event, with the correction beside the label) and JSON (the
same events, plus the conversation turns kept for context, the support notes shown, with
their trigger: engine/chat/safety.py, and the daily check-in asked for) as bytes; adapters
send them as documents privately, and the console writes them to files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from engine.chat import texts
from engine.chat.service import ChatService
from engine.ports import JournalStore
from engine.types import (
    CheckinSubscription,
    Correction,
    LinkOutcome,
    MoodEvent,
    StoredTurn,
    SupportNote,
    Tone,
    UserKey,
)

LINK_TTL = timedelta(minutes=10)
MAX_LINK_FAILURES = 5  # per user per LINK_TTL: guessing a code stays hopeless
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 8
CONFIRM_WORDS = ("confirm", "确认")  # `/link confirm`; no code can be one (no O or I)
FIX_PREFIX = "mood:fix:"
_FIX_DATA = re.compile(r"^mood:fix:([\w-]{1,40}):(positive|negative|neutral)$")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

CSV_FIELDS = (
    "created_at", "platform", "user_id", "chat_id", "message_id", "label", "p_positive",
    "neutral", "shown", "corrected", "counted", "excerpt",
)  # fmt: skip


@dataclass(frozen=True)
class ExportFile:
    name: str
    data: bytes
    mime: str


def offered_corrections(shown: Tone) -> tuple[Tone, ...]:
    """The buttons under a label: the other side and neutral (for neutral, both sides)."""
    if shown == "neutral":
        return ("positive", "negative")
    return ("negative" if shown == "positive" else "positive", "neutral")


def fix_data(message_id: str, tone: Tone) -> str:
    return f"{FIX_PREFIX}{message_id}:{tone}"


def parse_fix_data(data: str) -> tuple[str, Tone] | None:
    match = _FIX_DATA.match(data)
    if match is None:
        return None
    return match.group(1), cast(Tone, match.group(2))


def _account(user: UserKey) -> str:
    return f"{user.platform} {user.user_id}"


_LINK_REFUSED: dict[LinkOutcome, str] = {
    "already_linked": texts.LINK_ALREADY,
    "same_platform": texts.LINK_SAME_PLATFORM,
    "own_code": texts.LINK_OWN_CODE,
    "invalid": texts.LINK_INVALID,
    "expired": texts.LINK_EXPIRED,
    "too_many": texts.LINK_TOO_MANY,
    "not_offered": texts.LINK_NOTHING_TO_CONFIRM,
}


def hash_code(code: str) -> str:
    normal = re.sub(r"[\s-]", "", code).upper()
    return hashlib.sha256(normal.encode()).hexdigest()


def correction_text(correction: Correction, tone: Tone) -> str:
    event = correction.event
    if correction.outcome == "corrected":
        assert event is not None
        return texts.correction_done(event.shown_tone, tone)
    if correction.outcome == "already_corrected":
        return texts.CORRECTION_ALREADY
    if correction.outcome == "same":
        return texts.correction_same(tone)
    if correction.outcome == "not_yours":
        return texts.CORRECTION_NOT_YOURS
    return texts.CORRECTION_NOT_FOUND


class Journal:
    def __init__(self, service: ChatService) -> None:
        self.service = service
        # The chat service's store is the one SqlMoodStore, which is a JournalStore too
        # (engine.ports.MoodStore extends it).
        self.store: JournalStore = service.store

    def _now(self) -> datetime:
        return self.service._now()

    # --- corrections ------------------------------------------------------------------------

    async def correct(
        self, user: UserKey, chat_id: str, message_id: str | None, tone: Tone
    ) -> Correction:
        return await self.store.correct_mood(user, chat_id, message_id, tone, self._now())

    async def wrong(self, user: UserKey, chat_id: str, args: str) -> str:
        """`/wrong <tone>`: correct the caller's latest label."""
        tone = texts.TONE_NAMES.get(args.strip().lower())
        if tone is None:
            events = await self.service.store.mood_events(user, EPOCH)
            own = [e for e in events if (e.platform, e.user_id) == (user.platform, user.user_id)]
            return texts.wrong_usage(own[-1].tone if own else None)
        correction = await self.correct(user, chat_id, None, tone)
        if correction.outcome == "not_found":
            return texts.CORRECTION_NOTHING
        return correction_text(correction, tone)

    # --- one timeline -----------------------------------------------------------------------

    async def link(self, user: UserKey, args: str) -> str:
        """`/link`: a new code; `/link CODE`: what linking with the code's issuer means, asked
        to confirm; `/link confirm` (or `/link CODE confirm`): link."""
        words = args.split()
        confirmed = bool(words) and words[-1].lower() in CONFIRM_WORDS
        code = "".join(words[:-1] if confirmed else words)
        if confirmed:
            return await self._confirm(user, code)
        if not code:
            return await self._new_code(user)
        now = self._now()
        offer = await self.store.offer_link_code(
            user, hash_code(code), now, now - LINK_TTL, MAX_LINK_FAILURES
        )
        if offer.outcome == "offered" and offer.issuer is not None:
            minutes = int(LINK_TTL.total_seconds() // 60)
            return texts.link_confirm_ask(_account(offer.issuer), minutes)
        return _LINK_REFUSED[offer.outcome]

    async def _confirm(self, user: UserKey, code: str) -> str:
        outcome = await self.store.redeem_link_code(
            user, self._now(), hash_code(code) if code else None
        )
        if outcome == "linked":
            others = await self.store.linked_accounts(user)
            return texts.linked_text([_account(other) for other in others])
        return _LINK_REFUSED[outcome]

    async def _new_code(self, user: UserKey) -> str:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        now = self._now()
        await self.store.save_link_code(user, hash_code(code), now, now + LINK_TTL)
        return texts.link_code_text(code, int(LINK_TTL.total_seconds() // 60))

    async def unlink(self, user: UserKey) -> str:
        return texts.UNLINK_DONE if await self.store.unlink(user) else texts.UNLINK_NONE

    async def is_linked(self, user: UserKey) -> bool:
        return bool(await self.store.linked_accounts(user))

    # --- export -----------------------------------------------------------------------------

    async def export(self, user: UserKey) -> tuple[str, tuple[ExportFile, ...]]:
        events = await self.service.store.mood_events(user, EPOCH)
        turns = await self.store.export_turns(user)
        notes = await self.service.store.support_notes(user, EPOCH)
        checkins = await self.service.store.checkins(user)
        stamp = self._now().strftime("%Y%m%d-%H%M%S")
        journal = journal_json(events, turns, notes, checkins)
        files = (
            ExportFile(f"mood-{stamp}.csv", events_csv(events), "text/csv"),
            ExportFile(f"journal-{stamp}.json", journal, "application/json"),
        )
        corrected = sum(1 for e in events if e.corrected is not None)
        return texts.export_done(len(events), corrected, len(turns), len(notes)), files


def _event_row(event: MoodEvent) -> dict[str, object]:
    return {
        "created_at": event.created_at.isoformat(),
        "platform": event.platform,
        "user_id": event.user_id,
        "chat_id": event.chat_id,
        "message_id": event.message_id,
        "label": event.label,
        "p_positive": round(event.p_positive, 4),
        "neutral": event.neutral,
        "shown": event.shown_tone,
        "corrected": event.corrected,
        "counted": event.tone,
        "excerpt": event.excerpt,
    }


def events_csv(events: list[MoodEvent]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for event in events:
        writer.writerow({k: "" if v is None else v for k, v in _event_row(event).items()})
    # A BOM, so that spreadsheet programs read the Chinese excerpts as UTF-8.
    return out.getvalue().encode("utf-8-sig")


def journal_json(
    events: list[MoodEvent],
    turns: list[StoredTurn],
    notes: list[SupportNote] | None = None,
    checkins: list[CheckinSubscription] | None = None,
) -> bytes:
    document = {
        "mood_events": [_event_row(event) for event in events],
        "turns": [
            {
                "created_at": turn.created_at.isoformat(),
                "platform": turn.platform,
                "user_id": turn.user_id,
                "chat_id": turn.chat_id,
                "role": turn.role,
                "content": turn.content,
            }
            for turn in turns
        ],
        # The support notes shown after replies, and why (never the message that prompted it).
        "support_notes": [
            {
                "created_at": note.created_at.isoformat(),
                "platform": note.platform,
                "user_id": note.user_id,
                "trigger": note.trigger,
            }
            for note in notes or ()
        ],
        # The daily check-in asked for (/checkin), and the last local day it was claimed.
        "checkins": [
            {
                "platform": checkin.user.platform,
                "user_id": checkin.user.user_id,
                "chat_id": checkin.chat_id,
                "time": checkin.at.strftime("%H:%M"),
                "timezone": checkin.timezone,
                "since": checkin.created_at.isoformat() if checkin.created_at else None,
                "last_day": checkin.last_day.isoformat() if checkin.last_day else None,
            }
            for checkin in checkins or ()
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode()

"""The plain types that cross package boundaries: a message in, reply events out, what the
store keeps, and what the chat logic asks of the model.

Every package may import these; nothing here imports a platform SDK, SQL, torch or pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Literal

Label = Literal["positive", "negative"]
# What is shown, and the tone of the reply: a message in which nothing much is felt (a
# greeting, a question, a plain fact) is shown as neutral while keeping its two-way label.
Tone = Literal["positive", "negative", "neutral"]
# "system" turns exist only inside a reply prompt (the tone notes of engine/chat/prompts.py); the
# store keeps user and assistant turns.
Role = Literal["user", "assistant", "system"]


@dataclass(frozen=True)
class UserKey:
    """A person is a platform plus that platform's user id: Telegram 42 is not Discord 42."""

    platform: str
    user_id: str


@dataclass(frozen=True)
class MessageKey:
    """One platform message, the same on every delivery: Telegram numbers messages per chat,
    so the chat is part of the key."""

    platform: str
    chat_id: str
    message_id: str


@dataclass(frozen=True)
class IncomingMessage:
    platform: str
    user_id: str
    chat_id: str
    text: str
    # The platform's id of this message; None where there is none (the console). With it,
    # the chat service handles the message at most once, however often it is delivered.
    message_id: str | None = None
    # Where the adapter answers it, in the adapter's own words (a Telegram forum topic, a
    # group): kept with the unfinished message, so an answer after a restart lands there too.
    # The chat logic never reads it.
    origin: str = ""
    # A one-to-one chat (a Telegram private chat, a Discord DM, the console): only there does a
    # reply get the support note (engine/chat/safety.py). False unless the adapter knows, so a note
    # meant for one person never lands in a group.
    private: bool = False

    @property
    def user(self) -> UserKey:
        return UserKey(self.platform, self.user_id)

    @property
    def key(self) -> MessageKey | None:
        if self.message_id is None:
            return None
        return MessageKey(self.platform, self.chat_id, self.message_id)


@dataclass(frozen=True)
class Sentiment:
    label: Label  # the side the scores favour, always one of the two
    p_positive: float  # calibrated: of the messages labelled so, this share is positive
    neutral: bool = False  # shown as neutral: too close to call to show a side

    @property
    def confidence(self) -> float:
        return self.p_positive if self.label == "positive" else 1.0 - self.p_positive

    @property
    def tone(self) -> Tone:
        return "neutral" if self.neutral else self.label

    @classmethod
    def from_p_positive(cls, p_positive: float, neutral: bool = False) -> Sentiment:
        return cls("positive" if p_positive >= 0.5 else "negative", p_positive, neutral)


@dataclass(frozen=True)
class Timings:
    sentiment_ms: float
    first_token_ms: float | None
    total_ms: float


# --- the stream of events the engine yields for one message -------------------------------


@dataclass(frozen=True)
class SentimentTagged:
    """Always the first event of a successful message: adapters show the label at once."""

    sentiment: Sentiment
    ms: float


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReplyDone:
    """The last event: the whole reply, already stored."""

    text: str
    sentiment: Sentiment
    timings: Timings
    finished: bool  # True when the model ended its turn, False when MAX_NEW_TOKENS cut it
    # A short caring note with where to find help (engine/chat/safety.py), to send after the reply
    # as its own message; "" for none. Only ever set in a private chat, and already recorded.
    support: str = ""


FailureReason = Literal["empty", "busy", "slow_down", "timeout", "model_error", "storage_error"]


@dataclass(frozen=True)
class ReplyFailed:
    """The last event when no reply could be made; `message` is ready to show to the user,
    or empty when nothing is to be shown (a message over the user's cap after they were
    already asked to slow down). `answers`: the note is the message's answer, so once it is
    shown the message is done (ChatService.delivered, like a reply); False for a storage
    error, which leaves the message to be tried again."""

    reason: FailureReason
    message: str
    sentiment: Sentiment | None = None
    answers: bool = True


@dataclass(frozen=True)
class AlreadyHandled:
    """The only event when this platform message was seen before (a redelivery, or another
    bot process has it): there is nothing to show, and nothing was stored."""

    key: MessageKey


ReplyEvent = SentimentTagged | TextDelta | ReplyDone | ReplyFailed | AlreadyHandled


# --- what the store keeps -----------------------------------------------------------------


@dataclass(frozen=True)
class ReplyMessages:
    """The platform messages of one reply, recorded as they are sent so that a restart edits
    them in place rather than posting new ones: the ids of its chunks in order (a long reply
    overflows into several), its support note's, and the key of a send under way whose
    message is not known yet (a platform that deduplicates sends by key returns it)."""

    chunks: tuple[str, ...] = ()
    support: str | None = None
    sending: str | None = None


@dataclass(frozen=True)
class StoredReply:
    """An answer stored with its exchange but not yet known to be shown in full: what a
    restart shows again, without the model and without a second mood event. With `failure`
    (its reason) it is a failure note after the label (the model failed mid-reply), shown
    again as that failure."""

    text: str
    sentiment: Sentiment
    support: str = ""
    failure: FailureReason | None = None


@dataclass(frozen=True)
class Unfinished:
    """A platform message that was recorded but never answered (its process died, or was
    stopped mid-reply): what ChatService.resume needs to answer it after a restart."""

    message: IncomingMessage
    received_at: datetime
    # The adapter's ids of the reply messages it had begun (the label, perhaps half a reply,
    # space-separated), so the answer can complete them; None when nothing had been sent yet.
    reply_ref: str | None = None
    support_ref: str | None = None  # the support note's message, when one was sent
    sending: str | None = None  # the key of a send under way (ReplyMessages.sending)
    # Whose it is: a process that is gone, this one (answering it, or it failed here), or
    # another live process.
    held_by: Literal["gone", "here", "elsewhere"] = "gone"

    @property
    def key(self) -> MessageKey:
        assert self.message.key is not None  # only platform messages are recorded
        return self.message.key

    @property
    def messages(self) -> ReplyMessages:
        chunks = tuple(self.reply_ref.split()) if self.reply_ref else ()
        return ReplyMessages(chunks, self.support_ref, self.sending)


@dataclass(frozen=True)
class MoodEvent:
    platform: str
    user_id: str
    chat_id: str
    label: Label
    p_positive: float
    created_at: datetime  # timezone-aware, UTC
    excerpt: str | None = None  # only when STORE_MESSAGE_TEXT=true
    neutral: bool = False  # shown as neutral (the label is still the side the scores favour)
    # The platform message this label belongs to (None on the console), so that a correction
    # button under the label finds its event; and the user's own correction, kept beside the
    # model's label rather than over it (engine/chat/journal.py).
    message_id: str | None = None
    corrected: Tone | None = None

    @property
    def shown_tone(self) -> Tone:
        """What the model's label showed."""
        return "neutral" if self.neutral else self.label

    @property
    def tone(self) -> Tone:
        """What counts: the user's correction when there is one, else the model's label."""
        return self.corrected or self.shown_tone


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str
    # A user turn read back from the store: the tone its message was shown with (None when
    # unknown), so that a prompt can show each earlier message with the tone it was answered in.
    tone: Tone | None = None


def mood_share(positive: int, negative: int, neutral: int) -> float | None:
    """0 (all negative) … 1 (all positive), a neutral message counting half; None for none."""
    total = positive + negative + neutral
    return (positive + neutral / 2) / total if total else None


@dataclass(frozen=True)
class DayPoint:
    day: date
    positive: int
    negative: int
    neutral: int = 0

    @property
    def total(self) -> int:
        return self.positive + self.negative + self.neutral

    @property
    def positive_share(self) -> float | None:
        return mood_share(self.positive, self.negative, self.neutral)


@dataclass(frozen=True)
class MoodReport:
    user: UserKey
    days: int
    positive: int
    negative: int
    series: tuple[DayPoint, ...]  # one point per day, oldest first, empty days included
    sparkline: str
    # the same-length period just before; None when it had no events
    previous_positive_share: float | None
    latest: tuple[MoodEvent, ...] = field(default=())  # newest first
    text: str = ""  # the human-readable summary adapters send as is
    neutral: int = 0

    @property
    def total(self) -> int:
        return self.positive + self.negative + self.neutral

    @property
    def positive_share(self) -> float | None:
        """The mood share (see mood_share): the positive share when nothing was neutral."""
        return mood_share(self.positive, self.negative, self.neutral)

    @property
    def trend(self) -> float | None:
        """Change of the positive share against the previous period, in share points."""
        if self.positive_share is None or self.previous_positive_share is None:
            return None
        return self.positive_share - self.previous_positive_share


# --- what the chat logic asks of the model ------------------------------------------------


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 160
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.05
    seed: int | None = None
    # OpenAI-style, over the reply's own tokens: minus presence once, minus frequency per use.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # DRY ("don't repeat yourself", engine/model/sampling.py): a token that would extend a run
    # already present in the user's message, the examples, the earlier turns or the reply
    # itself loses multiplier * base ** (run - allowed_length) when the run is at least
    # allowed_length tokens long. 0 turns it off; 0.8 is the bot's default
    # (benchmarks.quality.dialogue: it keeps replies from copying the examples' wording).
    dry_multiplier: float = 0.8
    dry_base: float = 1.75
    dry_allowed_length: int = 2


@dataclass(frozen=True)
class ReplyRequest:
    system: str  # the persona (plus, in the older layout, the tone for this message's label)
    history: tuple[Turn, ...]  # oldest first; the runner drops the oldest to fit its budget
    user_text: str
    params: GenerationParams
    examples: tuple[Turn, ...] = ()  # fixed example exchanges, before the history, never trimmed
    # The tone for this message, shown to the model as a system turn right after the message
    # (below the history, so one conversation prefix serves every label); "" for none.
    note: str = ""


# --- the journal: corrections, linked accounts, export (engine/chat/journal.py) ------------------

CorrectionOutcome = Literal["corrected", "already_corrected", "same", "not_found", "not_yours"]


@dataclass(frozen=True)
class Correction:
    outcome: CorrectionOutcome
    event: MoodEvent | None = None  # the event as it is now (None when not found)


# "offered": the code is good and its issuer named, waiting for the enterer's confirmation;
# "same_platform": linking would join two accounts of one platform; "not_offered": nothing
# waiting for this account's confirmation (no code entered, or it expired or was taken).
LinkOutcome = Literal[
    "linked", "offered", "already_linked", "same_platform", "own_code", "invalid", "expired",
    "too_many", "not_offered",
]  # fmt: skip


@dataclass(frozen=True)
class LinkOffer:
    """A link code entered: what it would do, and whose it is when it is good."""

    outcome: LinkOutcome
    issuer: UserKey | None = None  # the account that asked for the code ("offered" only)


@dataclass(frozen=True)
class StoredTurn:
    """A conversation turn as exported: which account and chat it belongs to, and when."""

    platform: str
    user_id: str
    chat_id: str
    role: Role
    content: str
    created_at: datetime


# --- the safety net (engine/chat/safety.py) -------------------------------------------------------

SupportTrigger = Literal["words", "stretch"]


@dataclass(frozen=True)
class SupportNote:
    """A support note that was shown: to whom, when and why (explicit words, or a hard stretch
    of days); never the message's text."""

    platform: str
    user_id: str
    trigger: SupportTrigger
    created_at: datetime


# --- the weekly digest --------------------------------------------------------------------


@dataclass(frozen=True)
class DigestSubscription:
    """A user who opted in to the weekly summary (/digest on), and the chat it goes to."""

    user: UserKey
    chat_id: str


# --- the daily check-in (engine/chat/checkin.py) ----------------------------------------------


@dataclass(frozen=True)
class CheckinSubscription:
    """A user who asked to be asked daily how their day went (/checkin HH:MM [zone]): where,
    at what local time in which IANA time zone, and the last local day that was claimed (the
    question sent, or the day passed over)."""

    user: UserKey
    chat_id: str
    at: time  # the local time of day, naive: read in `timezone`
    timezone: str
    last_day: date | None = None
    created_at: datetime | None = None

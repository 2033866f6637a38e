"""The chat logic's settings: how replies are sampled, how much history, privacy, time zone.

Every key is documented, with its default, in `.env.example`.
"""

from __future__ import annotations

from datetime import time, tzinfo
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from engine.chat.prompts import ExampleSet, ReplyLayout, ToneAt
from engine.config import ConfigGroup, Lowered
from engine.types import GenerationParams

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)

# Each default is written once, on its dataclass (measured with benchmarks.quality.dialogue).
_DEFAULT = GenerationParams()
_LAYOUT = ReplyLayout()


class ChatConfig(ConfigGroup):
    max_new_tokens: int = Field(_DEFAULT.max_new_tokens, ge=1, le=2048, alias="MAX_NEW_TOKENS")
    temperature: float = Field(_DEFAULT.temperature, ge=0.0, le=2.0, alias="TEMPERATURE")
    top_p: float = Field(_DEFAULT.top_p, ge=0.0, le=1.0, alias="TOP_P")
    top_k: int = Field(_DEFAULT.top_k, ge=0, le=1000, alias="TOP_K")
    repetition_penalty: float = Field(
        _DEFAULT.repetition_penalty, ge=1.0, le=2.0, alias="REPETITION_PENALTY"
    )
    presence_penalty: float = Field(
        _DEFAULT.presence_penalty, ge=0.0, le=2.0, alias="PRESENCE_PENALTY"
    )
    frequency_penalty: float = Field(
        _DEFAULT.frequency_penalty, ge=0.0, le=2.0, alias="FREQUENCY_PENALTY"
    )
    dry_multiplier: float = Field(_DEFAULT.dry_multiplier, ge=0.0, le=10.0, alias="DRY_MULTIPLIER")
    dry_base: float = Field(_DEFAULT.dry_base, ge=1.0, le=4.0, alias="DRY_BASE")
    dry_allowed_length: int = Field(
        _DEFAULT.dry_allowed_length, ge=1, le=20, alias="DRY_ALLOWED_LENGTH"
    )
    # Where the reply prompt puts the tone and which examples it shows (engine/chat/prompts.py).
    reply_tone_at: Annotated[ToneAt, Lowered] = Field(_LAYOUT.tone_at, alias="REPLY_TONE_AT")
    reply_examples: Annotated[ExampleSet, Lowered] = Field(_LAYOUT.examples, alias="REPLY_EXAMPLES")
    # Turns fetched from the store; the runtime trims them to its token budget. The window
    # moves history_step turns at a time: the prompts in between open the same way, so a
    # reply's KV cache serves the next message (1 = it slides with every message).
    history_turns: int = Field(12, ge=0, le=200, alias="HISTORY_TURNS")
    history_step: int = Field(1, ge=1, le=200, alias="HISTORY_STEP")
    # Turns of a chat kept in the store; older ones are deleted with each new exchange.
    # 0 = what the prompt can read (HISTORY_TURNS + HISTORY_STEP - 1), so nothing is kept
    # that the bot never reads again.
    turns_kept: int = Field(0, ge=0, le=100_000, alias="TURNS_KEPT")
    # Longer messages are cut before tagging and replying.
    max_input_chars: int = Field(4000, ge=100, le=100_000, alias="MAX_INPUT_CHARS")
    # Messages of one user waiting behind the one being answered; more get "slow down" at once.
    # A burst of a few lines (or a long paste the platform split) before the first reply is
    # normal chat; at ~5 s a reply on 2 cores the 4th waiting one is answered ~20 s late.
    user_queue_max: int = Field(4, ge=0, le=1000, alias="USER_QUEUE_MAX")
    store_message_text: bool = Field(False, alias="STORE_MESSAGE_TEXT")
    # How often a running bot looks again for messages a dead process left unanswered (the
    # first look is at start-up); 0: at start-up only.
    resume_interval_s: float = Field(60.0, ge=0.0, le=86_400.0, alias="RESUME_INTERVAL_S")
    excerpt_chars: int = 200
    timezone: str = Field("UTC", alias="TIMEZONE")
    # When the weekly digest (/digest on) goes out, local time in TIMEZONE.
    digest_day: Annotated[Weekday, Lowered] = Field("sunday", alias="DIGEST_DAY")
    digest_time: str = Field("20:00", alias="DIGEST_TIME")
    seed: int | None = None  # fixed sampling seed (benchmarks)
    # Where to find help, shown in the support note after a reply to a message about self-harm
    # or after a hard stretch of days (engine/chat/safety.py); "" for the built-in neutral
    # international pointer (findahelpline.com and the local emergency number).
    support_resources: str = Field("", max_length=1000, alias="SUPPORT_RESOURCES")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone (e.g. Asia/Shanghai)") from None
        return name

    @field_validator("digest_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError("not a time of day as HH:MM (e.g. 20:00)") from None
        return value

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    @property
    def digest_at(self) -> time:
        """The digest's time of day, aware of TIMEZONE (as the platforms' schedulers take it)."""
        return time.fromisoformat(self.digest_time).replace(tzinfo=self.tz)

    @property
    def digest_weekday(self) -> int:
        """The digest's day, as datetime.weekday() counts: Monday 0 … Sunday 6."""
        return WEEKDAYS.index(self.digest_day)

    @property
    def kept_turns(self) -> int:
        """TURNS_KEPT, or the most turns the history window ever reads."""
        if self.turns_kept:
            return max(self.turns_kept, self.history_turns)
        return self.history_turns + self.history_step - 1 if self.history_turns else 0

    @property
    def layout(self) -> ReplyLayout:
        return ReplyLayout(tone_at=self.reply_tone_at, examples=self.reply_examples)

    @property
    def generation(self) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            dry_multiplier=self.dry_multiplier,
            dry_base=self.dry_base,
            dry_allowed_length=self.dry_allowed_length,
        )

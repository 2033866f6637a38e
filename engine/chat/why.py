"""/mood why: which part of the latest message moved its label.

The explanation comes from the labelling model itself, never from a second model: the
message is split into clauses (punctuation and a few contrast words, Chinese and English),
and the whole message and the message with each clause left out are labelled together, in
one batched label pass (ModelFacade.tag_many). The clause whose removal moves p_positive the
most is the part that moved the score. That needs the text, and the bot stores none unless
STORE_MESSAGE_TEXT=true: so the service keeps each user's latest message in memory only
(engine/chat/recent.py: bounded, dropped after 30 minutes), and with stored text the latest mood
event's excerpt is explained once the memory has gone. Otherwise the answer says why it
cannot explain.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from engine.chat import texts
from engine.chat.config import ChatConfig
from engine.chat.findings import ClauseEffect, Explanation
from engine.chat.recent import RecentMessages
from engine.errors import ModelBusy, ModelStopped, ModelTimeout
from engine.language import detect_language
from engine.ports import ModelFacade, MoodStore
from engine.types import Sentiment, UserKey

log = logging.getLogger(__name__)

MAX_CLAUSES = 12  # so one label pass holds at most 13 texts
WHY_LOOKBACK = timedelta(days=30)  # how far back /mood why looks for the latest stored event


class WhySource(Protocol):
    """What /mood why reads (the chat service provides it)."""

    recent: RecentMessages
    store: MoodStore
    model: ModelFacade
    config: ChatConfig

    def now(self) -> datetime: ...


# A clause ends after sentence or clause punctuation (kept with it); a new one starts before
# a contrast word: "it rained but the concert was great" is two parts.
_CLAUSE_END = re.compile(r"[。！？!?；;，,、…\n]+|\.+(?=\s|$)")
_CONTRAST = re.compile(r"(?<=\S)\s+(?=(?:but|although|though|however|yet)\b)|(?=但是|可是|不过)",
                       re.IGNORECASE)  # fmt: skip


def split_clauses(text: str) -> list[tuple[int, int]]:
    """The (start, end) spans of the clauses of `text`, in order, each with its closing
    punctuation and without surrounding blanks; a piece with no letter or digit (an emoji,
    "!!") stays with the clause before it."""
    cuts = {0, len(text)}
    cuts.update(match.end() for match in _CLAUSE_END.finditer(text))
    cuts.update(match.end() for match in _CONTRAST.finditer(text))
    spans: list[tuple[int, int]] = []
    lead: int | None = None  # where punctuation before the first clause began
    for start, end in itertools.pairwise(sorted(cuts)):
        piece = text[start:end]
        stripped = piece.strip()
        if not stripped:
            continue
        start += len(piece) - len(piece.lstrip())
        end = start + len(stripped)
        if not any(ch.isalnum() for ch in stripped):
            if spans:
                spans[-1] = (spans[-1][0], end)
            elif lead is None:
                lead = start
            continue
        spans.append((start if lead is None else lead, end))
        lead = None
    return spans


def leave_out(text: str, span: tuple[int, int]) -> str:
    """`text` without the clause at `span` (a blank joins English words back together)."""
    start, end = span
    before, after = text[:start].rstrip(), text[end:].lstrip()
    joiner = " " if before and after and detect_language(text) == "en" else ""
    return before + joiner + after


def attribute(
    text: str, spans: list[tuple[int, int]], whole: Sentiment, without: list[Sentiment]
) -> Explanation:
    """Each clause's shift: the whole message's p_positive minus the p_positive of the message
    without that clause."""
    effects = tuple(
        ClauseEffect(text[start:end], left.p_positive, whole.p_positive - left.p_positive)
        for (start, end), left in zip(spans, without, strict=True)
    )
    return Explanation(text, whole, effects, detect_language(text))


TagMany = Callable[[list[str]], Awaitable[list[Sentiment]]]


async def explain(tag_many: TagMany, text: str) -> Explanation:
    """Label the whole text and each leave-one-clause-out variant, in one batched pass."""
    spans = split_clauses(text)[:MAX_CLAUSES]
    if len(spans) < 2:
        (whole,) = await tag_many([text])
        return Explanation(text, whole, (), detect_language(text))
    whole, *without = await tag_many([text, *(leave_out(text, span) for span in spans)])
    return attribute(text, spans, whole, without)


async def why(service: WhySource, user: UserKey) -> str:
    """/mood why: explain the user's latest label, or say why it cannot be explained."""
    now = service.now()
    latest = service.recent.latest(user, now)
    text, from_excerpt = (latest.text, False) if latest is not None else (None, False)
    if text is None:
        events = await service.store.mood_events(user, now - WHY_LOOKBACK)
        if not events:
            return texts.WHY_NOTHING
        excerpt = events[-1].excerpt
        if not (service.config.store_message_text and excerpt):
            return texts.why_no_text(int(service.recent.keep.total_seconds() // 60))
        text, from_excerpt = excerpt, True
    try:
        explanation = await explain(service.model.tag_many, text)
    except (ModelBusy, ModelStopped):
        return texts.BUSY
    except ModelTimeout:
        return texts.TIMEOUT
    except Exception:
        log.exception("labelling for /mood why failed")
        return texts.MODEL_ERROR
    return texts.why_explanation(explanation, from_excerpt)

"""Reading a label from a serving engine's answer: the logprobs of the two label words at the
first answer position, turned into a Sentiment by engine.model.labelling.sentiment_from_scores
(the one place every backend goes through) with the head fitted for the model MODEL names.

Logprobs and logits give the same label: both differ from the logits by one constant per
position, and the label depends only on the difference of the two words' scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.model.label_head import LabelHead
from engine.model.labelling import sentiment_from_scores
from engine.types import Sentiment


class NoLogprobs(RuntimeError):
    """The server answered a label request without logprobs."""


@dataclass(frozen=True)
class LabelScores:
    positive: float
    negative: float
    listed: int  # how many of the two words the server listed (0, 1 or 2)

    def sentiment(self, text: str, head: LabelHead) -> Sentiment:
        # No hidden state from a server: the head's band decides neutral.
        return sentiment_from_scores(head, self.positive, self.negative, text)


def token_id_key(token: int) -> str:
    """How vLLM names a token in top_logprobs when asked for return_tokens_as_token_ids."""
    return f"token_id:{token}"


def label_scores(
    top: Mapping[str, float] | None, positive: Sequence[str], negative: Sequence[str]
) -> LabelScores:
    """The two words' logprobs from one position's top_logprobs; `positive` and `negative`
    are the keys a server may list each word under (vLLM's "token_id:N", or the word).

    A word the server did not list has a logprob no higher than the smallest one listed, so
    it is bounded by that (with both missing, the two are equal: p_positive 0.5).
    """
    if not top:
        raise NoLogprobs("the model server returned no logprobs for the label position")
    floor = min(top.values())
    found = [next((top[key] for key in keys if key in top), None) for keys in (positive, negative)]
    listed = sum(score is not None for score in found)
    pos, neg = (floor if score is None else score for score in found)
    return LabelScores(pos, neg, listed)


def first_position_top(logprobs: Any) -> dict[str, float] | None:
    """The top logprobs of the answer's first position, in either shape a server sends:
    the completions API's `top_logprobs: [{token: logprob}]` (vLLM, llama-cpp-python), or
    the chat API's `content: [{top_logprobs: [{id, token, logprob}]}]` that llama.cpp's
    llama-server uses on /v1/completions too (each entry then listed by text and by id)."""
    if logprobs is None:
        return None
    legacy = getattr(logprobs, "top_logprobs", None)
    if legacy:
        return dict(legacy[0]) if legacy[0] else None
    content = getattr(logprobs, "content", None)
    if not content:
        return None
    first = content[0] if isinstance(content[0], Mapping) else vars(content[0])
    top: dict[str, float] = {}
    for entry in first.get("top_logprobs") or []:
        item = entry if isinstance(entry, Mapping) else vars(entry)
        top[str(item["token"])] = float(item["logprob"])
        if item.get("id") is not None:
            top[token_id_key(int(item["id"]))] = float(item["logprob"])
    return top

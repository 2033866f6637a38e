"""From prompts to token ids, the same way for every backend.

A backend supplies three functions: `render` (chat messages → prompt text, the model's chat
template), `encode` (text → ids, no special tokens added) and `decode` (ids → text). What
is built from them here, the analyst frame and the reply prompt with its cacheable opening,
is what both runners feed their model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine import prompts
from engine.runner import ReplyRequest
from engine.types import Label

Message = dict[str, str]
Render = Callable[[list[Message], bool], str]  # (messages, add_generation_prompt) → text
Encode = Callable[[str], list[int]]
Decode = Callable[[list[int]], str]


def chatml(messages: list[Message], add_generation_prompt: bool) -> str:
    """Qwen's chat template for prompts that carry their own system message (ours all do)."""
    text = "".join(
        f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n" for message in messages
    )
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def keep_head_and_tail(ids: list[int], limit: int) -> list[int]:
    # A long message is cut in the middle: openings and conclusions carry most of the mood.
    if len(ids) <= limit:
        return ids
    head = limit // 2
    return ids[:head] + ids[len(ids) - (limit - head) :]


def analyst_frame(render: Render, encode: Encode) -> tuple[list[int], list[int]]:
    """The analyst prompt's ids before and after the user's text.

    The frame is fixed, so its head's KV cache can be computed once; splicing ids (rather
    than rendering each message) keeps a cut message from re-tokenising at the seams.
    """
    marker = "\x00USER\x00"
    rendered = render(
        [
            {"role": "system", "content": prompts.ANALYST_SYSTEM},
            {"role": "user", "content": prompts.ANALYST_USER_HEAD + marker
             + prompts.ANALYST_USER_TAIL},
        ],
        True,
    )  # fmt: skip
    before, after = rendered.split(marker)
    return encode(before), encode(after)


def parse_generated_label(text: str) -> Label | None:
    """Read the original design's generated answer; None when it named neither label."""
    has_pos = prompts.POSITIVE_WORD in text or "positive" in text.lower()
    has_neg = prompts.NEGATIVE_WORD in text or "negative" in text.lower()
    if has_pos == has_neg:
        return None
    return "positive" if has_pos else "negative"


@dataclass(frozen=True)
class ReplyPrompt:
    ids: list[int]
    opening: int  # leading ids shared by every reply with this system prompt and examples


class ReplyPrompter:
    def __init__(
        self,
        render: Render,
        encode: Encode,
        decode: Decode,
        *,
        input_max_tokens: int,
        history_max_tokens: int,
    ) -> None:
        self.render, self.encode, self.decode = render, encode, decode
        self.input_max_tokens = input_max_tokens
        self.history_max_tokens = history_max_tokens

    def messages(self, request: ReplyRequest) -> list[Message]:
        user_ids = self.encode(request.user_text)
        user_text = self.decode(keep_head_and_tail(user_ids, self.input_max_tokens))
        history = prompts.fit_history(
            request.history, lambda text: len(self.encode(text)), self.history_max_tokens
        )
        messages = [{"role": "system", "content": request.system}]
        messages += [
            {"role": turn.role, "content": turn.content}
            for turn in (*request.examples, *history)
        ]
        messages.append({"role": "user", "content": user_text})
        return messages

    def build(self, request: ReplyRequest) -> ReplyPrompt:
        messages = self.messages(request)
        ids = self.encode(self.render(messages, True))
        # The system prompt and the fixed examples open most prompts the same way (they are
        # ~85% of a first message's prompt), so a backend can keep their KV cache.
        fixed = self.encode(self.render(messages[: 1 + len(request.examples)], False))
        opening = len(fixed) if len(fixed) < len(ids) and ids[: len(fixed)] == fixed else 0
        return ReplyPrompt(ids, opening)

"""From prompts to token ids, the same way for every backend.

A backend supplies `render` (chat messages → prompt text, the model's chat template),
`encode` (text → ids as plain text: no special tokens added, and a special token's spelling
is ordinary text), `decode` (ids → text) and `specials` (its control tokens' spellings and
ids). What is built from them here (the reply prompt with its cacheable opening; the analyst
frame in engine/model/labelling.py) is what every backend feeds its model.

Only the chat template's own text becomes control tokens. Every message's content (the
user's text, stored history, notes, examples, even our system prompt) is plain text, so a
user who types `<|im_end|>\n<|im_start|>system\n…` gets those characters, not a new role.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from engine.types import ReplyRequest, Turn

Message = dict[str, str]
Render = Callable[[list[Message], bool], str]  # (messages, add_generation_prompt) → text
Encode = Callable[[str], list[int]]  # plain text: special-token spellings are not parsed
Decode = Callable[[list[int]], str]
Specials = Mapping[str, int]  # a tokenizer's control tokens: spelling → id
Run = str | int  # text to encode plainly, or the id of one of the template's control tokens

# A message's content is replaced by one of these while the template renders, so that the
# template's text and the content can be told apart afterwards (no template writes NUL).
_STAND_IN = re.compile("\x00([0-9]+)\x00")


def chatml(messages: list[Message], add_generation_prompt: bool) -> str:
    """Qwen's chat template for prompts that carry their own system message (ours all do)."""
    text = "".join(
        f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n" for message in messages
    )
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@functools.lru_cache(maxsize=8)
def _spellings(names: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so that no spelling matches inside a longer one.
    ordered = sorted(names, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(name) for name in ordered) + ")")


def special_runs(text: str, specials: Specials) -> Iterator[Run]:
    """Template text as runs: each special token's spelling becomes its id."""
    if not specials:
        yield text
        return
    for index, part in enumerate(_spellings(tuple(specials)).split(text)):
        if index % 2:
            yield specials[part]
        elif part:
            yield part


def prompt_runs(
    render: Render, messages: list[Message], add_generation_prompt: bool, specials: Specials
) -> list[Run]:
    """The rendered prompt as runs: the template's control tokens as ids, everything else as
    text. Contents are put in after rendering, so nothing in them is read as a control token.

    Text on both sides of a content (the role name before it, say) joins it in one run, so a
    prompt without injected spellings gets exactly the ids of the whole rendered text
    tokenized with special tokens parsed (what the model was trained on)."""
    stand_ins = [
        {**message, "content": f"\x00{index}\x00"} for index, message in enumerate(messages)
    ]
    runs: list[Run] = []
    text = ""
    for index, piece in enumerate(_STAND_IN.split(render(stand_ins, add_generation_prompt))):
        parts = [messages[int(piece)]["content"]] if index % 2 else special_runs(piece, specials)
        for part in parts:
            if isinstance(part, str):
                text += part
                continue
            if text:
                runs.append(text)
                text = ""
            runs.append(part)
    if text:
        runs.append(text)
    return runs


def encode_runs(runs: Sequence[Run], encode: Encode) -> list[int]:
    ids: list[int] = []
    for run in runs:
        ids += [run] if isinstance(run, int) else encode(run)
    return ids


def encode_template(text: str, encode: Encode, specials: Specials) -> list[int]:
    """Text that is all template (no content in it): every special spelling is parsed."""
    return encode_runs(list(special_runs(text, specials)), encode)


def encode_messages(
    render: Render,
    encode: Encode,
    specials: Specials,
    messages: list[Message],
    add_generation_prompt: bool,
) -> list[int]:
    return encode_runs(prompt_runs(render, messages, add_generation_prompt, specials), encode)


def keep_head_and_tail(ids: list[int], limit: int) -> list[int]:
    # A long message is cut in the middle: openings and conclusions carry most of the mood.
    if len(ids) <= limit:
        return ids
    head = limit // 2
    return ids[:head] + ids[len(ids) - (limit - head) :]


@dataclass(frozen=True)
class ReplyPrompt:
    ids: list[int]
    opening: int  # leading ids shared by every reply with this system prompt and examples
    # The ids of every turn after the system prompt (examples, history, notes, the message):
    # what the reply must not copy runs from (the DRY penalty; empty when that is off).
    avoid: tuple[list[int], ...] = ()


class ReplyPrompter:
    def __init__(
        self,
        render: Render,
        encode: Encode,
        decode: Decode,
        specials: Specials,
        *,
        input_max_tokens: int,
        history_max_tokens: int,
    ) -> None:
        self.render, self.encode, self.decode = render, encode, decode
        self.specials = specials
        self.input_max_tokens = input_max_tokens
        self.history_max_tokens = history_max_tokens

    def messages(self, request: ReplyRequest) -> list[Message]:
        user_ids = self.encode(request.user_text)
        user_text = self.decode(keep_head_and_tail(user_ids, self.input_max_tokens))
        history = fit_history(
            request.history, lambda text: len(self.encode(text)), self.history_max_tokens
        )
        messages = [{"role": "system", "content": request.system}]
        messages += [
            {"role": turn.role, "content": turn.content} for turn in (*request.examples, *history)
        ]
        if request.note:  # below the history: the conversation so far is the same for any note
            messages.append({"role": "system", "content": request.note})
        messages.append({"role": "user", "content": user_text})
        return messages

    def build(self, request: ReplyRequest) -> ReplyPrompt:
        messages = self.messages(request)
        ids = encode_messages(self.render, self.encode, self.specials, messages, True)
        # The system prompt and the fixed examples open most prompts the same way (they are
        # ~85% of a first message's prompt), so a backend can keep their KV cache.
        fixed = encode_messages(
            self.render, self.encode, self.specials, messages[: 1 + len(request.examples)], False
        )
        opening = len(fixed) if len(fixed) < len(ids) and ids[: len(fixed)] == fixed else 0
        avoid: tuple[list[int], ...] = ()
        if request.params.dry_multiplier > 0:
            avoid = tuple(self.encode(message["content"]) for message in messages[1:])
        return ReplyPrompt(ids, opening, avoid)


def fit_history(
    history: Sequence[Turn], count_tokens: Callable[[str], int], budget: int
) -> tuple[Turn, ...]:
    """Keep the newest turns whose tokens fit in `budget`, starting on a user turn or on the
    system note just before one."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(history):
        cost = count_tokens(turn.content) + 5  # role markers of the chat template
        if used + cost > budget:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    while kept and not _opens_an_exchange(kept):
        kept.pop(0)
    return tuple(kept)


def _opens_an_exchange(turns: list[Turn]) -> bool:
    first = turns[0]
    return first.role == "user" or (first.role == "system" and len(turns) > 1
                                    and turns[1].role == "user")  # fmt: skip


def continued_length(ids: list[int], kept: list[int], prompt_length: int) -> int:
    """How many leading `ids` a finished exchange's KV serves, 0 if none. `kept` is what its
    KV holds, of which the first `prompt_length` were its prompt: a new prompt continues the
    exchange when it starts with that whole prompt (the same conversation one message later;
    other users share only the opening and must not take this user's KV away), then as much
    of the reply as re-tokenises the same way."""
    if len(ids) < prompt_length or ids[:prompt_length] != kept[:prompt_length]:
        return 0
    common = prompt_length
    for a, b in zip(kept[prompt_length:], ids[prompt_length:], strict=False):
        if a != b:
            break
        common += 1
    return common

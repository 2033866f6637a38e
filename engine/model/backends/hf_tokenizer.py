"""A Hugging Face tokenizer as engine/model/prompt_ids.py needs it (no torch: the remote backend's
bot process uses it too, engine/model/backends/openai_api/tokens.py)."""

from __future__ import annotations

from typing import Any


def plain_ids(tokenizer: Any, text: str) -> list[int]:
    """Text → ids with a special token's spelling kept as text (split_special_tokens), so
    that a user's `<|im_start|>` cannot open a new chat role."""
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))


def special_tokens(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's special tokens, spelling → id: those split_special_tokens keeps
    text from spelling, and that only the chat template may write."""
    return {
        str(token.content): int(index)
        for index, token in tokenizer.added_tokens_decoder.items()
        if token.special
    }

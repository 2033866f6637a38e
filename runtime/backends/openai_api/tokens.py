"""The served model's tokenizer, run in the bot: the prompts are built here, as token ids,
exactly as the local backends build them (runtime/prompt_ids.py, runtime/labelling.py).

MODEL names the tokenizer (the packaged GGUF by default, whose vocabulary is Qwen2.5's). It is
read by llama.cpp when that is installed (vocabulary only: ~0.1 s, no torch, ~100 MiB), and by
transformers' tokenizer otherwise, so a thin bot box does not need the compiled llama.cpp.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ModelLoadError
from runtime.config import ModelConfig
from runtime.model_files import names_a_gguf, resolve_gguf, resolve_model
from runtime.prompt_ids import Decode, Encode

# Qwen's special tokens are all spelled <|name|>. A user's text may contain that spelling; a
# zero-width space after "<|" keeps it plain text for any tokenizer that parses special
# tokens in what it is sent (llama.cpp's server does, in every prompt).
_SPECIAL_SPELLING = re.compile(r"<\|(?=[^\s|<>]{1,64}\|>)")


def defuse_special_tokens(text: str) -> str:
    """The text with every <|name|> spelled so that no tokenizer reads a control token."""
    return _SPECIAL_SPELLING.sub("<|\u200b", text)


@dataclass(frozen=True)
class Tokens:
    name: str
    encode: Encode  # text → ids, special-token spellings parsed (the chat template's markers)
    decode: Decode  # ids → text, special tokens dropped (as ReplyPrompter cuts text)
    spell: Decode  # ids → the text that encodes back to them, special tokens written out

    def single_token(self, word: str) -> int:
        ids = self.encode(word)
        if len(ids) != 1:
            raise ModelLoadError(f"{self.name}: {word!r} is not a single token ({ids})")
        return ids[0]


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def load_tokens(config: ModelConfig) -> Tokens:
    """The tokenizer MODEL names: llama.cpp's for a GGUF when it is installed, else
    transformers'. Raises ModelLoadError when it cannot be read."""
    if names_a_gguf(config.model):
        path, name = resolve_gguf(config.model, config.cache_dir)
        if llama_cpp_installed():
            from runtime.backends.llama_cpp import GgufVocab

            vocab = GgufVocab(path)
            return Tokens(f"{name} tokenizer (llama.cpp)", vocab.encode, vocab.decode, vocab.spell)
        return _transformers_tokens(
            name, lambda auto: auto.from_pretrained(path.parent, gguf_file=path.name)
        )
    source = resolve_model(config.model, config.cache_dir)  # a folder or a hub id: no conversion
    return _transformers_tokens(
        source.description, lambda auto: auto.from_pretrained(source.location)
    )


def _transformers_tokens(name: str, load: Callable[[Any], Any]) -> Tokens:
    try:
        from transformers import AutoTokenizer

        tokenizer = load(AutoTokenizer)
    except Exception as error:
        raise ModelLoadError(f"could not read the tokenizer of {name}: {error}") from error

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=True))

    def spell(ids: list[int]) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=False))

    return Tokens(f"{name} tokenizer (transformers)", encode, decode, spell)

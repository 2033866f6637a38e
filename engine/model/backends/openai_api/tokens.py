"""The served model's tokenizer, run in the bot: the prompts are built here, as token ids,
exactly as the local backends build them (engine/model/prompt_ids.py, engine/model/labelling.py).

MODEL names the tokenizer (the packaged GGUF by default, whose vocabulary is Qwen2.5's). It is
read by llama.cpp when that is installed (vocabulary only: ~0.1 s, no torch, ~100 MiB), and by
transformers' tokenizer otherwise, so a thin bot box does not need the compiled llama.cpp
(read from the GGUF once, ~20 s, then from a folder saved in the cache: 0.4 s).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.errors import ModelLoadError
from engine.model.config import ModelConfig
from engine.model.model_files import names_a_gguf, resolve_gguf, resolve_model, saved_tokenizer
from engine.model.prompt_ids import Decode, Encode, Specials

# Qwen's special tokens are all spelled <|name|>. Text may contain that spelling; a
# zero-width space after "<|" keeps it plain text for any tokenizer that parses special
# tokens in what it is sent (llama.cpp's server does, in every prompt). Not where that space
# already is: defusing defused text changes nothing.
_SPECIAL_SPELLING = re.compile("<\\|(?=[^\\s|<>\u200b]{1,64}\\|>)")
# llama.cpp also reads this one as a control token in Qwen's GGUF ("control-looking token"),
# which a tokenizer read by transformers does not know.
_ALSO_SPECIAL = ("</s>",)


def defuse_special_tokens(text: str, specials: Iterable[str] = ()) -> str:
    """The text with every <|name|>, every other spelling in `specials` and `</s>` written
    so that no tokenizer reads a control token in it."""
    text = _SPECIAL_SPELLING.sub("<|\u200b", text)
    for spelling in (*specials, *_ALSO_SPECIAL):
        if len(spelling) > 1 and spelling in text:
            text = text.replace(spelling, f"{spelling[0]}\u200b{spelling[1:]}")
    return text


@dataclass(frozen=True)
class Tokens:
    name: str
    encode: Encode  # plain text → ids: special-token spellings are ordinary text
    decode: Decode  # ids → text, special tokens dropped (as ReplyPrompter cuts text)
    specials: Specials  # the control tokens (the chat template's markers): spelling → id

    def single_token(self, word: str) -> int:
        ids = self.encode(word)
        if len(ids) != 1:
            raise ModelLoadError(f"{self.name}: {word!r} is not a single token ({ids})")
        return ids[0]

    def special(self, spelling: str) -> int:
        if spelling not in self.specials:
            raise ModelLoadError(f"{self.name}: {spelling!r} is not one of its special tokens")
        return self.specials[spelling]

    def spell(self, ids: list[int]) -> str:
        """Ids → text for a server that tokenizes what it is sent with special tokens parsed
        (llama.cpp's): the control tokens written out, and the text between them defused, so
        that the server reads the same roles, and a user's `<|im_start|>` stays text."""
        names = {token: spelling for spelling, token in self.specials.items()}
        pieces: list[str] = []
        run: list[int] = []
        for token in [*ids, -1]:
            if token in names or token == -1:
                if run:
                    pieces.append(defuse_special_tokens(self.decode(run), self.specials))
                    run = []
                pieces.append(names.get(token, ""))
            else:
                run.append(token)
        return "".join(pieces)


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def load_tokens(config: ModelConfig) -> Tokens:
    """The tokenizer MODEL names: llama.cpp's for a GGUF when it is installed, else
    transformers'. Raises ModelLoadError when it cannot be read."""
    if names_a_gguf(config.model):
        path, name = resolve_gguf(config.model, config.cache_dir)
        if llama_cpp_installed():
            from engine.model.backends.llama_cpp import GgufVocab

            vocab = GgufVocab(path)
            return Tokens(
                f"{name} tokenizer (llama.cpp)", vocab.encode, vocab.decode, vocab.specials
            )

        def read(auto: Any) -> Any:
            from_gguf = lambda: auto.from_pretrained(path.parent, gguf_file=path.name)  # noqa: E731
            folder = saved_tokenizer(path, config.cache_dir, from_gguf)
            return from_gguf() if folder is None else auto.from_pretrained(folder)

        return _transformers_tokens(name, read)
    source = resolve_model(config.model, config.cache_dir)  # a folder or a hub id: no conversion
    return _transformers_tokens(
        source.description, lambda auto: auto.from_pretrained(source.location)
    )


def _transformers_tokens(name: str, load: Callable[[Any], Any]) -> Tokens:
    try:
        from transformers import AutoTokenizer

        from engine.model.backends.hf_tokenizer import plain_ids, special_tokens

        tokenizer = load(AutoTokenizer)
    except Exception as error:
        raise ModelLoadError(f"could not read the tokenizer of {name}: {error}") from error

    def encode(text: str) -> list[int]:
        return plain_ids(tokenizer, text)

    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=True))

    return Tokens(f"{name} tokenizer (transformers)", encode, decode, special_tokens(tokenizer))

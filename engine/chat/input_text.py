"""What of a user's text reaches the model and the database (the "What the bot answers"
table of docs/reliability.md states the same rules).

- NUL and the other control characters except newline and tab are removed: PostgreSQL cannot
  store NUL in text at all, and the others only confuse the model.
- Bidirectional overrides, embeddings and isolates (U+202A–U+202E, U+2066–U+2069) are removed:
  echoed into a reply they would flip how the platform shows the rest of it.
- Zero-width space, word joiner and BOM are removed; ZWJ and ZWNJ stay (emoji sequences and
  several scripts need them).
- A lone surrogate (U+D800–U+DFFF: a half of an emoji that a client or a JSON escape cut
  apart) becomes U+FFFD: it is no character, and neither a database driver nor the model's
  tokenizer can encode it.
- A text with nothing visible left (whitespace and format characters only) counts as empty.
"""

from __future__ import annotations

import re
import unicodedata

_REMOVED = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"  # control characters but \t and \n
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides, isolates
    "\u200b\u2060\ufeff]"  # zero-width space, word joiner, BOM
)


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """The text with the characters above removed or replaced and the ends stripped."""
    text = _SURROGATE.sub("\ufffd", text)
    return _REMOVED.sub("", text.replace("\r\n", "\n")).strip()


def has_visible(text: str) -> bool:
    """True when some character would show: not whitespace, not a format/control character."""
    return any(not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc") for ch in text)

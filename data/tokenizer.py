"""Words, punctuation and line breaks as tokens, and back to verse (docs/GENERATION.md states both).

``default`` mode: line ends to ``\\n``, curly quotes folded to straight ones,
lower case, Unicode NFC; words (letters and digits, with inner apostrophes,
such as ``o'er`` or ``that's``) and single punctuation marks are tokens, and
every line break is the token ``"\\n"`` so that generated text comes out as
verse (a blank line between stanzas is two; longer runs of blank lines are
one blank line, and line breaks at the start and end are dropped).
``whitespace`` mode reproduces the lab report: ``text.lower().split()``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

NEWLINE = "\n"
MODES = ("default", "whitespace")

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})
# Python's str pattern classes are the contract's: [^\W_] is exactly the Unicode general categories L and N
# (letters and numbers), and \s exactly the whitespace list of docs/GENERATION.md (str.isspace).
# A word: letters/digits, optionally joined by inner apostrophes; else a newline; else one non-space mark.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|\n|[^\w\s]|_")


def normalize(text: str) -> str:
    """LF line ends, straight quotes, lower case, NFC: the characters the token pattern reads."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_QUOTES).lower()
    return unicodedata.normalize("NFC", text)


def collapse_newlines(tokens: list[str]) -> list[str]:
    """At most two line breaks in a row (one blank line); none at the start or the end."""
    out: list[str] = []
    run = 0
    for token in tokens:
        if token == NEWLINE:
            run += 1
            if run <= 2 and out:
                out.append(token)
            continue
        run = 0
        out.append(token)
    while out and out[-1] == NEWLINE:
        out.pop()
    return out


def tokenize(text: str, mode: str = "default") -> list[str]:
    """Split one poem into tokens."""
    if mode == "whitespace":
        return text.lower().split()
    if mode != "default":
        raise ValueError(f"unknown tokenizer mode {mode!r}; choose one of {', '.join(MODES)}")
    return collapse_newlines(_TOKEN.findall(normalize(text)))


NO_SPACE_BEFORE = frozenset(",.;:!?)]}'") | {"'s", "n't"}
NO_SPACE_AFTER = frozenset("([{")


class Detokenizer:
    """Tokens in, text out, one token at a time: each call returns only the text that token adds.

    Nothing written is ever taken back (a space is written before a token, never
    after one), so streaming costs one step per token and the pieces joined are
    exactly ``detokenize`` of all tokens so far.
    """

    def __init__(self) -> None:
        self.last = ""  # the previous token; "" at the start

    def push(self, token: str) -> str:
        space = (self.last != "" and self.last != NEWLINE and token != NEWLINE
                 and self.last[-1] not in NO_SPACE_AFTER and token not in NO_SPACE_BEFORE)
        self.last = token
        return " " + token if space else token


def detokenize(tokens: Iterable[str]) -> str:
    """Render tokens as verse: spaces between words, none before closing punctuation or around line breaks."""
    detok = Detokenizer()
    return "".join(detok.push(token) for token in tokens)

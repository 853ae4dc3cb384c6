"""Words, punctuation and line breaks as tokens, and back to verse.

``default`` mode: lower case, curly quotes folded to straight ones, words
(with inner apostrophes, such as ``o'er`` or ``that's``) and single
punctuation marks are tokens, and every line break is the token ``"\\n"`` so
that generated text comes out as verse (a blank line between stanzas is two).
``whitespace`` mode reproduces the lab report: ``text.lower().split()``.
"""

from __future__ import annotations

import re

NEWLINE = "\n"
MODES = ("default", "whitespace")

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})
# A word: letters/digits, optionally joined by inner apostrophes; else one non-space mark; else a newline.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|\n|[^\w\s]|_")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_SPACES = re.compile(r"[^\S\n]+")


def normalize(text: str) -> str:
    """Lower case, straight quotes, LF line ends, stanza breaks as one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_QUOTES).lower()
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def tokenize(text: str, mode: str = "default") -> list[str]:
    """Split one poem into tokens."""
    if mode == "whitespace":
        return text.lower().split()
    if mode != "default":
        raise ValueError(f"unknown tokenizer mode {mode!r}; choose one of {', '.join(MODES)}")
    return _TOKEN.findall(normalize(text))


_NO_SPACE_BEFORE = set(",.;:!?)]}'") | {"'s", "n't"}
_NO_SPACE_AFTER = set("([{")


def detokenize(tokens: list[str]) -> str:
    """Render tokens as verse: spaces between words, none before closing punctuation or around line breaks."""
    out: list[str] = []
    for token in tokens:
        if token == NEWLINE:
            while out and out[-1] == " ":
                out.pop()
            out.append(NEWLINE)
            continue
        if out and out[-1] != NEWLINE and out[-1][-1] not in _NO_SPACE_AFTER and token not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(token)
    return _SPACES.sub(" ", "".join(out)).strip(" ")

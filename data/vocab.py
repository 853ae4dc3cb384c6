"""The vocabulary: id 0 is ``<unk>``; words seen at least ``min_freq`` times in training follow."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

UNK = "<unk>"


@dataclass
class Vocab:
    tokens: list[str]
    tokenizer: str = "default"
    min_freq: int = 2
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != UNK:
            raise ValueError(f"a vocabulary starts with {UNK!r}")
        self.index = {tok: i for i, tok in enumerate(self.tokens)}

    unk_id = 0

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, poems: Iterable[list[str]], min_freq: int = 2, tokenizer: str = "default") -> Vocab:
        """Most frequent first (ties alphabetical), so ids are stable for a given corpus."""
        counts = Counter(tok for poem in poems for tok in poem)
        kept = sorted((tok for tok, n in counts.items() if n >= min_freq and tok != UNK),
                      key=lambda tok: (-counts[tok], tok))
        return cls([UNK, *kept], tokenizer=tokenizer, min_freq=min_freq)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        return np.array([self.index.get(tok, self.unk_id) for tok in tokens], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> str:
        return json.dumps({"tokens": self.tokens, "tokenizer": self.tokenizer, "min_freq": self.min_freq},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        """Read what ``to_json`` wrote; anything else is a ``ValueError`` saying what is wrong."""
        values = json.loads(text)
        if not isinstance(values, dict) or not isinstance(values.get("tokens"), list):
            raise ValueError("vocab.json must be an object with a list of tokens under \"tokens\"")
        if not all(isinstance(tok, str) for tok in values["tokens"]):
            raise ValueError("vocab.json: every token must be a string")
        tokenizer, min_freq = values.get("tokenizer", "default"), values.get("min_freq", 2)
        if not isinstance(tokenizer, str) or not isinstance(min_freq, int) or isinstance(min_freq, bool):
            raise ValueError("vocab.json: tokenizer must be a string and min_freq a whole number")
        return cls(values["tokens"], tokenizer=tokenizer, min_freq=min_freq)

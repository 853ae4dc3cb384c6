"""How much a text repeats itself, and the range of the same figures in the poems it should read like.

Three figures of one token sequence (words, punctuation marks and line breaks alike, as the model writes them):

- ``repeated_4grams``: the share of the text's 4-grams (4 consecutive tokens) that repeat one earlier in the same
  text: 1 - distinct / all. "the sea sea sea sea" has the 4-grams (the sea sea sea), (sea sea sea sea): 0 of 2
  repeat; a loop of one phrase drives it towards 1;
- ``distinct_1`` and ``distinct_2`` (Li et al. 2016): distinct tokens over all tokens, distinct bigrams over all
  bigrams. A text that says new things stays near 1; a loop drives them down.

All three depend on the text's length (a longer text repeats more, even a poem), so a sample is compared with
pieces of the same length cut from the poems (``PoemRepetition``): each poem of at least that many tokens cut
from its start into consecutive pieces of that length (the rest dropped), and the range of each figure over the
pieces is its 5th to 95th percentile (``RANGE_PERCENTILES``, NumPy's linear interpolation). A set of samples is
within the poems' range when the mean of each figure over the samples lies inside it.

In ``wordrnn.core`` (NumPy only) because both the benchmark reports (``wordrnn.bench``) and the choice of the
neural cache's writing weight (``scratch.cache_choice``, a layer below them) measure text with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RANGE_PERCENTILES = (5.0, 95.0)
FIGURES = ("repeated_4grams", "distinct_1", "distinct_2")


def repeated_share(tokens: Sequence[Any], n: int) -> float:
    """The share of the ``n``-grams of ``tokens`` that repeat one earlier in it (NaN with no ``n``-gram)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else float("nan")


def distinct(tokens: Sequence[Any], n: int) -> float:
    """Distinct ``n``-grams over all ``n``-grams of ``tokens`` (NaN with none)."""
    share = repeated_share(tokens, n)
    return 1.0 - share if math.isfinite(share) else share


@dataclass(frozen=True)
class Repetition:
    """The three figures of one text (or their means over several)."""

    repeated_4grams: float
    distinct_1: float
    distinct_2: float

    def to_json(self) -> dict[str, float | None]:
        return {name: _finite(getattr(self, name)) for name in FIGURES}


def repetition(tokens: Sequence[Any]) -> Repetition:
    """The three figures of one token sequence."""
    tokens = list(tokens)
    return Repetition(repeated_share(tokens, 4), distinct(tokens, 1), distinct(tokens, 2))


def mean_repetition(texts: Sequence[Sequence[Any]]) -> Repetition:
    """Each figure's mean over ``texts`` (those too short for it left out; NaN when none is long enough)."""
    each = [repetition(t) for t in texts]
    return Repetition(*(_mean([getattr(r, name) for r in each]) for name in FIGURES))


@dataclass(frozen=True)
class RepetitionRange:
    """The poems' range of each figure for pieces of ``length`` tokens: (low, high) percentiles over ``pieces``."""

    length: int
    pieces: int
    low: Repetition
    high: Repetition

    def within(self, sample: Repetition) -> bool:
        """Whether every figure of ``sample`` lies inside the poems' range (False where the range has no piece)."""
        return all(getattr(self.low, name) <= getattr(sample, name) <= getattr(self.high, name) for name in FIGURES)

    def to_json(self) -> dict[str, Any]:
        return {"length": self.length, "pieces": self.pieces, "percentiles": list(RANGE_PERCENTILES),
                **{name: [_finite(getattr(self.low, name)), _finite(getattr(self.high, name))] for name in FIGURES}}


class PoemRepetition:
    """The training poems' tokens, cut into pieces of a sample's length to give the range a sample is held to."""

    def __init__(self, poems: Sequence[Sequence[Any]]):
        self.poems = [list(p) for p in poems]
        self._ranges: dict[int, RepetitionRange] = {}

    def pieces(self, length: int) -> list[list[Any]]:
        """Every poem cut from its start into consecutive pieces of ``length`` tokens, the rest dropped."""
        return [p[i:i + length] for p in self.poems for i in range(0, len(p) - length + 1, length)]

    def range(self, length: int) -> RepetitionRange:
        """The 5th-95th percentile of each figure over the pieces of ``length`` tokens (NaN where there is none)."""
        if length not in self._ranges:
            each = [repetition(piece) for piece in self.pieces(length)]
            bounds = []
            for q in RANGE_PERCENTILES:
                bounds.append(Repetition(*(_percentile([getattr(r, name) for r in each], q) for name in FIGURES)))
            self._ranges[length] = RepetitionRange(length, len(each), *bounds)
        return self._ranges[length]


@dataclass(frozen=True)
class RepetitionComparison:
    """Samples' mean figures beside the poems' range for pieces of the samples' length."""

    sample: Repetition
    samples: int
    poems: RepetitionRange

    @property
    def within(self) -> bool:
        return self.poems.within(self.sample)

    def describe(self) -> str:
        """E.g. ``repeated 4-grams 31% (poems 0-6%), distinct-1 0.42 (0.55-0.71), distinct-2 0.61 (0.86-0.98)
        over 20 samples of 200 tokens: outside the poems' range``."""
        low, high, s = self.poems.low, self.poems.high, self.sample
        verdict = "within the poems' range" if self.within else "outside the poems' range"
        return (f"repeated 4-grams {_pct(s.repeated_4grams)} (poems {_pct(low.repeated_4grams)}-"
                f"{_pct(high.repeated_4grams)}), distinct-1 {_num(s.distinct_1)} ({_num(low.distinct_1)}-"
                f"{_num(high.distinct_1)}), distinct-2 {_num(s.distinct_2)} ({_num(low.distinct_2)}-"
                f"{_num(high.distinct_2)}) over {self.samples} sample{'s' if self.samples != 1 else ''} of "
                f"{self.poems.length} tokens: {verdict}")

    def to_json(self) -> dict[str, Any]:
        return {"sample": self.sample.to_json(), "samples": self.samples, "poems": self.poems.to_json(),
                "within": self.within}


def compare_repetition(texts: Sequence[Sequence[Any]], poems: PoemRepetition) -> RepetitionComparison:
    """Generated texts (the prompt excluded) against pieces of the poems as long as the shortest text."""
    length = min(len(t) for t in texts)
    return RepetitionComparison(mean_repetition(texts), len(texts), poems.range(length))


def _mean(values: list[float]) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def _percentile(values: list[float], q: float) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return float(np.percentile(kept, q)) if kept else float("nan")


def _finite(x: float) -> float | None:
    """NaN is not JSON: null."""
    return x if math.isfinite(x) else None


def _pct(x: float) -> str:
    return f"{x:.0%}" if math.isfinite(x) else "—"


def _num(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "—"

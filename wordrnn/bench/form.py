"""Whether a generated text is shaped like the training poems: words per line and lines per stanza.

Novelty (``wordrnn.bench.novelty``) says whether a sample copies; form says
whether it writes verse of the poems' shape. Two distributions, each for the
sample beside the training poems' (count, mean, median, histogram):

- ``words_per_line``: the word tokens of each line. Words are the tokens with a
  letter or a digit in them (``<unk>`` included: it stands for a rare word);
  punctuation marks are not counted, so that a comma more or less does not
  change a line's length, as a reader would count it;
- ``lines_per_stanza``: the lines of each stanza. The tokenizer writes a line
  break as the token ``"\\n"`` and a blank line (a stanza break) as two in a
  row; a poem without blank lines is one stanza.

And one distance for each: the 1-D Wasserstein (earth mover's) distance
between the sample's distribution and the poems', in the quantity's own unit
("the sample's lines are off by 1.3 words": the mean amount each line's length
must move, in the best matching, to turn one histogram into the other). 0 is
the same shape.

Only complete lines and stanzas are counted in a sample: it stops at a token
limit, mid-line, so its last line (the tokens after its last line break) and
its last stanza (the lines after its last blank line) are dropped. A sample
without a line break has no line to count and reports none (NaN distance). A
training poem is whole: its last line and stanza end with it. The prompt is
counted: it begins the sample's first line.

A report's short sample is 40 or 60 tokens: a handful of lines and at most a
few short stanzas (a long stanza cannot fit in it), so the reports judge form
on several longer texts pooled (``pooled_form``; ``wordrnn.bench.written``:
2,000 tokens a row), and keep the short sample for reading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.tokenizer import NEWLINE, tokenize


def is_word(token: str) -> bool:
    """A token that a reader counts as a word: it has a letter or a digit (``<unk>`` does)."""
    return any(c.isalnum() for c in token)


def lines_and_stanzas(tokens: Sequence[str], whole: bool) -> tuple[list[int], list[int]]:
    """Words per line and lines per stanza of one token sequence.

    ``whole``: the sequence is a complete poem, so its last line and stanza count; otherwise (a sample cut
    at a token limit) only lines ended by a line break and stanzas ended by a blank line count.
    """
    words, stanza_lines = [], []
    in_line, in_stanza = 0, 0
    previous = None
    for token in tokens:
        if token != NEWLINE:
            in_line += is_word(token)
        elif previous == NEWLINE:  # the second break of a blank line: the stanza ends
            if in_stanza:
                stanza_lines.append(in_stanza)
            in_stanza = 0
        else:
            words.append(in_line)
            in_line, in_stanza = 0, in_stanza + 1
        previous = token
    if whole and previous not in (None, NEWLINE):
        words.append(in_line)
        in_stanza += 1
    if whole and in_stanza:
        stanza_lines.append(in_stanza)
    return words, stanza_lines


def sample_tokens(text: str, mode: str = "default") -> list[str]:
    """A generated text's tokens, keeping the line breaks it ends with (at most two, a blank line).

    The tokenizer drops trailing line breaks, as a poem's end needs none; a sample cut just after a line
    break has, though, completed its last line, and that line counts.
    """
    tokens = tokenize(text, mode)
    if mode == "default" and tokens:
        trailing = text.rstrip(" \t").count(NEWLINE) - text.rstrip().count(NEWLINE)
        tokens += [NEWLINE] * min(trailing, 2)
    return tokens


def wasserstein(a: Sequence[float], b: Sequence[float]) -> float:
    """The 1-D earth mover's distance between two samples of values: the area between their CDFs.

    NaN when either is empty. Same as ``scipy.stats.wasserstein_distance`` without weights.
    """
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    points = np.union1d(a, b)
    cdf_a = np.searchsorted(a, points[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, points[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(points)))


@dataclass(frozen=True)
class Distribution:
    """One quantity (words of a line, lines of a stanza) over every line or stanza of a text."""

    values: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else float("nan")

    def histogram(self) -> list[int]:
        """How many lines (or stanzas) have 0, 1, 2, ... words (or lines), up to the largest."""
        return np.bincount(np.asarray(self.values, np.int64), minlength=1).tolist() if self.values else []

    def to_json(self) -> dict[str, object]:
        return {"n": self.n, "mean": _finite(self.mean), "median": _finite(self.median),
                "histogram": self.histogram()}


@dataclass(frozen=True)
class Comparison:
    """A sample's distribution beside the training poems', and the Wasserstein distance between them."""

    sample: Distribution
    poems: Distribution

    @property
    def distance(self) -> float:  # NaN when the sample (or the corpus) has no line or stanza to count
        return wasserstein(self.sample.values, self.poems.values)

    def describe(self, what: str, counted: str, unit: str) -> str:
        """E.g. ``words per line 5.2 (median 5) over 6 lines, poems 6.1 (median 6): off by 1.3 words``."""
        poems = f"poems {_num(self.poems.mean)} (median {_num(self.poems.median)})"
        if self.sample.n == 0:
            return f"{what} — (no complete {counted}), {poems}"
        return (f"{what} {_num(self.sample.mean)} (median {_num(self.sample.median)}) over {self.sample.n} "
                f"{counted}{'s' if self.sample.n != 1 else ''}, {poems}: off by {self.distance:.1f} {unit}")

    def to_json(self) -> dict[str, object]:
        return {"sample": self.sample.to_json(), "poems": self.poems.to_json(), "distance": _finite(self.distance)}


@dataclass(frozen=True)
class Form:
    """A sample's shape beside the training poems': words per line and lines per stanza."""

    words_per_line: Comparison
    lines_per_stanza: Comparison

    def describe(self) -> str:
        return (f"{self.words_per_line.describe('words per line', 'line', 'words')}; "
                f"{self.lines_per_stanza.describe('lines per stanza', 'stanza', 'lines')}")

    def to_json(self) -> dict[str, object]:
        return {"words_per_line": self.words_per_line.to_json(), "lines_per_stanza": self.lines_per_stanza.to_json()}


class PoemForm:
    """The training poems' two distributions, counted once, to compare samples against."""

    def __init__(self, poems: Sequence[Sequence[str]]):
        words: list[int] = []
        stanzas: list[int] = []
        for poem in poems:
            w, s = lines_and_stanzas(poem, whole=True)
            words += w
            stanzas += s
        self.words_per_line = Distribution(tuple(words))
        self.lines_per_stanza = Distribution(tuple(stanzas))

    def form(self, sample: Sequence[str]) -> Form:
        """A sample's tokens (prompt included, final line breaks kept: ``sample_tokens``) against the poems."""
        return self.pooled_form([sample])

    def pooled_form(self, samples: Sequence[Sequence[str]]) -> Form:
        """The complete lines and stanzas of several samples together (each cut at its own token limit)."""
        words: list[int] = []
        stanzas: list[int] = []
        for sample in samples:
            w, s = lines_and_stanzas(sample, whole=False)
            words += w
            stanzas += s
        return Form(Comparison(Distribution(tuple(words)), self.words_per_line),
                    Comparison(Distribution(tuple(stanzas)), self.lines_per_stanza))


def form(sample: Sequence[str], training_poems: Sequence[Sequence[str]]) -> Form:
    """The form of one generated token sequence against the training poems' tokens."""
    return PoemForm(training_poems).form(sample)


def _finite(x: float) -> float | None:
    """NaN is not JSON: null."""
    return x if math.isfinite(x) else None


def _num(x: float) -> str:
    """A mean or median, short: 5, 5.5, 5.25 -> '5', '5.5', '5.2'; NaN -> '—'."""
    if not math.isfinite(x):
        return "—"
    return f"{x:.0f}" if x == round(x) else f"{x:.1f}"

"""How much of a generated text is copied from the training poems.

Two numbers, both over the generated tokens only (the prompt excluded):

- ``copied_4grams``: the share of the generated text's 4-grams (consecutive
  tokens, line breaks included) that occur somewhere in the training poems;
- ``longest_copy``: the length, in tokens, of the longest run of generated
  tokens that occurs verbatim in one training poem.

A model that memorises gives shares near 1 and long runs; a unigram sampler
gives shares near 0 and runs of one or two tokens. Runs never cross a poem
boundary of the training text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

N = 4


@dataclass(frozen=True)
class Novelty:
    copied_4grams: float  # NaN when the text has fewer than 4 tokens
    longest_copy: int
    ngrams: int  # how many 4-grams the share is over

    def describe(self) -> str:
        share = "—" if self.ngrams == 0 else f"{self.copied_4grams:.0%}"
        return (f"copied 4-grams {share} of {self.ngrams}; longest verbatim run {self.longest_copy} "
                f"token{'s' if self.longest_copy != 1 else ''}")


class TrainingText:
    """The training poems' tokens, indexed for the two measures."""

    def __init__(self, poems: Sequence[Sequence[str]], n: int = N):
        self.n = n
        self.poems = [list(p) for p in poems]
        self.ngrams = {tuple(p[i:i + n]) for p in self.poems for i in range(len(p) - n + 1)}
        self.positions: dict[str, list[tuple[int, int]]] = defaultdict(list)  # token -> (poem, offset)
        for k, poem in enumerate(self.poems):
            for i, tok in enumerate(poem):
                self.positions[tok].append((k, i))

    def longest_copy(self, generated: Sequence[str]) -> int:
        """Longest run of ``generated`` found verbatim inside one training poem."""
        generated = list(generated)
        best = 0
        for start, tok in enumerate(generated):
            if len(generated) - start <= best:
                break
            for k, i in self.positions.get(tok, ()):
                poem, length = self.poems[k], 1
                while (start + length < len(generated) and i + length < len(poem)
                       and poem[i + length] == generated[start + length]):
                    length += 1
                best = max(best, length)
        return best

    def novelty(self, generated: Sequence[str]) -> Novelty:
        grams = [tuple(generated[i:i + self.n]) for i in range(len(generated) - self.n + 1)]
        share = sum(g in self.ngrams for g in grams) / len(grams) if grams else float("nan")
        return Novelty(share, self.longest_copy(generated), len(grams))


def novelty(generated: Sequence[str], training_poems: Sequence[Sequence[str]]) -> Novelty:
    """Both measures for one generated token sequence against the training poems' tokens."""
    return TrainingText(training_poems).novelty(generated)

"""The sampler of the generation contract (docs/GENERATION.md), and its seeded random generator.

One row of logits and one random generator in, one token id out, by the same
steps in every runtime and every language: the Python generators (NumPy,
PyTorch, JAX and onnxruntime alike) use this module, and ``web/wordrnn.mjs``
follows the same steps. Every sum is taken in float64 from left to right in
token-id order (``np.cumsum``, never the pairwise ``np.sum``), so that two
implementations given the same float32 logits add the same numbers in the same
order; the only freedom left is the last bit of ``exp``, far below the 1e-6
that separates a draw from a cumulative boundary in all but rare cases
(docs/GENERATION.md, section 8).

The random generator is SplitMix64 (Steele, Lea and Flood, 2014): 64-bit
integer arithmetic that any language writes in a few lines. A draw is the top
53 bits of one output divided by 2**53, a float64 in [0, 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wordrnn.core.cache import CacheSettings, NeuralCache
from wordrnn.core.errors import UsageError

LogitsFn = Callable[[np.ndarray], np.ndarray]  # int64 [1, T] -> float [1, V]
Feed = Callable[[list[int]], np.ndarray]  # the token ids the model has not read yet -> logits [V] after the last


@dataclass(frozen=True)
class Stateful:
    """A poem model for generation: ``step(x [1, T], carry) -> (logits [1, T, V], carry)``.

    ``carry`` is the model's state in whatever form the runtime keeps it (None: the zero state). The
    prompt is read once; after that each step reads one token, so a token costs the same however long
    the text already is.

    With a neural ``cache`` (docs/GENERATION.md, section 4c: the setting a file writes with), ``hidden(carry)``
    is the model's h [1, H] in the carry; the text is then read one token at a time, prompt included, so that
    the cache sees the state after every token, and the sampler reads the mixed log-probabilities in place of
    the logits.
    """

    step: Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
    hidden: Callable[[Any], np.ndarray] | None = None
    cache: CacheSettings | None = None


Source = LogitsFn | Stateful  # a window model's logits function, or a poem model's stepper


def feed_of(source: Source, seq_len: int) -> Feed:
    """A fresh ``Feed`` (zero state, empty context) for ``source``.

    A window model sees the last ``seq_len`` tokens of the text each time; a poem model carries its state.
    """
    ids: list[int] = []
    carry: Any = None

    def window(new: list[int]) -> np.ndarray:
        ids.extend(new)
        return np.asarray(source(np.asarray([ids[-seq_len:]], dtype=np.int64)))[0]

    def stateful(new: list[int]) -> np.ndarray:
        nonlocal carry
        logits, carry = source.step(np.asarray([new], dtype=np.int64), carry)
        return np.asarray(logits)[0, -1]

    if isinstance(source, Stateful) and source.cache is not None:
        return cached_feed(source)
    return stateful if isinstance(source, Stateful) else window


def cached_feed(source: Stateful) -> Feed:
    """A poem model's feed with its neural cache: one token a step (the graph gives only the last state), the
    cache told each token and the state after it, and the row the mixture's float64 log-probabilities."""
    if source.hidden is None:
        raise ValueError("a neural cache needs the model's hidden state: give Stateful a hidden function")
    cache = NeuralCache(source.cache)
    carry: Any = None

    def feed(new: list[int]) -> np.ndarray:
        nonlocal carry
        for token in new:
            logits, carry = source.step(np.asarray([[token]], dtype=np.int64), carry)
            cache.read(token, source.hidden(carry))
        return cache.mix(np.asarray(logits)[0, -1])

    return feed


STRATEGIES = ("sample", "greedy")
UNK_ID = 0  # the contract's <unk>: id 0 of every vocabulary
SEED_LIMIT = 2**64  # seeds are unsigned 64-bit integers
# The lowest temperature (docs/GENERATION.md, section 4): at 0.01 a logit ahead by 0.1 is already e^10 times as
# likely, and far below it the logits divided by T overflow float64 (1e-320: every token infinite, the draw NaN).
# Every runtime refuses a lower one in the same words and points to greedy decoding, as Hugging Face's
# generate refuses a temperature of 0.
TEMPERATURE_MIN = 0.01

_MASK64 = 2**64 - 1
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15


class SplitMix64:
    """The contract's seeded generator: ``state += gamma``, then a 64-bit mix of the state."""

    def __init__(self, seed: int):
        if not 0 <= seed < SEED_LIMIT:
            raise UsageError(f"a seed is a whole number from 0 to 2**64 - 1, got {seed}")
        self.state = seed

    def next_u64(self) -> int:
        self.state = (self.state + _GOLDEN_GAMMA) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        """A float64 in [0, 1): the top 53 bits of the next output, times 2**-53 (exact)."""
        return (self.next_u64() >> 11) * 2.0**-53


@dataclass
class SamplerSettings:
    strategy: str = "sample"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    allow_unk: bool = False
    no_repeat_ngram: int = 0  # N > 0: no N-gram twice in one text (prompt included)
    repetition_penalty: float = 1.0  # R != 1: Keskar et al.'s penalty on every token already in the text

    def validate(self) -> SamplerSettings:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown --strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not (np.isfinite(self.temperature) and self.temperature >= TEMPERATURE_MIN):
            raise UsageError(f"--temperature must be a finite number of at least {TEMPERATURE_MIN:g} (below it "
                             f"sampling is greedy in all but name): for the most likely token use --strategy "
                             f"greedy; got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"--top-k must be 0 (off) or a positive number, got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise UsageError(f"--top-p must lie in (0, 1], got {self.top_p}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise UsageError(f"--seed must be a whole number from 0 to 2**64 - 1, got {self.seed}")
        if self.no_repeat_ngram < 0:
            raise UsageError(f"--no-repeat-ngram must be 0 (off) or a positive number, got {self.no_repeat_ngram}")
        if not (np.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise UsageError(f"--repetition-penalty must be a positive number (1: off), got {self.repetition_penalty}")
        return self


def masked_logits(logits: np.ndarray, settings: SamplerSettings) -> np.ndarray:
    """Step 1: float64 logits, with ``<unk>`` set to -inf unless it is allowed (or the only token)."""
    z = np.array(logits, dtype=np.float64)
    if not settings.allow_unk and z.shape[0] > 1:
        z[UNK_ID] = -np.inf
    return z


def apply_repetition_controls(z: np.ndarray, history: Sequence[int], settings: SamplerSettings) -> np.ndarray:
    """Steps 1a and 1b (docs/GENERATION.md, section 5a), as Hugging Face's ``generate`` applies them, on the
    float64 logits ``z`` given the ids of the text so far (prompt included); returns new logits.

    - Repetition penalty R (Keskar et al. 2019): for every distinct id in ``history``, a positive logit is
      divided by R and a negative one multiplied by R.
    - No repeated N-gram: every id that would complete an N-gram already in ``history`` is set to -inf
      (unless that would leave no token at all: then this step changes nothing).
    """
    z = np.array(z, dtype=np.float64)
    if settings.repetition_penalty != 1.0 and len(history):
        seen = np.unique(np.asarray(history, dtype=np.int64))
        r = settings.repetition_penalty
        z[seen] = np.where(z[seen] < 0, z[seen] * r, z[seen] / r)
    banned = banned_by_ngrams(history, settings.no_repeat_ngram)
    if banned:
        cut = z.copy()
        cut[sorted(banned)] = -np.inf
        if np.isfinite(cut).any():
            z = cut
    return z


def banned_by_ngrams(history: Sequence[int], n: int) -> set[int]:
    """The ids that would complete an ``n``-gram already in ``history`` (none when ``n`` is 0)."""
    if n <= 0 or len(history) < n - 1:
        return set()
    ids = list(history)
    prefix = ids[len(ids) - n + 1:] if n > 1 else []
    return {ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i:i + n - 1] == prefix}


def probabilities(z: np.ndarray, settings: SamplerSettings) -> np.ndarray:
    """Steps 2 to 5: temperature, the top-k cut, softmax, the top-p cut and renormalization."""
    z = z / settings.temperature
    if 0 < settings.top_k < z.shape[0]:
        kth = -np.sort(-z, kind="stable")[settings.top_k - 1]
        z[z < kth] = -np.inf  # ties with the k-th value are all kept
    w = np.exp(z - z.max())
    p = w / np.cumsum(w)[-1]
    if settings.top_p < 1.0:
        order = np.argsort(-p, kind="stable")  # most likely first; equal probabilities by lower id
        cumulative = np.cumsum(p[order])
        kept = order[: int(np.searchsorted(cumulative, settings.top_p, side="left")) + 1]
        cut = np.zeros_like(p)
        cut[kept] = p[kept]
        p = cut / np.cumsum(cut)[-1]
    return p


def pick(p: np.ndarray, u: float) -> int:
    """Step 6: the first token whose cumulative probability exceeds ``u`` times the total."""
    cumulative = np.cumsum(p)
    i = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
    return i if i < p.shape[0] else int(np.flatnonzero(p)[-1])


def next_token(logits: np.ndarray, settings: SamplerSettings, rng: SplitMix64, history: Sequence[int] = ()) -> int:
    """Pick the next token id from one row of logits, given the ids of the text so far (``history``, which
    only the repetition controls read); greedy takes no draw from ``rng``."""
    z = apply_repetition_controls(masked_logits(logits, settings), history, settings)
    if settings.strategy == "greedy":
        return int(np.argmax(z))  # ties: the lowest id
    return pick(probabilities(z, settings), rng.random())


def iter_generate(source: Source, prompt_ids: list[int], n_tokens: int, seq_len: int,
                  settings: SamplerSettings) -> Iterator[int]:
    """Yield ``n_tokens`` new token ids: each conditioned on the last ``seq_len`` tokens (a window model) or on
    everything since the prompt began (a ``Stateful`` poem model)."""
    rng = SplitMix64(settings.seed)
    feed = feed_of(source, seq_len)
    history = list(prompt_ids)  # the repetition controls read the whole text, prompt included
    logits = feed(list(prompt_ids))
    for i in range(n_tokens):
        token = next_token(np.asarray(logits), settings, rng, history)
        history.append(token)
        yield token
        if i + 1 < n_tokens:
            logits = feed([token])


def generate(source: Source, prompt_ids: list[int], n_tokens: int, seq_len: int,
             settings: SamplerSettings) -> list[int]:
    return list(iter_generate(source, prompt_ids, n_tokens, seq_len, settings))

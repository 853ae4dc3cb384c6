"""Kneser-Ney with a cache of the poem so far: the n-gram side of the neural cache.

Kuhn & De Mori (1990) mixed an n-gram model with a *cache*: the unigram
distribution of the words of the text read so far, because a word that has
appeared in a text is far more likely than its corpus frequency says to appear
again (a name, a rhyme word, a refrain). Here the cache decays exponentially, so
recent words weigh more (Clarkson & Robinson 1997's form of it): at position t
of a poem,

    P_cache(w) = sum_{i < t, x_i = w} d^(t-1-i)  /  sum_{i < t} d^(t-1-i),      d = 2^(-1 / half_life)

    P(w | x_<t) = (1 - lam) P_KN(w | last order-1 tokens) + lam P_cache(w)

The cache reads every earlier token of the poem (its first ``seq_len`` tokens
included, as the neural cache does) and never the token it predicts nor any
after it; ``<unk>`` is cached like any id, as every row scores it. A half-life of
``inf`` is no decay: the plain cache of the whole poem so far. With nothing read
yet the cache is empty and the model is Kneser-Ney alone.

The Kneser-Ney order, the half-life and ``lam`` are chosen together, on the
inner validation poems only (``choose_cache``): the order from 1 to 5, the
half-life from ``HALF_LIVES``, ``lam`` from the mixture's grid
(``wordrnn.bench.mixture.WEIGHT_GRID``, 0 to 1 by 0.025). ``lam`` 0 is on the
grid, so the cache never makes the inner validation loss worse than Kneser-Ney's
at the same order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wordrnn.bench.kneser_ney import KneserNey
from wordrnn.bench.mixture import choose_weight, mix, mix_log_prob

# in tokens; a poem of poems-100 has about 330, a sonnet 150
HALF_LIVES = (5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, math.inf)


def decay_of(half_life: float) -> float:
    """The per-token decay ``d`` whose weight halves every ``half_life`` tokens (1.0 for ``inf``: no decay)."""
    if not half_life > 0:
        raise ValueError(f"a cache half-life is positive, got {half_life}")
    return 1.0 if math.isinf(half_life) else 2.0 ** (-1.0 / half_life)


def poem_cache_probs(ids: Sequence[int], decay: float) -> np.ndarray:
    """P_cache(ids[t] | ids[:t]) for every position t of one poem (0 at t = 0, where the cache is empty).

    One pass: per word, the decayed sum over its occurrences so far, kept at its last occurrence and decayed on
    to t when it is read again."""
    last: dict[int, tuple[int, float]] = {}  # word -> (its last position p, sum over its i <= p of d^(p-i))
    total = 0.0  # sum over i < t of d^(t-1-i)
    probs = np.zeros(len(ids))
    for t, w in enumerate(ids):
        seen = last.get(w)
        num = seen[1] * decay ** (t - 1 - seen[0]) if seen else 0.0
        if total:
            probs[t] = num / total
        last[w] = (t, num * decay + 1.0)
        total = total * decay + 1.0
    return probs


def cache_log_prob(poems: Sequence[np.ndarray], seq_len: int, decay: float) -> np.ndarray:
    """log P_cache of every target of the windows of ``poems`` (``data.dataset.make_windows``' order: each poem's
    tokens from position ``seq_len`` on); ``-inf`` where the target is not in the cache."""
    if seq_len < 1:
        raise ValueError(f"a cache needs a token before each target: seq_len must be at least 1, got {seq_len}")
    parts = [poem_cache_probs(np.asarray(p).tolist(), decay)[seq_len:] for p in poems if len(p) > seq_len]
    with np.errstate(divide="ignore"):
        return np.log(np.concatenate(parts)) if parts else np.zeros(0)


def cache_distribution(history: Sequence[int], vocab_size: int, decay: float) -> np.ndarray:
    """P_cache(w) for every id w after reading ``history`` (non-empty), float64 [V]."""
    h = np.asarray(history, dtype=np.int64)
    q = np.bincount(h, weights=decay ** np.arange(len(h) - 1, -1, -1, dtype=np.float64), minlength=vocab_size)
    return q / q.sum()


class CachedKneserNey:
    """Kneser-Ney mixed with a decaying unigram cache of the text read so far; ``weight`` 0 is Kneser-Ney alone."""

    def __init__(self, kn: KneserNey, half_life: float = math.inf, weight: float = 0.0):
        self.kn, self.half_life, self.weight = kn, half_life, weight
        self.decay = decay_of(half_life)

    def target_log_prob(self, x: np.ndarray, y: np.ndarray, poems: Sequence[np.ndarray], seq_len: int
                        ) -> np.ndarray:
        """log P(y) for the windows ``x``, ``y`` of ``poems`` [N]: Kneser-Ney reads the window, the cache the poem."""
        kn = self.kn.log_prob(x, y)
        if self.weight == 0.0:
            return kn
        cached = cache_log_prob(poems, seq_len, self.decay)
        assert len(cached) == len(kn), "the cache scores the windows' targets"
        return mix_log_prob(cached, kn, self.weight)

    def distribution(self, history: Sequence[int]) -> np.ndarray:
        """P(w | history) for every id w, float64 [V]; ``history`` is every token read so far."""
        p = self.kn.distribution(history)  # it reads the last order-1 tokens
        if self.weight == 0.0 or len(history) == 0:
            return p
        return mix(cache_distribution(history, self.kn.vocab_size, self.decay), p, self.weight)

    def log_distributions(self, histories: np.ndarray) -> np.ndarray:
        """Log P(w | history) for every id, float64 [N, V], each row of ``histories`` the whole text so far."""
        return np.log(np.stack([self.distribution(h) for h in np.asarray(histories).tolist()]))

    def describe(self) -> str:
        if self.weight == 0.0:
            return f"order {self.kn.order}, no cache"
        return f"order {self.kn.order}, half-life {self.half_life:g} tokens, weight {self.weight:g}"


@dataclass(frozen=True)
class CacheChoice:
    """The Kneser-Ney order, the cache's half-life and weight, chosen together on inner validation."""

    order: int
    half_life: float
    weight: float
    inner_loss: float  # mean negative log-likelihood of the inner validation targets

    def to_json(self) -> dict[str, Any]:
        return {"order": self.order, "half_life": None if math.isinf(self.half_life) else self.half_life,
                "weight": self.weight, "inner_ppl": math.exp(self.inner_loss)}


def choose_cache(kn_val: Mapping[int, np.ndarray], val_poems: Sequence[np.ndarray], seq_len: int,
                 half_lives: Sequence[float] = HALF_LIVES) -> CacheChoice:
    """The (order, half-life, weight) with the lowest loss on the validation targets.

    ``kn_val``: per Kneser-Ney order, its log-probabilities of the targets of ``val_poems``' windows. Ties go to the
    first in (order, half-life) order, and within one to the lower weight (``choose_weight``)."""
    cached = {h: cache_log_prob(val_poems, seq_len, decay_of(h)) for h in half_lives}
    best: CacheChoice | None = None
    for order, kn in kn_val.items():
        for half_life, q in cached.items():
            w = choose_weight(q, kn)
            loss = -float(mix_log_prob(q, kn, w).mean())
            if best is None or loss < best.inner_loss:
                best = CacheChoice(order, half_life if w else math.inf, w, loss)
    if best is None:
        raise ValueError("no Kneser-Ney order to choose from")
    return best

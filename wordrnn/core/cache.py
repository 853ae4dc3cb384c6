"""A neural cache (Grave, Joulin and Usunier 2017): the poem's own recent words, recalled by hidden state.

Verse repeats itself (refrains, rhymes, a name), and the model's weights learn only what repeats across the
training poems. The cache remembers, for the last ``size`` positions i of the current poem, the pair (h_i, the
token that followed it); at position t, with hidden state h_t (the state after reading x_t; the LSTM's h, not
its c), it proposes

    p_cache(w) = sum_i 1[x_{i+1} = w] exp(theta h_t.h_i) / sum_i exp(theta h_t.h_i)

and the model's distribution becomes ``p = (1 - lam) p_model + lam p_cache`` (where no earlier position exists,
``p = p_model``). ``theta`` sets how flat the recall is (0: every remembered word alike), ``lam`` how much the
cache is trusted.

Two users, one piece of arithmetic:

- evaluation (``cache_target_log_q``, ``mix_targets``): a whole poem at once, matrices [T, T];
- generation (``NeuralCache``): one position at a time, by the steps of docs/GENERATION.md (section 4c) that
  ``web/wordrnn.mjs`` repeats in JavaScript, every sum sequential in a stated order so that two runtimes add
  the same numbers.

Both mix in log space (``mix_log_probs``): a target the model finds unlikely keeps a finite log-probability, and
a token the cache does not hold gets exactly ``log(1 - lam) + log p_model``. NumPy only.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from wordrnn.core.errors import UsageError


@dataclass(frozen=True)
class CacheSettings:
    """The cache's three parameters: how many past positions, how flat the recall, how much it weighs."""

    size: int
    theta: float
    lam: float  # ``lambda`` in the file's metadata and the papers

    def validate(self, where: str = "the cache") -> CacheSettings:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise UsageError(f"{where}: the cache size is a whole number of positions, at least 1, got {self.size}")
        if not (isinstance(self.theta, (int, float)) and math.isfinite(self.theta) and self.theta >= 0):
            raise UsageError(f"{where}: the cache's theta (flatness) is a finite number >= 0, got {self.theta}")
        if not (isinstance(self.lam, (int, float)) and 0.0 < self.lam < 1.0):
            raise UsageError(f"{where}: the cache's lambda (weight) lies strictly between 0 and 1, got {self.lam}")
        return self

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "theta": self.theta, "lambda": self.lam}

    def reweighted(self, lam: float) -> CacheSettings | None:
        """The same size and flatness at weight ``lam`` (a cache for writing); None for 0, no cache."""
        return replace(self, lam=lam) if lam else None

    @classmethod
    def from_json(cls, value: Any, where: str, key: str = "wordrnn.cache") -> CacheSettings:
        """The settings from the metadata's JSON object under ``key``; ``UsageError`` naming ``where`` for anything
        else."""
        if not isinstance(value, dict) or sorted(value) != ["lambda", "size", "theta"]:
            shown = json.dumps(value, separators=(",", ":"))  # as JavaScript's JSON.stringify writes it
            raise UsageError(f"{where}: the metadata's {key} is {shown}, not an object of size, theta and "
                             "lambda; export it again")
        return cls(value["size"], value["theta"], value["lambda"]).validate(where)


@dataclass(frozen=True)
class CacheSetup:
    """A poem model's neural cache as a file holds it (docs/GENERATION.md, version 4): the setting its perplexity
    is scored with, and the one generation applies, chosen apart because a cache chosen to lower perplexity feeds
    the model's own words back to it when it writes (``scratch.cache_choice.choose_writing``).

    ``writing`` None: write with the model's own probabilities. ``version`` 3: a file of version 3, which names one
    setting for both (``writing`` is then ``scoring``)."""

    scoring: CacheSettings
    writing: CacheSettings | None
    version: int = 4

    @classmethod
    def single(cls, settings: CacheSettings) -> CacheSetup:
        """A version-3 file's one setting, for scoring and writing alike."""
        return cls(settings, settings, 3)


def logaddexp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(exp(a) + exp(b)) as the contract writes it: ``max + log1p(exp(min - max))``; -inf with -inf is -inf.

    Where ``b`` is -inf the result is ``a`` exactly (log1p(0) = 0), so a token the cache lacks keeps its value.
    """
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    with np.errstate(invalid="ignore"):  # -inf - -inf: both -inf, handled below
        out = hi + np.log1p(np.exp(lo - hi))
    return np.where(np.isneginf(hi), -np.inf, out)


def mix_log_probs(log_probs: np.ndarray, log_q: np.ndarray, lam: float) -> np.ndarray:
    """log((1 - lam) p_model + lam p_cache) from both log-probabilities (the cache's -inf where it lacks a token)."""
    model = math.log1p(-lam) + np.asarray(log_probs, np.float64)
    return logaddexp(model, math.log(lam) + np.asarray(log_q, np.float64))


def row_log_softmax(logits: np.ndarray) -> np.ndarray:
    """The model's float64 log-probabilities of one row, by the contract: ``(l - max) - log S`` with S the
    sequential sum of ``exp(l - max)`` in id order."""
    z = np.asarray(logits, np.float64)
    z = z - z.max()
    return z - math.log(float(np.cumsum(np.exp(z))[-1]))


# ------------------------------------------------------------------ a whole poem (evaluation)


def cache_weights(hidden: np.ndarray, size: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """The recall weights of a poem read whole: W [T, T] with ``W[t, i]`` the softmax over the window
    ``t - size <= i < t`` of ``theta h_t.h_i`` (0 outside it), and ``has`` [T], whether position t has any."""
    h = np.asarray(hidden, np.float64)
    T = h.shape[0]
    t, i = np.arange(T)[:, None], np.arange(T)[None, :]
    inside = (i < t) & (i >= t - size)
    scores = np.where(inside, theta * (h @ h.T), -np.inf)
    has = inside.any(axis=1)
    top = np.where(has, scores.max(axis=1, initial=-np.inf), 0.0)[:, None]
    w = np.where(inside, np.exp(scores - top), 0.0)
    total = w.sum(axis=1, keepdims=True)
    return w / np.where(total > 0, total, 1.0), has


def cache_target_log_q(hidden: np.ndarray, tokens: np.ndarray, size: int, theta: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each target of a poem (the token after positions 0 .. T-2): log p_cache(target), and whether the
    position has an earlier one to recall. Only the targets, so that choosing the parameters on a grid is cheap."""
    tokens = np.asarray(tokens)
    w, has = cache_weights(hidden, size, theta)
    same = tokens[1:, None] == tokens[None, 1:]  # [t, i]: the target after t is the token after i
    q = (w[:-1, :-1] * same).sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.log(q), has[:-1]


def mix_targets(log_p: np.ndarray, log_q: np.ndarray, has: np.ndarray, lam: float) -> np.ndarray:
    """The mixed log-probability of each target from the model's and the cache's (the model's where ``has`` is
    False, or where ``lam`` is 0: no cache)."""
    if lam == 0.0:
        return np.asarray(log_p, np.float64)
    return np.where(has, mix_log_probs(log_p, log_q, lam), log_p)


# ------------------------------------------------------------------ one position at a time (generation)


class NeuralCache:
    """The cache of one text being generated, by the steps of docs/GENERATION.md (section 4c).

    ``read(token, h)`` after the model reads each token (the prompt's too, one at a time), then ``mix(logits)``
    for the row the sampler sees. Every sum runs sequentially in a stated order (``np.cumsum``, never ``np.sum``),
    as the JavaScript client adds them.
    """

    def __init__(self, settings: CacheSettings):
        self.settings = settings
        self.keys: deque[np.ndarray] = deque(maxlen=settings.size)  # h_i, oldest first
        self.values: deque[int] = deque(maxlen=settings.size)  # the token that followed position i
        self.current: np.ndarray | None = None  # h_t, the query; it joins the keys once its next token is read

    def read(self, token: int, hidden: np.ndarray) -> None:
        """The model read ``token`` and is now in state ``hidden`` (its h, [H] or [1, H])."""
        if self.current is not None:
            self.keys.append(self.current)
            self.values.append(int(token))
        self.current = np.asarray(hidden, np.float64).reshape(-1)

    def log_q(self, vocab_size: int) -> np.ndarray | None:
        """log p_cache [V] at the current position (-inf for tokens it lacks); None when nothing is remembered."""
        if not self.keys or self.current is None:
            return None
        keys = np.stack(self.keys)
        scores = self.settings.theta * np.cumsum(keys * self.current, axis=1)[:, -1]  # dot: k = 0 .. H-1 in order
        e = np.exp(scores - scores.max())
        total = float(np.cumsum(e)[-1])  # oldest first
        c = np.zeros(vocab_size)
        np.add.at(c, np.fromiter(self.values, np.int64, len(self.values)), e)  # unbuffered: oldest first, one at a time
        with np.errstate(divide="ignore"):
            return np.log(c / total)

    def mix(self, logits: np.ndarray) -> np.ndarray:
        """The float64 row the sampler reads in place of the logits: log p_model mixed with the cache."""
        lp = row_log_softmax(logits)
        log_q = self.log_q(lp.shape[0])
        return lp if log_q is None else mix_log_probs(lp, log_q, self.settings.lam)

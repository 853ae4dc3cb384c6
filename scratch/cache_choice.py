"""The neural cache's three parameters, chosen on a grid by held-out poems the model was not trained on: the
inner validation poems of a cross-validation fold (``wordrnn.bench.quality --cache``, as the Kneser-Ney
mixture's weight is chosen there), or a run's own validation poems (``--cache-auto`` of ``python -m export.onnx``,
which writes the choice into the file, and of ``python -m scratch.generate``, which applies it: the same choice).

The hidden states come from the trained model's canonical weights through the NumPy reference
(``scratch.sequence.forward``, whose cache holds every hidden state), so that any backend's run is read the
same way and no model needs a second output (that forward is why this lives in ``scratch``, below both
commands). The model's own log-probabilities of the targets are given by the caller (the ones its row is scored
with), so that the cache row differs from the model's row by the cache alone: with ``lam`` 0 the two are the same
numbers. Only the window context's targets are scored (every token with at
least ``seq_len`` tokens before it in its poem), but the cache recalls every earlier position of the poem.

A cache chosen to lower perplexity feeds the model's own words back to it when it writes ("the sea sea sea
sea"), so the weight generation applies is chosen apart (``choose_writing``), by this rule: the largest weight of
the grid, up to the scoring one (same size and theta), whose samples repeat themselves within the training poems'
range (``wordrnn.core.repetition``: the mean repeated-4-gram share, distinct-1 and distinct-2 of the samples each
inside the 5th-95th percentile of pieces of the poems of the samples' length). The samples: one per validation
poem (at most ``WRITE_SAMPLES``), prompted by its first token, ``WRITE_TOKENS`` tokens at the README's settings
(temperature 0.8, top-p 0.9), seed i for the i-th. The grid is searched by bisection (repetition grows with the
weight), so a choice costs about five sets of samples; where even the smallest weight above 0 repeats too much,
the file writes without the cache.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TextIO

import numpy as np

from scratch.sequence import forward
from wordrnn.core.cache import CacheSettings, CacheSetup, cache_target_log_q, mix_targets
from wordrnn.core.config import Config
from wordrnn.core.metrics import average_probabilities
from wordrnn.core.params import Params
from wordrnn.core.repetition import PoemRepetition, RepetitionComparison, compare_repetition
from wordrnn.core.sampling import SamplerSettings, Source, generate
from wordrnn.run.folder import Run

# Poems of the suite run from about 100 to 1,000 tokens; hidden states of a 128-wide LSTM have dot products of
# a few tens, so theta 1 already recalls one position alone. The weight grid stops at 0.5: a cache trusted more
# than the model has never paid on verse, and 0 (no cache) is on the grid, so the cache cannot make the inner
# validation loss worse.
SIZES = (10, 25, 50, 100, 200, 500)
THETAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
LAMBDAS = tuple(float(x) for x in np.round(np.linspace(0.0, 0.5, 21), 3))
# The writing weight's samples: the README's sampling settings, 200 tokens (the measure), one per
# validation poem up to 20.
WRITE_SETTINGS = SamplerSettings(temperature=0.8, top_p=0.9)
WRITE_TOKENS = 200
WRITE_SAMPLES = 20


@dataclass(frozen=True)
class PoemStates:
    """One poem read whole from a zero state: the hidden state after each token [T, H], its tokens [T], and
    which of its targets (the tokens after positions 0 .. T-2) are scored."""

    hidden: np.ndarray
    tokens: np.ndarray
    scored: np.ndarray

    @classmethod
    def of(cls, hidden: np.ndarray, tokens: np.ndarray, min_context: int) -> PoemStates:
        """A poem's states, scoring every target with at least ``min_context`` tokens before it."""
        return cls(hidden, tokens, np.arange(1, len(tokens)) >= min_context)


@dataclass(frozen=True)
class CacheChoice:
    size: int
    theta: float
    lam: float
    inner_loss: float  # the mean negative log-likelihood on the inner validation targets it was chosen by

    def to_json(self) -> dict[str, float]:
        return {"size": self.size, "theta": self.theta, "lambda": self.lam, "inner_loss": self.inner_loss}


def poem_states(members: list[Params], cell: str, poems: list[np.ndarray], min_context: int) -> list[PoemStates]:
    """Each poem of more than one token read by the NumPy reference, in order (as the poem context scores them).
    An ensemble's hidden state is its members' side by side, as its exported ``hn`` is."""
    out = []
    for ids in poems:
        ids = np.asarray(ids, np.int64)
        if len(ids) < 2:
            continue
        hidden = np.concatenate([forward(params, ids[None], cell)[2]["top"][0] for params in members], axis=-1)
        out.append(PoemStates.of(hidden, ids, min_context))
    return out


def cache_log_q(poems: list[PoemStates], size: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """log p_cache of every scored target, in order, and whether its position has an earlier one to recall."""
    parts = [cache_target_log_q(p.hidden, p.tokens, size, theta) for p in poems]
    if not parts:
        return np.zeros(0), np.zeros(0, bool)
    log_q = np.concatenate([q[p.scored] for (q, _), p in zip(parts, poems, strict=True)])
    has = np.concatenate([h[p.scored] for (_, h), p in zip(parts, poems, strict=True)])
    return log_q, has


def cached_log_prob(poems: list[PoemStates], log_p: np.ndarray, choice: CacheChoice) -> np.ndarray:
    """The model's log-probabilities of the scored targets (``log_p``, in the poems' order) mixed with the cache."""
    log_q, has = cache_log_q(poems, choice.size, choice.theta)
    if len(log_q) != len(log_p):
        raise ValueError(f"{len(log_p)} model log-probabilities for {len(log_q)} scored targets")
    return mix_targets(log_p, log_q, has, choice.lam)


def choose_cache(poems: list[PoemStates], log_p: np.ndarray) -> CacheChoice:
    """The grid's (size, theta, lambda) with the lowest mean negative log-likelihood on these targets (the first
    on a tie, so that lambda 0, no cache, wins where the cache does not help)."""
    best = CacheChoice(SIZES[0], THETAS[0], 0.0, -float(np.mean(log_p)))
    for size in SIZES:
        for theta in THETAS:
            log_q, has = cache_log_q(poems, size, theta)
            for lam in LAMBDAS[1:]:
                loss = -float(np.mean(mix_targets(log_p, log_q, has, lam)))
                if loss < best.inner_loss:
                    best = CacheChoice(size, theta, lam, loss)
    return best


def target_log_probs(members: list[Params], cell: str, poems: list[PoemStates]) -> np.ndarray:
    """The model's log-probabilities of the scored targets of ``poems``, in order: for an ensemble the log of its
    members' averaged probabilities (``wordrnn.core.metrics.average_probabilities``)."""
    parts = []
    for p in poems:
        log_probs = average_probabilities([forward(params, p.tokens[None], cell)[0][0] for params in members])
        parts.append(log_probs[np.arange(len(p.tokens) - 1), p.tokens[1:]][p.scored])
    return np.concatenate(parts) if parts else np.zeros(0)


def choose_for_run(members: list[Params], cell: str, val_poems: list[np.ndarray], min_context: int) -> CacheChoice:
    """The cache for a trained poem model (its members' weights), chosen on its validation poems."""
    poems = poem_states(members, cell, val_poems, min_context)
    return choose_cache(poems, target_log_probs(members, cell, poems))


@dataclass(frozen=True)
class WritingChoice:
    """The writing weight chosen (0: write without the cache) and the samples' repetition at each weight tried."""

    lam: float
    tried: dict[float, RepetitionComparison]

    def settings(self, scoring: CacheSettings) -> CacheSettings | None:
        """The cache to write with: the scoring one's size and theta at this weight (None for 0: no cache)."""
        return scoring.reweighted(self.lam)

    def describe(self) -> str:
        if self.lam == 0:
            return "none (even the smallest weight writes text that repeats itself beyond the training poems' range)"
        return f"lambda {self.lam:g}: {self.tried[self.lam].describe()}"


def writing_samples(source: Source, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """One sample per prompt (the prompt left out), seed i for the i-th, at ``WRITE_SETTINGS``."""
    return [generate(source, list(p), WRITE_TOKENS, 1, replace(WRITE_SETTINGS, seed=i))
            for i, p in enumerate(prompts)]


def choose_writing(source_of: Callable[[CacheSettings | None], Source], scoring: CacheSettings,
                   prompts: Sequence[Sequence[int]], poems: PoemRepetition) -> WritingChoice:
    """The largest grid weight up to ``scoring.lam`` whose samples from ``prompts`` repeat within ``poems``' range,
    by bisection between 0 (no cache, taken to pass) and ``scoring.lam``."""
    grid = [lam for lam in LAMBDAS if lam < scoring.lam] + [scoring.lam]
    tried: dict[float, RepetitionComparison] = {}

    def passes(lam: float) -> bool:
        source = source_of(scoring.reweighted(lam))
        tried[lam] = compare_repetition(writing_samples(source, prompts), poems)
        return tried[lam].within

    if passes(grid[-1]):
        return WritingChoice(grid[-1], tried)
    good, bad = 0, len(grid) - 1  # grid[bad] repeats too much; grid[good] (0 at first) is taken to pass
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if passes(grid[mid]) else (good, mid)
    return WritingChoice(grid[good], tried)


def choose_writing_for(members: list[Params], config: Config, scoring: CacheSettings, val_poems: list[np.ndarray],
                       train_poems: list[np.ndarray]) -> tuple[WritingChoice, int]:
    """``choose_writing`` for a trained poem model: samples from the NumPy reference (``scratch.generate``), one per
    validation poem (at most ``WRITE_SAMPLES``) prompted by its first token, held to the training poems' range; the
    choice and the number of samples."""
    from scratch.generate import members_source  # the NumPy reference's source; it imports this module

    prompts = [ids[:1] for ids in val_poems if len(ids)][:WRITE_SAMPLES]
    choice = choose_writing(lambda cache: members_source(members, config, cache), scoring, prompts,
                            PoemRepetition(train_poems))
    return choice, len(prompts)


def chosen_cache(run: Run, stream: TextIO | None = None) -> CacheSetup | None:
    """The cache chosen on ``run``'s validation poems (None where lambda 0, no cache, is best), for scoring and for
    writing, said in lines on ``stream`` (default: standard output)."""
    from data.dataset import load_dataset
    from wordrnn.run.corpus_record import check_corpus

    stream = stream or sys.stdout
    config = run.config
    dataset = load_dataset(**{**config.dataset_args(), "data": check_corpus(run.path, config.data)},
                           vocab=run.vocab)
    n_val = len(dataset.val_ids)
    choice = choose_for_run(run.member_params, config.cell, dataset.val_ids, config.seq_len)
    if choice.lam == 0:
        print(f"neural cache: none (it does not lower the loss on the run's {n_val} validation poems)", file=stream)
        return None
    print(f"neural cache: size {choice.size}, theta {choice.theta:g}, lambda {choice.lam:g}, chosen on the run's "
          f"{n_val} validation poems (validation loss {choice.inner_loss:.4f})", file=stream)
    scoring = CacheSettings(choice.size, choice.theta, choice.lam).validate("--cache-auto")
    writing, samples = choose_writing_for(run.member_params, config, scoring, dataset.val_ids, dataset.train_ids)
    print(f"neural cache for writing: {writing.describe()} (samples from the first token of {samples} validation "
          f"poems, {WRITE_TOKENS} tokens each, temperature {WRITE_SETTINGS.temperature}, top-p "
          f"{WRITE_SETTINGS.top_p})", file=stream)
    return CacheSetup(scoring, writing.settings(scoring))

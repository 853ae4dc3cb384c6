"""The neural cache's flags, one definition and one validation for every command that applies a cache to a run.

``python -m export.onnx`` writes the cache the flags describe into the file (docs/GENERATION.md, version 4: the
setting the perplexity is scored with and the one generation applies); ``python -m scratch.generate`` applies the
writing one while it writes from the run folder, so that the NumPy reference writes
what every client of that file writes. A run folder holds no cache: ``--cache-auto`` chooses one on the run's
validation poems each time. The choice needs a poem model's hidden states, which come from an implementation
(``scratch.cache_choice``, by the NumPy reference) above this layer, so the caller passes it in.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from wordrnn.core.cache import CacheSettings, CacheSetup
from wordrnn.core.errors import UsageError
from wordrnn.run.folder import Run

Choose = Callable[[Run], CacheSetup | None]  # the cache --cache-auto chooses for a run (None: none helps)


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("neural cache (a poem model only; docs/GENERATION.md, version 4)")
    g.add_argument("--cache-size", type=int, default=None, metavar="N",
                   help="recall the last N positions of the poem being written (with --cache-theta and "
                   "--cache-lambda; python -m wordrnn.bench.quality --cache chooses all three)")
    g.add_argument("--cache-theta", type=float, default=None, metavar="T",
                   help="flatness: a remembered position weighs exp(T h_now . h_then)")
    g.add_argument("--cache-lambda", type=float, default=None, metavar="L",
                   help="the cache's weight in the mixture, between 0 and 1")
    g.add_argument("--cache-write-lambda", type=float, default=None, metavar="L",
                   help="the cache's weight when writing text, from 0 (write without it) to below 1, with the same "
                   "size and theta (default: --cache-lambda's)")
    g.add_argument("--cache-auto", action="store_true",
                   help="choose all three on the run's own validation poems, by the grid bench.quality uses (reads "
                   "the corpus the run was trained on, checked against its corpus.json), and the weight for "
                   "writing: the largest whose samples repeat themselves within the training poems' range "
                   "(scratch.cache_choice); no cache where none helps")


def cache_from_args(args: argparse.Namespace, run: Run, choose: Choose) -> CacheSetup | None:
    """The neural cache the flags describe (size, theta and lambda all or none, and the writing weight), or the one
    ``--cache-auto`` has ``choose`` pick for ``run``; refused for a window model."""
    given = [args.cache_size, args.cache_theta, args.cache_lambda]
    if not args.cache_auto and all(v is None for v in [*given, args.cache_write_lambda]):
        return None
    flag = "--cache-auto" if args.cache_auto else "--cache-*"
    if not run.config.layout.carries_state:
        raise UsageError(f"{flag} needs a poem model: the cache recalls the hidden states of the poem written so "
                         f"far, and a {run.config.context} model starts every window from a zero state")
    if args.cache_auto:
        if any(v is not None for v in [*given, args.cache_write_lambda]):
            raise UsageError("--cache-auto chooses --cache-size, --cache-theta, --cache-lambda and "
                             "--cache-write-lambda: give it or them")
        return choose(run)
    if any(v is None for v in given):
        raise UsageError("a neural cache needs all of --cache-size, --cache-theta and --cache-lambda"
                         + (" (--cache-write-lambda sets only its weight when writing)"
                            if args.cache_write_lambda is not None else ""))
    scoring = CacheSettings(args.cache_size, args.cache_theta, args.cache_lambda).validate("--cache-*")
    return CacheSetup(scoring, writing_cache(scoring, args.cache_write_lambda, "--cache-write-lambda"))


def writing_cache(scoring: CacheSettings, lam: float | None, where: str) -> CacheSettings | None:
    """The cache for writing with weight ``lam`` (None: the scoring one's; 0: none) and the scoring size and theta."""
    if lam is None:
        return scoring
    if not 0.0 <= lam < 1.0:  # NaN too
        raise UsageError(f"{where} is the cache's weight when writing, from 0 (write without it) to below 1, "
                         f"got {lam}")
    writing = scoring.reweighted(lam)
    return writing.validate(where) if writing else None

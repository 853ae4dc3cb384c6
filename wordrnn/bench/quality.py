"""``python -m wordrnn.bench.quality``: cross-validated perplexity of Kneser-Ney, Kneser-Ney with a cache of the
poem so far, the stronger of the two (the strongest n-gram), the recipe, its mixture with the strongest n-gram and
the lab's plain RNN, on one corpus (``--data``) or on the whole suite (``--suite``).

For each fold (``wordrnn.bench.folds``): the Kneser-Ney order, the n-gram cache (``wordrnn.bench.ngram_cache``)
and the strongest n-gram are chosen on the fold's inner validation poems; the recipe and the plain embedding RNN
are trained on the inner training poems with early stopping on the inner
validation poems (PyTorch backend, the one training loop); the mixture weight
is chosen on the inner validation poems; then all six score the fold's
held-out poems, on the same targets (``--ngram-only``: the three n-gram rows alone). Perplexities are
averaged over folds (mean and standard deviation); with ``--seeds N`` each RNN's fold loss is the
mean over N training seeds. With ``--ensemble N`` the recipe row (and so the
mixture) is an ensemble of N members per training seed s (seeds s .. s+N-1),
scored by their averaged probabilities, not losses. Samples from fold 1's models are shown with how
much of them is copied from the training poems (``wordrnn.bench.novelty``) and how their lines and stanzas
compare with the training poems' (``wordrnn.bench.form``). In the poem context (unless ``--no-cache``) two
more rows: the recipe with a neural cache (``wordrnn.core.cache``), its size, flatness and weight chosen on the
inner validation poems (``scratch.cache_choice``), and that mixed with the strongest n-gram; with ``--dynamic-eval``
the recipe under dynamic evaluation (``scratch.dynamic_eval``), and with the cache rows two more: the adapting
recipe with a neural cache over the hidden states it produced, and that mixed with the strongest n-gram. With
``--recipe auto`` each fold first runs the search of ``wordrnn.run.search`` on its own dataset (inner training and
inner validation poems only) and the recipe row is its choice, trained as the recipe is (nested: no held-out
poem shapes a choice).

Only light modules are imported at the top: ``--threads`` must be applied before torch loads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line

import numpy as np  # noqa: E402

from data.tokenizer import tokenize  # noqa: E402
from wordrnn.bench.folds import Fold, build_folds  # noqa: E402
from wordrnn.bench.kneser_ney import KneserNey  # noqa: E402
from wordrnn.bench.mixture import choose_weight, mix, mix_log_prob, target_log_prob  # noqa: E402
from wordrnn.bench.ngram_cache import CachedKneserNey, choose_cache  # noqa: E402
from wordrnn.bench.novelty import TrainingText  # noqa: E402
from wordrnn.bench.written import TrainingPoems, write_texts  # noqa: E402
from wordrnn.core.config import Config, flag_of, options  # noqa: E402
from wordrnn.core.errors import INTERRUPTED_EXIT, UsageError, cli  # noqa: E402
from wordrnn.core.flags import (  # noqa: E402
    SharedParser,
    add_model_flags,
    add_options,
    add_search_flags,
    add_threads_flag,
    add_training_flags,
    check_search_flags,
    config_from_args,
    explicit_flags,
)
from wordrnn.core.recipes import SEARCHED, recipe  # noqa: E402
from wordrnn.core.search_space import SearchSpace  # noqa: E402
from wordrnn.core.threads import check_threads  # noqa: E402
from wordrnn.run.folder import atomic_write_text, check_out_file  # noqa: E402

# Kneser-Ney; Kneser-Ney with a cache of the poem so far (wordrnn.bench.ngram_cache); and per fold whichever of the
# two is better on the inner validation poems: the baseline of every "X% below", and what the mixtures mix with.
NGRAM_ROWS = ("kneser-ney", "kneser-ney-cache", "strongest-ngram")
ROWS = (*NGRAM_ROWS, "recipe", "mixture", "plain")
# In the poem context (unless --no-cache): the recipe with a neural cache (wordrnn.core.cache), and that mixed
# with the strongest n-gram; the cache's size, flatness and weight are chosen on the inner validation poems.
CACHE_ROWS = ("cache", "cache-mixture")
# In the poem context (with --dynamic-eval): the recipe adapting to each held-out chunk once it is scored
# (scratch.dynamic_eval), reset at each poem or carried through the fold's held-out poems in order; that, its
# step and its decay chosen on the inner validation poems. With the cache rows too: the adapting recipe with a
# neural cache over the hidden states it produced (the cache chosen afresh, given the adaptation), and that mixed
# with the strongest n-gram.
DYNAMIC_ROWS = ("dynamic-eval",)
DYNAMIC_CACHE_ROWS = ("dynamic-cache", "dynamic-cache-mixture")
ALL_ROWS = (*ROWS, *CACHE_ROWS, *DYNAMIC_ROWS, *DYNAMIC_CACHE_ROWS)
LABELS = {"kneser-ney": "Kneser-Ney (best order)", "kneser-ney-cache": "Kneser-Ney + cache",
          "strongest-ngram": "strongest n-gram", "recipe": "recipe (--recipe quality)",
          "mixture": "recipe + n-gram mixture", "plain": "plain embedding RNN (lab)",
          "cache": "recipe + neural cache", "cache-mixture": "recipe + cache + n-gram mixture",
          "dynamic-eval": "recipe + dynamic evaluation", "dynamic-cache": "recipe + dynamic evaluation + cache",
          "dynamic-cache-mixture": "recipe + dynamic evaluation + cache + n-gram mixture"}
KN_ORDERS = (1, 2, 3, 4, 5)
PLAIN = {"model": "embedding", "cell": "rnn"}  # the rest is the benchmark configuration
STOPPING = ("epochs", "patience")  # the plain row trains as long as the recipe row
DEFAULT_JSON = "reports/quality.json"
PROMPT = "the"
SAMPLE_TOKENS = 60


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = SharedParser(
        prog="python -m wordrnn.bench.quality",
        description="Cross-validated perplexity, by poem, of the best Kneser-Ney n-gram model, the same with a "
        "cache of the poem so far, the stronger of the two (the strongest n-gram), the quality recipe, its mixture "
        "with the strongest n-gram and the lab's plain embedding RNN, with percentages below the strongest n-gram "
        "and below Kneser-Ney (docs/QUALITY.md). The model and training flags default to the quality recipe (--recipe "
        "quality); a flag given explicitly overrides it for the recipe row. The plain row is the "
        "benchmark configuration with the same --epochs and --patience.",
    )
    g = parser.add_argument_group("corpus")
    g.add_argument("--data", default=None, metavar="PATH",
                   help="corpus (.csv or .txt) to cross-validate on (default: $WORDRNN_DATA, then the user cache, "
                   "then the download of poems-100)")
    g.add_argument("--suite", nargs="?", const="all", default=None, metavar="NAMES",
                   help="every corpus of the suite (wordrnn.bench.corpora: poems-100, sonnets, lucrece, milton, "
                   "sonnet-parts), or "
                   "those named, comma-separated (--suite sonnets,milton)")
    add_options(g, "text_column", "tokenizer")
    g.add_argument("--min-freq", type=int, default=Config.min_freq,
                   help="words seen fewer times in a fold's training poems become <unk> (default: %(default)s)")
    g.add_argument("--seq-len", type=int, default=Config.seq_len,
                   help="tokens in each input window, every row (default: %(default)s)")
    g = parser.add_argument_group("cross-validation")
    g.add_argument("--folds", type=int, default=5, help="folds over poems (default: %(default)s)")
    g.add_argument("--seeds", type=int, default=1,
                   help="training seeds per fold for the RNNs; a fold's loss is their mean (default: %(default)s)")
    g.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="the rows of the recipe with a neural cache over the poem's hidden states, and of that "
                   "mixed with the strongest n-gram (Grave et al. 2017); its size, flatness and weight are chosen on "
                   "the inner validation poems. The poem context only (a window model reads no poem to remember), "
                   "where they are on unless --no-cache")
    g.add_argument("--seed", type=int, default=0,
                   help="seeds the folds and the first training seed (default: %(default)s)")
    g.add_argument("--ngram-only", action="store_true",
                   help="only the n-gram rows (Kneser-Ney, Kneser-Ney + cache, the strongest n-gram): no RNN is "
                   "trained, so a model or training flag, --seeds or --cache has nothing to act on and is refused")
    g.add_argument("--dynamic-eval", action=argparse.BooleanOptionalAction, default=False,
                   help="the row of the recipe under dynamic evaluation (Krause et al. 2018): each held-out chunk "
                   "scored, then one step on it, decayed towards the trained weights, reset at each poem or "
                   "carried through the fold's held-out poems in order; step, decay and mode chosen on the inner "
                   "validation poems; with the cache rows also the adapting recipe with a neural cache over the "
                   "hidden states it produced, and that mixed with the strongest n-gram. The poem context only "
                   "(default: off: 13 passes over the inner validation poems a fold)")
    parser.add_argument("--recipe", default="quality", choices=("quality", *SEARCHED),
                        help="the recipe row: quality (the one recipe, default), or auto: inside each fold, a search "
                        "scored on the fold's inner validation poems only, then the chosen configuration trained as "
                        "quality trains (nested; an explicit flag fixes its dimension of the search)")
    add_model_flags(parser)
    add_training_flags(parser)
    add_search_flags(parser)
    g = parser.add_argument_group("output")
    g.add_argument("--json", default=DEFAULT_JSON, metavar="PATH", help="results file (default: %(default)s)")
    g.add_argument("--jobs", type=int, default=2,
                   help="folds trained at a time, each in its own process (default: %(default)s, one per core "
                   "of a 2-core machine)")
    add_threads_flag(g)
    g.add_argument("--quiet", action="store_true", help="only the final table")
    parser.set_defaults(**recipe("quality"))
    return parser


@dataclass
class CorpusResult:
    data: str
    tokens: int
    poems: int
    folds: int
    seeds: int
    fold_ppl: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ALL_ROWS})
    choices: list[dict[str, Any]] = field(default_factory=list)  # per fold: order, weights, epochs
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0  # its folds' own wall clocks, added (the folds of every corpus share one pool)
    name: str = ""  # short label for tables; ``data`` says where the text came from

    @property
    def label(self) -> str:
        return self.name or Path(self.data).name

    @property
    def names(self) -> tuple[str, ...]:
        """The rows this corpus has: the four, and the cache's and dynamic evaluation's where asked for."""
        return tuple(r for r in ALL_ROWS if self.fold_ppl.get(r))

    def rows(self) -> list[dict[str, Any]]:
        kn = float(np.mean(self.fold_ppl["kneser-ney"]))
        strongest = float(np.mean(self.fold_ppl["strongest-ngram"]))
        out = []
        for name in self.names:
            ppl = self.fold_ppl[name]
            mean = float(np.mean(ppl))
            out.append({"name": name, "ppl_mean": mean, "ppl_std": float(np.std(ppl, ddof=1)) if len(ppl) > 1
                        else 0.0, "below_kneser_ney": 1.0 - mean / kn,
                        "below_strongest_ngram": 1.0 - mean / strongest, "fold_ppl": ppl})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.label, "data": self.data, "tokens": self.tokens, "poems": self.poems, "folds": self.folds,
                "seeds": self.seeds, "rows": self.rows(), "choices": self.choices, "samples": self.samples,
                "seconds": self.seconds}


@dataclass
class NgramFold:
    """A fold's n-gram rows: each model fitted to the inner training poems and chosen on the inner validation
    poems, with its log-probabilities of the inner validation (``val``) and held-out (``test``) targets."""

    models: dict[str, CachedKneserNey]  # row name -> model
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    choice: dict[str, Any]

    @property
    def kn(self) -> KneserNey:
        return self.models["kneser-ney"].kn


def ngram_for_fold(fold: Fold, seq_len: int) -> NgramFold:
    """Kneser-Ney (the order with the lowest inner-validation perplexity), Kneser-Ney + cache (order, half-life
    and weight chosen together on the inner validation poems), and the strongest n-gram: whichever of the two has
    the lower inner-validation loss (Kneser-Ney on a tie)."""
    V = len(fold.vocab)
    ds = fold.dataset
    fitted = {n: KneserNey(n).fit(ds.train_ids, V) for n in KN_ORDERS}
    kn_val = {n: m.log_prob(ds.val_x, ds.val_y) for n, m in fitted.items()}
    ppl = {n: _ppl(logp) for n, logp in kn_val.items()}
    order = min(ppl, key=ppl.get)
    cache = choose_cache(kn_val, ds.val_ids, seq_len)
    models = {"kneser-ney": CachedKneserNey(fitted[order]),
              "kneser-ney-cache": CachedKneserNey(fitted[cache.order], cache.half_life, cache.weight)}
    strongest = "kneser-ney-cache" if cache.inner_loss < -float(kn_val[order].mean()) else "kneser-ney"
    models["strongest-ngram"] = models[strongest]
    val = {"kneser-ney": kn_val[order],
           "kneser-ney-cache": models["kneser-ney-cache"].target_log_prob(ds.val_x, ds.val_y, ds.val_ids, seq_len)}
    test = {name: m.target_log_prob(fold.test_x, fold.test_y, fold.test_ids, seq_len)
            for name, m in models.items() if name != "strongest-ngram"}
    val["strongest-ngram"], test["strongest-ngram"] = val[strongest], test[strongest]
    choice = {"kneser_ney_order": order, "kneser_ney_inner_ppl": ppl, "kneser_ney_cache": cache.to_json(),
              "strongest_ngram": strongest}
    return NgramFold(models, val, test, choice)


class TrainedRNN:
    """An RNN trained on a fold by the one loop, early-stopped on the inner validation poems; with
    ``config.ensemble`` N > 1, an ensemble of N members (seeds ``seed`` .. ``seed + N - 1``, each early-stopped on
    its own) read as one model, its members' probabilities averaged."""

    def __init__(self, config: Config, fold: Fold, workdir: Path):
        from wordrnn.frameworks import make_backend
        from wordrnn.run.folder import load_run
        from wordrnn.run.loop import train

        self.backend = make_backend("torch")
        run_dir = workdir / f"{config.cell}-fold{fold.index}-seed{config.seed}"
        result = train(config, self.backend, run_dir, overwrite=True, quiet=True, dataset=fold.dataset,
                       write_samples=False, explain_interrupt=False)
        if result.exit_code:
            raise KeyboardInterrupt
        self.best_epoch = result.best_epoch
        self.epochs = len(result.metrics) if result.config.ensemble == 1 else result.metrics[-1]["epoch"]
        self.best_val_ppl = min(r["val_ppl"] for r in result.metrics)
        self.config = result.config
        # canonical weights of every member: the NumPy reference reads their hidden states for the cache
        self.member_params = load_run(run_dir).member_params
        self.states = [self.backend.init(params, self.config.member(k)) for k, params in enumerate(self.member_params)]

    def describe(self) -> str:
        which = f"an ensemble of {len(self.states)}: " if len(self.states) > 1 else ""
        return f"{which}best inner-validation ppl {self.best_val_ppl:.1f} at epoch {self.best_epoch} of {self.epochs}"

    def logits(self, x: np.ndarray) -> np.ndarray:
        from wordrnn.run.loop import window_logits_of

        return window_logits_of(self.backend, self.states)(x)

    def sequence_logits(self, x: np.ndarray, carry: Any) -> tuple[np.ndarray, Any]:
        from wordrnn.run.loop import sequence_logits_of

        return sequence_logits_of(self.backend, self.states)(x, carry)

    def source(self) -> Any:
        """What the sampler reads the model through (``wordrnn.core.sampling.Source``)."""
        from wordrnn.run.loop import ensemble_source

        return ensemble_source(self.backend, self.states, self.config)

    def target_log_prob(self, x: np.ndarray, y: np.ndarray, poems: list[np.ndarray], batch: int = 2048
                        ) -> np.ndarray:
        """log P(y) for the windows ``x``, ``y`` of ``poems``: from the windows (window context), or from the
        whole poems read with the state carried (poem context), in the windows' order."""
        if self.config.layout.carries_state:
            from wordrnn.core.metrics import poem_target_logits

            parts = [target_log_prob(logits[scored], targets[scored]) for logits, targets, scored in
                     poem_target_logits(self.sequence_logits, poems, self.config.seq_len)]
            logp = np.concatenate(parts) if parts else np.zeros(0)
            assert len(logp) == len(y), "the poem context scores the windows' targets"
            return logp
        return np.concatenate([target_log_prob(self.logits(x[i:i + batch]), y[i:i + batch])
                               for i in range(0, len(y), batch)]) if len(y) else np.zeros(0)


def _ppl(logp: np.ndarray) -> float:
    return math.exp(-float(np.mean(logp)))


@dataclass(frozen=True)
class SearchPlan:
    """``--recipe auto`` inside each fold: the space and the budget of its search."""

    space: SearchSpace
    trials: int
    epochs: int


def search_fold(recipe_config: Config, fold: Fold, plan: SearchPlan, workdir: Path) -> tuple[Config, dict[str, Any]]:
    """The recipe's configuration chosen inside ``fold``: a search on its dataset, whose validation split is the
    fold's inner validation poems (the held-out poems are not in it), and what the fold's record keeps of it."""
    from wordrnn.frameworks import make_backend
    from wordrnn.run.search import Budget, chosen_config, run_search

    result = run_search(recipe_config, make_backend("torch"), fold.dataset, workdir / f"search-fold{fold.index}",
                        plan.space, Budget(plan.trials, plan.epochs), quiet=True)
    if result.interrupted:
        raise KeyboardInterrupt
    rec = result.record
    kept = {k: rec[k] for k in ("choice", "chosen_trial", "chosen_val_ppl", "epochs_trained", "seconds", "trials")}
    return chosen_config(recipe_config, result.choice), kept


@dataclass
class FoldOutcome:
    ppl: dict[str, float]  # held-out perplexity per row
    choice: dict[str, Any]  # what the inner validation chose
    samples: dict[str, dict[str, Any]]
    seconds: float  # the fold's own wall clock


def cache_losses(rnn: TrainedRNN, fold: Fold, r_val: np.ndarray, r_test: np.ndarray, ngram_val: np.ndarray,
                 ngram_test: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    """The held-out losses of the recipe with a neural cache, and of that mixed with the strongest n-gram: the
    cache's parameters, then the mixture weight, chosen on the inner validation poems."""
    from scratch.cache_choice import cached_log_prob, choose_cache, poem_states

    ds, seq_len = fold.dataset, rnn.config.seq_len
    val = poem_states(rnn.member_params, rnn.config.cell, ds.val_ids, seq_len)
    test = poem_states(rnn.member_params, rnn.config.cell, fold.test_ids, seq_len)
    choice = choose_cache(val, r_val)
    c_val, c_test = cached_log_prob(val, r_val, choice), cached_log_prob(test, r_test, choice)
    w = choose_weight(c_val, ngram_val)
    losses = {"cache": -float(c_test.mean()), "cache-mixture": -float(mix_log_prob(c_test, ngram_test, w).mean())}
    return losses, {**choice.to_json(), "strongest_ngram_weight": w}


def dynamic_losses(rnn: TrainedRNN, fold: Fold, ngram_val: np.ndarray, ngram_test: np.ndarray, cache: bool
                   ) -> tuple[dict[str, float], dict[str, Any]]:
    """The held-out loss of the recipe under dynamic evaluation, its step, decay and mode (reset per poem, or
    carried through the poems in the fold's order) chosen on the inner validation poems; with ``cache``, that
    with a neural cache over the adapted model's hidden states (the cache's parameters chosen on the inner
    validation poems read the same way), and that mixed with the strongest n-gram."""
    from scratch.cache_choice import cached_log_prob, choose_cache
    from scratch.dynamic_eval import choose_dynamic, dynamic_poems

    c = rnn.config
    started = time.time()
    choice = choose_dynamic(rnn.member_params, c.cell, fold.dataset.val_ids, c.seq_len, c.bptt)
    test_logp, test = dynamic_poems(rnn.member_params, c.cell, fold.test_ids, c.seq_len, c.bptt, choice.settings)
    assert len(test_logp) == len(fold.test_y), "dynamic evaluation scores the windows' targets"
    losses, chosen = {"dynamic-eval": -float(test_logp.mean())}, choice.to_json()
    if cache:  # on the inner validation poems as the chosen adaptation read them
        val_logp, val = choice.log_prob, choice.states
        cached = choose_cache(val, val_logp)
        c_val, c_test = cached_log_prob(val, val_logp, cached), cached_log_prob(test, test_logp, cached)
        w = choose_weight(c_val, ngram_val)
        losses |= {"dynamic-cache": -float(c_test.mean()),
                   "dynamic-cache-mixture": -float(mix_log_prob(c_test, ngram_test, w).mean())}
        chosen["cache"] = {**cached.to_json(), "strongest_ngram_weight": w}
    return losses, {**chosen, "seconds": time.time() - started}


def score_fold(fold: Fold, tokens: list[list[str]], recipe_config: Config, plain_config: Config, seeds: int,
               seed: int, quiet: bool, started: float, workdir: str, cache: bool = False,
               ngram_only: bool = False, search: SearchPlan | None = None, dynamic: bool = False) -> FoldOutcome:
    """One fold: choose and fit everything on its training poems, then score its held-out poems (with
    ``ngram_only``, the n-gram rows alone)."""
    fold_started = time.time()
    log = (lambda *a: None) if quiet else say
    ds = fold.dataset
    searched = None
    if search is not None and not ngram_only:
        recipe_config, searched = search_fold(recipe_config, fold, search, Path(workdir))
        log(f"    fold {fold.index + 1}: search chose trial {searched['chosen_trial'] + 1} of "
            f"{len(searched['trials'])} (inner-validation ppl {searched['chosen_val_ppl']:.1f}, "
            f"{searched['seconds']:.0f} s)")
    ngram = ngram_for_fold(fold, recipe_config.seq_len)
    kn, strongest = ngram.kn, ngram.models["strongest-ngram"]
    ngram_val, ngram_test = ngram.val["strongest-ngram"], ngram.test["strongest-ngram"]
    rnn_rows = () if ngram_only else ("recipe", "mixture", "plain", *(CACHE_ROWS if cache else ()),
                                      *(DYNAMIC_ROWS if dynamic else ()),
                                      *(DYNAMIC_CACHE_ROWS if dynamic and cache else ()))
    losses: dict[str, list[float]] = {r: [] for r in rnn_rows}
    choice: dict[str, Any] = {"fold": fold.index + 1, **ngram.choice, "heldout_poems": len(fold.heldout),
                              "heldout_targets": len(fold.test_y), "vocab": len(fold.vocab),
                              "weights": [], "recipe_epochs": [], "plain_epochs": []}
    if cache and not ngram_only:
        choice["cache"] = []
    if searched is not None:
        choice["search"] = searched
    if dynamic:
        choice["dynamic_eval"] = []
    samples: dict[str, dict[str, Any]] = {}
    for s in range(seed, seed + (0 if ngram_only else seeds)):
        rnn = TrainedRNN(replace(recipe_config, seed=s), fold, Path(workdir))
        log(f"    fold {fold.index + 1}, seed {s}: recipe trained, {rnn.describe()} "
            f"({time.time() - started:.0f} s)")
        r_val = rnn.target_log_prob(ds.val_x, ds.val_y, ds.val_ids)
        r_test = rnn.target_log_prob(fold.test_x, fold.test_y, fold.test_ids)
        w = choose_weight(r_val, ngram_val)
        plain = TrainedRNN(replace(plain_config, seed=s), fold, Path(workdir))
        log(f"    fold {fold.index + 1}, seed {s}: plain trained, {plain.describe()} "
            f"({time.time() - started:.0f} s)")
        p_test = plain.target_log_prob(fold.test_x, fold.test_y, fold.test_ids)
        losses["recipe"].append(-float(r_test.mean()))
        losses["mixture"].append(-float(mix_log_prob(r_test, ngram_test, w).mean()))
        losses["plain"].append(-float(p_test.mean()))
        choice["weights"].append(w)
        if cache:
            cached, chosen = cache_losses(rnn, fold, r_val, r_test, ngram_val, ngram_test)
            for name, loss in cached.items():
                losses[name].append(loss)
            choice["cache"].append(chosen)
        if dynamic:
            adapted, chosen = dynamic_losses(rnn, fold, ngram_val, ngram_test, cache)
            for name, loss in adapted.items():
                losses[name].append(loss)
            choice["dynamic_eval"].append(chosen)
        choice["recipe_epochs"].append(rnn.best_epoch)
        choice["plain_epochs"].append(plain.best_epoch)
        if fold.index == 0 and s == seed:
            cached = writing_source(rnn, fold, choice["cache"][-1]) if cache else None
            samples = fold_samples(fold, tokens, kn, strongest, rnn, plain, w, cached)
    ppl = {**{name: _ppl(logp) for name, logp in ngram.test.items()},
           **{name: math.exp(float(np.mean(v))) for name, v in losses.items()}}
    trained = "" if ngram_only else (f", mixture weight {np.mean(choice['weights']):.2f}, recipe epoch "
                                     f"{choice['recipe_epochs']}, plain epoch {choice['plain_epochs']}")
    log(f"  fold {fold.index + 1}: held-out ppl " + ", ".join(f"{name} {ppl[name]:.1f}" for name in ppl)
        + f"  (KN order {kn.order}; KN + cache {ngram.models['kneser-ney-cache'].describe()}; strongest "
        f"{choice['strongest_ngram']}{trained}; {time.time() - started:.0f} s)")
    return FoldOutcome(ppl, choice, samples, time.time() - fold_started)


def _worker_init(threads: int) -> None:
    from wordrnn.core.threads import limit_threads

    limit_threads(threads)


@dataclass
class CorpusTask:
    """A corpus read and cut into folds, and the result its folds fill in."""

    tokens: list[list[str]]
    folds: list[Fold]
    result: CorpusResult


def prepare_corpus(poems: list[str], data: str, recipe_config: Config, folds: int, seeds: int, seed: int,
                   name: str) -> CorpusTask:
    c = recipe_config
    tokens = [tokenize(p, c.tokenizer) for p in poems]
    fold_list = build_folds(tokens, folds, c.seq_len, c.min_freq, c.tokenizer, seed)
    return CorpusTask(tokens, fold_list, CorpusResult(data, sum(len(t) for t in tokens), len(poems), folds, seeds,
                                                      name=name))


def evaluate_corpora(tasks: list[CorpusTask], recipe_config: Config, plain_config: Config, seeds: int,
                     seed: int = 0, quiet: bool = False, jobs: int = 1, threads: int = 1,
                     cache: bool = False, ngram_only: bool = False, search: SearchPlan | None = None,
                     dynamic: bool = False) -> list[CorpusResult]:
    """Cross-validate the six rows (eight with ``cache``, one more with ``dynamic``; the three n-gram rows alone
    with ``ngram_only``) on every corpus; ``jobs`` folds at a time, each in its own process, drawn from one queue
    for all the corpora, the largest corpus's folds first: with one pool per corpus, the last of its five folds
    would run alone while the other core waited."""
    started = time.time()
    if not quiet:
        for task in tasks:
            r = task.result
            say(f"{r.label} ({r.data}): {r.poems} poems, {r.tokens:,} tokens, {r.folds} folds x {seeds} seed(s)")
        say(f"{sum(len(t.folds) for t in tasks)} folds, {min(jobs, sum(len(t.folds) for t in tasks))} at a time")
    order = sorted(((k, fold) for k, task in enumerate(tasks) for fold in task.folds),
                   key=lambda kf: -tasks[kf[0]].result.tokens)
    with tempfile.TemporaryDirectory(prefix="wordrnn-quality-") as tmp:
        # a folder per corpus: the folds of two corpora share their numbers
        args = [(fold, tasks[k].tokens, recipe_config, plain_config, seeds, seed, quiet, started,
                 str(Path(tmp) / f"corpus{k}"), cache, ngram_only, search, dynamic) for k, fold in order]
        if jobs <= 1:
            _worker_init(threads)
            outcomes = [score_fold(*a) for a in args]
        else:
            # Processes, not threads: one single-threaded PyTorch per core is what a small, busy CPU runs
            # fastest (wordrnn.core.threads). "spawn": every worker starts its own PyTorch.
            with ProcessPoolExecutor(min(jobs, len(args)), mp_context=get_context("spawn"),
                                     initializer=_worker_init, initargs=(threads,)) as pool:
                outcomes = list(pool.map(score_fold, *zip(*args, strict=True)))
    for (k, fold), outcome in sorted(zip(order, outcomes, strict=True), key=lambda p: (p[0][0], p[0][1].index)):
        result = tasks[k].result
        for name in outcome.ppl:
            result.fold_ppl[name].append(outcome.ppl[name])
        result.choices.append(outcome.choice)
        result.seconds += outcome.seconds
        if fold.index == 0:  # the samples are fold 1's
            result.samples = outcome.samples
    return [task.result for task in tasks]


def writing_source(rnn: TrainedRNN, fold: Fold, chosen: dict[str, Any]) -> Any:
    """The recipe with the neural cache it writes with, as ``export.onnx --cache-auto`` chooses it
    (``scratch.cache_choice.choose_writing_for``, here on the fold's inner validation poems), for the cache row's
    samples; the weight goes into ``chosen``. None where the fold chose no cache, or no weight for writing."""
    from scratch.cache_choice import choose_writing_for
    from scratch.generate import members_source
    from wordrnn.core.cache import CacheSettings

    if chosen["lambda"] == 0:
        chosen["writing_lambda"] = 0.0
        return None
    scoring = CacheSettings(chosen["size"], chosen["theta"], chosen["lambda"])
    ds = fold.dataset
    writing, _ = choose_writing_for(rnn.member_params, rnn.config, scoring, ds.val_ids, ds.train_ids)
    chosen["writing_lambda"] = writing.lam
    settings = writing.settings(scoring)
    return None if settings is None else members_source(rnn.member_params, rnn.config, settings)


def fold_samples(fold: Fold, tokens: list[list[str]], kn: KneserNey, ngram: CachedKneserNey, rnn: TrainedRNN,
                 plain: TrainedRNN, weight: float, cached: Any = None) -> dict[str, dict[str, Any]]:
    """One seeded sample per row from fold 1's models (the mixture's with the strongest n-gram ``ngram``, the cache
    row's with its cache for writing, ``cached``), with
    its novelty, and the form (words per line, lines per stanza) and repetition of the row's long text
    (``wordrnn.bench.written``) against the fold's training poems."""
    from wordrnn.core.sampling import SamplerSettings
    from wordrnn.run.generation import generate_text

    settings = SamplerSettings(temperature=0.8, top_p=0.9, seed=0)
    seq_len = rnn.config.seq_len
    mixture = mixture_source(rnn, ngram, weight)
    training = TrainingText([tokens[i] for i in fold.inner_train])
    poems = TrainingPoems([tokens[i] for i in fold.inner_train])
    prompt_len = len(tokenize(PROMPT))
    out = {}
    rows = [("kneser-ney", kn.log_distributions), ("recipe", rnn.source()), ("mixture", mixture),
            ("plain", plain.source()), *([("cache", cached)] if cached is not None else [])]
    for name, fn in rows:
        text = generate_text(fn, fold.vocab, seq_len, PROMPT, SAMPLE_TOKENS, settings)
        generated = tokenize(text)[prompt_len:]
        n = training.novelty(generated)
        written = poems.measure(write_texts(fn, fold.vocab, seq_len, settings))
        out[name] = {"text": text, "copied_4grams": n.copied_4grams, "longest_copy": n.longest_copy,
                     "novelty": n.describe(), **written.row()}
    return out


def mixture_source(rnn: TrainedRNN, ngram: CachedKneserNey, weight: float) -> Any:
    """The RNN + n-gram mixture as a sampler source: a window model's (the n-gram, its cache too, reads the window),
    or a poem model's that carries the RNN's state and the text so far (the n-gram reads all of it: Kneser-Ney its
    last tokens, the cache every one)."""
    from wordrnn.core.sampling import Stateful

    def mixed(rnn_logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        p_rnn = np.exp(np.asarray(rnn_logits, np.float64))
        p_rnn /= p_rnn.sum(axis=1, keepdims=True)
        return np.log(mix(p_rnn, np.exp(ngram.log_distributions(history)), weight))

    if not rnn.config.layout.carries_state:
        return lambda x: mixed(rnn.logits(x), x)

    def step(x: np.ndarray, carry: Any) -> tuple[np.ndarray, Any]:
        rnn_carry, text = carry if carry is not None else (None, [])
        logits, rnn_carry = rnn.sequence_logits(x, rnn_carry)
        text = text + x[0].tolist()
        return mixed(logits[:, -1], np.asarray([text]))[:, None], (rnn_carry, text)

    return Stateful(step)


def _below(share: float) -> str:
    return f"{abs(share):.1%} {'below' if share >= 0 else 'above'}"


def table(results: list[CorpusResult]) -> str:
    """One markdown table: per corpus and row, the cross-validated perplexity, % below the strongest n-gram and %
    below Kneser-Ney."""
    names = results[0].names if results else ROWS
    lines = ["| corpus | tokens | folds | " + " | ".join(LABELS[r] for r in names) + " |",
             "|---|--:|--:|" + "--:|" * len(names)]
    for res in results:
        cells = []
        for row in res.rows():
            kn = f"KN: {_below(row['below_kneser_ney'])}"
            below = {"kneser-ney": "", "strongest-ngram": f" ({kn})"}.get(
                row["name"], f" ({_below(row['below_strongest_ngram'])}; {kn})")
            cells.append(f"{row['ppl_mean']:.1f} ± {row['ppl_std']:.1f}{below}")
        lines.append(f"| {res.label} | {res.tokens:,} | {res.folds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n(perplexity on held-out poems, mean ± standard deviation over folds; " \
        "in brackets: how far below (or above) the strongest n-gram's, as a share of it, then Kneser-Ney's)"


def samples_text(results: list[CorpusResult]) -> str:
    parts = []
    for res in results:
        for name, s in res.samples.items():
            form = "".join(f"\n({s[key]})" for key in ("form", "repetition") if key in s)
            parts.append(f"--- {res.label}, {LABELS[name]} (fold 1): {s['novelty']} ---{form}\n{s['text']}")
    return "\n\n".join(parts)


def configs_from_args(args: argparse.Namespace) -> tuple[Config, Config]:
    """The recipe row's configuration (every setting the flags give) and the plain row's: the benchmark
    configuration of ``PLAIN`` with the recipe row's data settings and its stopping rule."""
    recipe_config = config_from_args(args)
    shared = [f.name for f in options("data")] + list(STOPPING)
    plain_config = replace(Config(**PLAIN), **{name: getattr(recipe_config, name) for name in shared}).validate()
    return recipe_config, plain_config


def trained_settings(config: Config) -> dict[str, Any]:
    """Every model and training setting of a row (the data settings are the corpus's, the same for every row)."""
    return {f.name: getattr(config, f.name) for f in options() if f.metadata["group"] in ("model", "training")}


def corpora_from_args(args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """(name, where the text came from, poems) for each corpus to evaluate."""
    from data.corpus import read_poems
    from data.locate import locate_corpus
    from wordrnn.bench.corpora import SUITE, load_corpus

    if args.suite and args.data:
        raise UsageError("give either --data PATH (one corpus) or --suite (every corpus of the suite), not both")
    if args.suite:
        names = SUITE if args.suite == "all" else tuple(n.strip() for n in args.suite.split(","))
        unknown = [n for n in names if n not in SUITE]
        if unknown:
            raise UsageError(f"--suite {args.suite}: the suite has no {', '.join(unknown)}; it holds "
                             f"{', '.join(SUITE)}")
        return [(c.name, c.origin, c.poems) for c in map(load_corpus, names)]
    path = locate_corpus(args.data)
    return [(path.name, str(path), read_poems(path, args.text_column))]


def refuse_rnn_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """With ``--ngram-only`` no RNN is trained: a flag that only an RNN reads, set away from its default, would be
    ignored, so it is refused."""
    names = [f.name for f in options() if f.metadata["group"] in ("model", "training")] + [
        "seeds", "cache", "dynamic_eval", "recipe"]
    set_flags = [flag_of(n) for n in names if hasattr(args, n) and getattr(args, n) != parser.get_default(n)]
    if set_flags:
        raise UsageError(f"--ngram-only trains no RNN, so {', '.join(set_flags)} would have nothing to act on; "
                         "drop them, or drop --ngram-only")


def search_plan(args: argparse.Namespace, recipe_config: Config, tasks: list[CorpusTask]) -> SearchPlan | None:
    """``--recipe auto``'s search inside each fold, its space and data checked before any fold trains."""
    check_search_flags(args)
    if args.recipe not in SEARCHED:
        return None
    from wordrnn.core.search_space import build_space
    from wordrnn.run.search import check_search_data

    space = build_space(recipe_config, explicit_flags(args), args.search_space)
    for task in tasks:
        for fold in task.folds:
            check_search_data(fold.dataset, f"the inner validation poems of {task.result.label}'s fold "
                              f"{fold.index + 1}")
    return SearchPlan(space, args.search_trials, args.search_epochs)


@cli
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ngram_only:
        refuse_rnn_flags(parser, args)
    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    recipe_config, plain_config = configs_from_args(args)
    if args.cache and not recipe_config.layout.carries_state:
        raise UsageError(f"--cache needs --context poem: the neural cache recalls the hidden states of the poem read "
                         f"so far, and a {recipe_config.context} model starts every window from a zero state")
    cache = recipe_config.layout.carries_state if args.cache is None else args.cache
    if args.dynamic_eval and not recipe_config.layout.carries_state:
        raise UsageError(f"--dynamic-eval needs --context poem: it adapts the model along each held-out poem read "
                         f"with the state carried, and a {recipe_config.context} model reads windows")
    check_out_file(args.json, overwrite=True, flag="--json")  # the results file replaces an earlier one
    corpora = corpora_from_args(args)
    check_threads(args.threads)
    tasks = [prepare_corpus(poems, data, recipe_config, args.folds, args.seeds, args.seed, name)
             for name, data, poems in corpora]
    search = search_plan(args, recipe_config, tasks)
    if search is not None:  # the tables name the recipe the row was trained by
        LABELS["recipe"] = f"recipe (--recipe {args.recipe}, searched in each fold)"
    started = time.time()
    try:
        results = evaluate_corpora(tasks, recipe_config, plain_config, args.seeds, args.seed, args.quiet, args.jobs,
                                   args.threads, cache, args.ngram_only, search, args.dynamic_eval)
    except KeyboardInterrupt:
        # The folds train in a temporary folder, removed on the way out: nothing is left to continue.
        print(f"\ninterrupted: nothing written to {args.json}, and the folds' temporary runs are gone. "
              "Run the same command again to start afresh", file=sys.stderr)
        return INTERRUPTED_EXIT
    seconds = time.time() - started
    document = {"corpora": [r.to_json() for r in results], "seconds": seconds, "jobs": args.jobs,
                "ngram_only": args.ngram_only,
                "recipe": trained_settings(recipe_config), "recipe_name": args.recipe,
                **({"search_space": search.space.to_json(), "search_trials": search.trials,
                    "search_epochs": search.epochs} if search else {}),
                "plain": trained_settings(plain_config),
                "command": " ".join(["python -m wordrnn.bench.quality", *(sys.argv[1:] if argv is None else argv)])}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(document, indent=2) + "\n")
    if not args.quiet:
        say(samples_text(results))
    say(table(results))
    say(f"{len(results)} corpora in {seconds:.0f} s with {args.jobs} job(s); wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``--recipe auto``'s search: short training runs over a small space, scored on validation poems only.

Each trial is one model of the base configuration with the trial's settings (``wordrnn.core.search_space``; the
first trial is the base configuration itself, where the space holds its values),
trained by the one loop for at most ``--search-epochs`` epochs from the base seed, and scored by its best
validation loss: on a run's own validation poems (every trainer), or on a fold's inner validation poems
(``bench.quality``, which hands over the fold's dataset: the held-out poems are not in it). The search is
Optuna's: a TPE sampler (Bergstra et al. 2011; Akiba et al. 2019) and a median pruner (a trial whose validation
loss after epoch e is worse than the median of earlier trials' after e stops there). Its journal lives in the
folder's ``search/``, so a search stopped by Ctrl-C keeps its finished trials and ``--resume`` continues it;
``search.json`` (rewritten atomically after every trial) records every trial, its settings, score, epochs and
time, and the choice. The chosen configuration is then trained as the quality recipe trains (ensemble, patience,
the cache chosen at export).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data.dataset import Dataset
from wordrnn.core.backend import Backend
from wordrnn.core.config import Config
from wordrnn.core.errors import RunFailed, UsageError, plural
from wordrnn.core.search_space import SearchSpace
from wordrnn.run.folder import atomic_write_text

SEARCH_DIR = "search"  # the journal and the running trial's folder
JOURNAL = "journal.log"
RECORD = "search.json"
RECORD_VERSION = 1
# A score from a handful of targets is noise: the search needs at least this much validation text.
MIN_VAL_POEMS = 2
MIN_VAL_TARGETS = 100
# The pruner waits for this many finished trials, and judges a trial from its second epoch on (one epoch of a
# larger or more regularized model says little about where it ends).
PRUNER_STARTUP = 3
PRUNER_WARMUP = 2
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Budget:
    trials: int
    epochs: int


@dataclass
class SearchResult:
    choice: dict[str, Any]  # the chosen settings (Config fields)
    record: dict[str, Any]  # what search.json holds
    interrupted: bool = False


def check_search_data(dataset: Dataset, where: str = "the run's validation split") -> None:
    """Refuse a corpus whose validation split is too small to score a trial on."""
    poems, targets = len(dataset.val_ids), len(dataset.val_y)
    if poems < MIN_VAL_POEMS or targets < MIN_VAL_TARGETS:
        raise UsageError(f"--recipe auto scores its trials on {where}, which holds {plural(poems, 'poem')} and "
                         f"{plural(targets, 'target')}; the search needs at least {MIN_VAL_POEMS} poems and "
                         f"{MIN_VAL_TARGETS} targets there: use a larger corpus (or a larger --val-fraction), or "
                         "--recipe quality")


def check_search_folder(folder: Path, *, resume: bool, overwrite: bool) -> None:
    """A folder holding a search is continued only with --resume and replaced only with --overwrite."""
    journal = folder / SEARCH_DIR / JOURNAL
    if resume and not journal.is_file():
        raise UsageError(f"nothing to resume in {folder}: it holds no search of --recipe auto; run the same command "
                         "without --resume to start one")
    if not resume and journal.is_file() and not overwrite:
        raise UsageError(f"{folder} already holds a search of --recipe auto; pass --resume to continue it, "
                         "--overwrite to replace it, or choose another --out")


def _data_signature(dataset: Dataset) -> dict[str, int]:
    """What a resumed search compares with the one it continues: the same split and vocabulary."""
    return {"vocab": len(dataset.vocab), "train_poems": len(dataset.train_ids), "val_poems": len(dataset.val_ids),
            "val_targets": int(len(dataset.val_y))}


def run_search(base: Config, backend: Backend, dataset: Dataset, folder: str | Path, space: SearchSpace,
               budget: Budget, *, resume: bool = False, overwrite: bool = False, quiet: bool = False,
               say: Callable[..., None] = print) -> SearchResult:
    """Search ``space`` around ``base`` on ``dataset``'s validation split; the journal and ``search.json`` go in
    ``folder``. Returns the choice, or ``interrupted`` with the trials so far kept (Ctrl-C)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(folder)
    check_search_folder(folder, resume=resume, overwrite=overwrite)
    if overwrite and not resume:
        shutil.rmtree(folder / SEARCH_DIR, ignore_errors=True)
        (folder / RECORD).unlink(missing_ok=True)
    (folder / SEARCH_DIR).mkdir(parents=True, exist_ok=True)
    base = dataclasses.replace(base, ensemble=1, epochs=budget.epochs, patience=0, extra=dict(base.extra))
    setup = {"space": space.to_json(), "fixed": space.fixed_values(base), "epochs": budget.epochs,
             "base": _settings(base),
             "data": _data_signature(dataset)}
    study = _open_study(folder, setup, budget, base.seed, resume, space.base_point(base))
    started = time.perf_counter() - (_stored_wall_seconds(folder / RECORD) if resume else 0.0)
    bar = tqdm(total=budget.trials, initial=min(_done(study), budget.trials), desc="search", unit="trial",
               disable=quiet or not sys.stderr.isatty(), leave=False, file=sys.stderr)
    note = (lambda *a: None) if quiet else say if not sys.stderr.isatty() else tqdm.write
    try:
        with bar:
            while _done(study) < budget.trials:
                trial = study.ask()
                _run_trial(study, trial, base, backend, dataset, folder, space, budget)
                _write_record(folder, study, setup, budget, time.perf_counter() - started)
                note(describe_trial(study.trials[trial.number], budget))
                bar.update(1)
    except KeyboardInterrupt:
        return SearchResult({}, _write_record(folder, study, setup, budget, time.perf_counter() - started),
                            interrupted=True)
    record = _write_record(folder, study, setup, budget, time.perf_counter() - started)
    if record["choice"] is None:
        raise RunFailed(f"no trial of the search in {folder} finished ({_states(study)}); see {folder / RECORD}")
    return SearchResult(record["choice"], record)


def _settings(config: Config) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in ("extra", "vocab_size")}


def _open_study(folder: Path, setup: dict[str, Any], budget: Budget, seed: int, resume: bool,
                first: dict[str, Any]) -> Any:
    """The study in ``folder``'s journal: new (its first trial ``first``, the base configuration's point), or the
    stored one (its setup checked, an unfinished trial failed)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    storage = JournalStorage(JournalFileBackend(str(folder / SEARCH_DIR / JOURNAL)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP, n_warmup_steps=PRUNER_WARMUP)
    if resume:
        study = optuna.load_study(study_name="search", storage=storage, pruner=pruner)
        stored = study.user_attrs.get("setup")
        changed = [k for k in setup if stored is None or stored.get(k) != setup[k]]
        if changed:
            raise UsageError(f"--resume continues the search in {folder}, but its {', '.join(changed)} differ from "
                             "this command's; give the same settings and corpus (only --search-trials may change), "
                             "or start afresh with --overwrite")
        for trial in study.get_trials(states=(TrialState.RUNNING,)):  # killed before it could be told
            study.tell(trial.number, state=TrialState.FAIL)
    else:
        study = optuna.create_study(study_name="search", storage=storage, direction="minimize", pruner=pruner)
        study.set_user_attr("setup", setup)
        study.enqueue_trial(first)
    # Seeded by what is stored, so that a resumed search draws what an uninterrupted one draws from there on.
    study.sampler = optuna.samplers.TPESampler(seed=seed + _done(study),
                                               n_startup_trials=max(PRUNER_STARTUP, budget.trials // 3))
    return study


def _done(study: Any) -> int:
    """Trials that count against the budget: finished, stopped by the pruner or diverged (not interrupted)."""
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.user_attrs.get("failed", INTERRUPTED) != INTERRUPTED)
               for t in study.trials)


def _states(study: Any) -> str:
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    values = {}
    for d in space.dimensions:
        values[d.name] = (trial.suggest_categorical(d.name, list(d.choices)) if d.categorical
                          else trial.suggest_float(d.name, d.low, d.high, log=d.log))
    return values


def _run_trial(study: Any, trial: Any, base: Config, backend: Backend, dataset: Dataset, folder: Path,
               space: SearchSpace, budget: Budget) -> None:
    """Train one trial and tell the study its score (or that it was pruned, diverged or interrupted)."""
    from optuna.trial import TrialState

    from wordrnn.run.loop import Diverged, train

    config = dataclasses.replace(base, **_suggest(trial, space)).validate()
    run_dir = folder / SEARCH_DIR / f"trial-{trial.number}"
    pruned = False

    def stop_after(row: dict[str, Any]) -> bool:
        nonlocal pruned
        trial.report(row["val_loss"], row["epoch"])
        pruned = trial.should_prune()
        return pruned

    started = time.perf_counter()
    try:
        result = train(config, backend, run_dir, overwrite=True, quiet=True, dataset=dataset, write_samples=False,
                       explain_interrupt=False, stop_after=stop_after)
        if result.exit_code:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        trial.set_user_attr("failed", INTERRUPTED)
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Diverged as err:
        trial.set_user_attr("failed", str(err))
        trial.set_user_attr("seconds", time.perf_counter() - started)
        study.tell(trial, state=TrialState.FAIL)
        return
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    trial.set_user_attr("seconds", time.perf_counter() - started)
    if pruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, min(row["val_loss"] for row in result.metrics))


def _trial_json(t: Any) -> dict[str, Any]:
    losses = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
    row = {"number": t.number, "state": t.state.name.lower(), "params": t.params,
           "score": t.value if t.value is not None else (min(losses) if losses else None),
           "val_loss": losses, "epochs": len(losses), "seconds": t.user_attrs.get("seconds")}
    if t.state.name == "FAIL":  # a trial killed before it could say why was interrupted
        row["failed"] = t.user_attrs.get("failed", INTERRUPTED)
    return row


def _write_record(folder: Path, study: Any, setup: dict[str, Any], budget: Budget, seconds: float
                  ) -> dict[str, Any]:
    """search.json: the setup, every trial, the choice (the best finished trial's settings, or null)."""
    from optuna.trial import TrialState

    trials = [_trial_json(t) for t in study.trials]
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = min(finished, key=lambda t: t.value) if finished else None
    record = {"format_version": RECORD_VERSION, "sampler": "optuna TPE", "scored_on": "validation poems",
              "pruner": f"optuna median (after {PRUNER_STARTUP} trials, from epoch {PRUNER_WARMUP})",
              "trials_budget": budget.trials, "trials_done": _done(study), **setup,
              "trials": trials, "epochs_trained": sum(t["epochs"] for t in trials),
              "seconds": sum(t["seconds"] or 0.0 for t in trials), "wall_seconds": seconds,
              "choice": None if best is None else dict(best.params),
              "chosen_trial": None if best is None else best.number,
              "chosen_val_ppl": None if best is None else math.exp(best.value)}
    atomic_write_text(folder / RECORD, json.dumps(record, indent=2) + "\n")
    return record


def _stored_wall_seconds(path: Path) -> float:
    """The wall clock of the sessions before this one (a resumed search adds its own)."""
    try:
        return float(json.loads(path.read_text())["wall_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def describe_trial(t: Any, budget: Budget) -> str:
    row = _trial_json(t)
    params = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row["params"].items())
    took = f"{row['seconds']:.0f} s" if row["seconds"] is not None else "-"
    if row["state"] == "fail":
        return f"trial {row['number'] + 1}: {params}: failed ({row['failed']}, {took})"
    what = {"complete": "", "pruned": f", pruned after epoch {row['epochs']} of {budget.epochs}"}[row["state"]]
    return f"trial {row['number'] + 1}: {params}: best val ppl {math.exp(row['score']):.2f}{what} ({took})"


def chosen_config(base: Config, choice: dict[str, Any]) -> Config:
    """The base configuration with the search's choice: what is then trained as the recipe trains."""
    return dataclasses.replace(base, **choice, extra=dict(base.extra)).validate()


def search_then_config(base: Config, backend: Backend, dataset: Dataset, run_dir: Path, explicit: Collection[str],
                       specs: list[str], budget: Budget, *, resume: bool, overwrite: bool, quiet: bool
                       ) -> tuple[Config | None, SearchResult]:
    """A trainer's ``--recipe auto``: the search in ``run_dir`` (or its stored choice), then the chosen config
    (``None`` when Ctrl-C stopped the search)."""
    from wordrnn.core.search_space import build_space

    say = (lambda *a, **k: None) if quiet else print
    space = build_space(base, explicit, specs)
    check_search_data(dataset)
    say(f"--recipe auto: searching {space.describe()}{space.describe_fixed(base)}; "
        f"{plural(budget.trials, 'trial')} of at most {plural(budget.epochs, 'epoch')}, scored on the validation "
        f"poems -> {run_dir / RECORD}")
    result = run_search(base, backend, dataset, run_dir, space, budget, resume=resume, overwrite=overwrite,
                        quiet=quiet, say=say)
    if result.interrupted:
        return None, result
    rec = result.record
    say(f"search: {plural(len(rec['trials']), 'trial')}, {rec['epochs_trained']} epochs in {rec['seconds']:.0f} s; "
        f"chose trial {rec['chosen_trial'] + 1} (val ppl {rec['chosen_val_ppl']:.2f}): "
        + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.choice.items()))
    return chosen_config(base, result.choice), result

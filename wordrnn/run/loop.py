"""The one training loop. Every framework supplies a ``Backend``; this does the rest.

Per epoch: the seeded chunks of the context's layout, ``backend.train_step`` with a progress bar, the
divergence guard, evaluation on the validation windows (in NumPy, from
logits), a line of ``metrics.jsonl``, a checkpoint for exact ``--resume`` and
the best weights. At the end: samples. Ctrl-C leaves the last complete epoch
saved.

A run folder holds a run once its first checkpoint is written: that file is
the mark of a complete epoch. A folder without it (training stopped during the
first epoch) is not a run: ``--resume`` has nothing to continue there, and a
plain rerun starts it afresh.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data.dataset import Dataset, load_dataset
from data.tokenizer import tokenize
from data.vocab import Vocab
from wordrnn.core.backend import Backend
from wordrnn.core.config import Config, flag_of, marked, options
from wordrnn.core.errors import INTERRUPTED_EXIT, RunFailed, UsageError, plural
from wordrnn.core.flags import check_search_flags, config_from_args, explicit_flags, given_flags
from wordrnn.core.memory import check_memory
from wordrnn.core.metrics import SequenceLogits, ensemble_sequence, ensemble_window, evaluate, evaluate_poems
from wordrnn.core.optimizers import get_optimizer, nonmonotone_trigger
from wordrnn.core.params import Params, init_params
from wordrnn.core.recipes import SEARCHED
from wordrnn.core.sampling import LogitsFn, SamplerSettings, Source, Stateful
from wordrnn.core.threads import limit_threads
from wordrnn.run.corpus_record import record_corpus
from wordrnn.run.folder import (
    CHECKPOINT,
    CONFIG,
    MEMBERS,
    METRICS,
    SAMPLES,
    VOCAB,
    WEIGHTS,
    atomic_write_text,
    check_members_folder,
    check_run_dir,
    load_arrays,
    load_run,
    member_dir,
    read_checkpoint,
    read_metrics,
    read_settings,
    read_weights,
    remove_members,
    remove_orphans,
    save_arrays,
    save_params,
    write_config,
    write_metrics,
)
from wordrnn.run.generation import generate_text
from wordrnn.run.init_vocab import choose_vocabulary
from wordrnn.run.lock import holds_run_lock

SAMPLE_PROMPTS = ("the sea", "my love", "the night")
SAMPLE_TOKENS = 40
LOSS_SYNC_EVERY = 20  # steps between host syncs of the running loss (lets async frameworks run ahead)
# A batch loss this many times that of uniform guessing (ln V) means training has diverged: a model that
# learns never gets there, and letting it run on only produces an infinite perplexity and garbage samples.
DIVERGED_FACTOR = 10.0
# Settings that may change when a run is resumed (``option(resumable=True)``); every other one is the run's and
# must stay as saved, except those the code fills in (``derived``).
RESUMABLE = marked("resumable")
# Settings an --init-from run decides (``option(adopted=True)``): its weights and vocabulary only fit them.
ADOPTED = marked("adopted")


StopAfter = Callable[[dict[str, Any]], bool]


class Diverged(RunFailed):
    """The training or validation loss became infinite, NaN, or far too large."""


@dataclass
class RunResult:
    run_dir: Path
    config: Config
    metrics: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    exit_code: int = 0
    samples: str = ""

    @property
    def train_seconds(self) -> float:
        return float(sum(row["seconds"] for row in self.metrics))


@dataclass
class Start:
    """Where training begins: the settings, vocabulary, weights and counters of a fresh, resumed or seeded run."""

    config: Config
    vocab: Vocab | None
    params: Params | None  # None: the seeded initializer
    optimizer: dict[str, np.ndarray] | None = None  # checked Adam state, when resuming
    epoch: int = 0
    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"val_loss": math.inf, "epoch": 0, "bad_epochs": 0})
    rows: list[dict[str, Any]] = field(default_factory=list)


def count_params(params: Params) -> int:
    return int(sum(p.size for p in params.values()))


@holds_run_lock
def train(config: Config, backend: Backend, run_dir: str | Path, *, resume: bool = False,
          init_from: str | Path | None = None, overwrite: bool = False, quiet: bool = False,
          dataset: Dataset | None = None, write_samples: bool = True,
          given: Collection[str] | None = None, explain_interrupt: bool = True,
          vocab_choice: str | None = None, stop_after: StopAfter | None = None) -> RunResult:
    """Train ``backend`` on the data ``config`` names and write the run folder ``run_dir``.

    ``given``: the settings the user asked for explicitly (``None``: all of them). ``--resume`` and
    ``--init-from`` refuse a given setting that contradicts the saved run. ``explain_interrupt``: after
    Ctrl-C, say how to continue with this trainer's flags (off where a larger command owns the folder).
    ``vocab_choice``: with ``init_from``, whose vocabulary the run uses (``wordrnn.run.init_vocab``).
    ``stop_after``: called with each epoch's row once it is saved; ``True`` ends training there (a search's
    pruner; a single model only).
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    primary = backend.process_index == 0  # with several JAX processes every one trains; only the first writes
    say = print if primary and not quiet else (lambda *a, **k: None)
    if primary:
        remove_orphans(run_dir)
    if _is_ensemble(config, run_dir, resume):
        if stop_after is not None:
            raise ValueError("stop_after watches one model's epochs, and this run is an ensemble")
        return _train_ensemble(config, backend, run_dir, resume=resume, init_from=init_from, overwrite=overwrite,
                               quiet=quiet, dataset=dataset, write_samples=write_samples, given=given,
                               explain_interrupt=explain_interrupt, say=say)
    start = _prepare(config, run_dir, resume=resume, init_from=init_from, overwrite=overwrite, given=given,
                     say=say)
    config = start.config
    _refuse_unread_flags(config, given)
    if dataset is None:
        dataset = load_dataset(**config.dataset_args(), vocab=start.vocab)
    if init_from is not None:
        dataset, seeded = choose_vocabulary(config, Path(init_from), start.vocab, start.params, dataset,
                                            vocab_choice)
        start = replace(start, vocab=dataset.vocab, params=seeded)
    config.vocab_size = len(dataset.vocab)
    memory_note = check_memory(config)  # refuses a model that cannot fit, before its weights exist
    if memory_note and primary:
        print(memory_note, file=sys.stderr)
    params = start.params if start.params is not None else init_params(config)
    state = backend.init(params, config)
    if start.optimizer is not None:
        state = backend.load_optimizer_arrays(state, start.optimizer)
    if primary:
        if dataset.source is not None:
            record_corpus(run_dir, dataset.source, resuming=start.epoch > 0)
        _write_settings(run_dir, config, backend.framework, dataset.vocab, fresh=start.epoch == 0)

    if dataset.source is not None:
        say(f"corpus {dataset.describe_source()}")
    reads = dataset.describe_epoch(config.layout, config.batch_size, config.bptt, config.bptt_jitter)
    say(f"{backend.framework} {config.model} {config.cell}, {config.context} context: vocabulary "
        f"{config.vocab_size}, {count_params(params):,} parameters, {reads}, validation OOV "
        f"{dataset.val_oov_rate:.1%} -> {run_dir}")
    result = RunResult(run_dir, config, start.rows, start.best["epoch"])
    try:
        best = _train_epochs(backend, state, dataset, config, run_dir, start, primary, quiet, say, stop_after)
    except KeyboardInterrupt:
        if explain_interrupt:
            _say_interrupted(run_dir, result.metrics)
        result.exit_code = INTERRUPTED_EXIT
        return result
    result.best_epoch = best["epoch"]
    if write_samples and primary and best["epoch"]:
        result.samples = write_run_samples(backend, run_dir, config, dataset.vocab)
        say(result.samples)
    return result


# ---------------------------------------------------------------- set-up: fresh, resumed or seeded

def _prepare(config: Config, run_dir: Path, *, resume: bool, init_from: str | Path | None, overwrite: bool,
             given: Collection[str] | None, say) -> Start:
    """Check the flags against each other and the folder, and read what the run starts from."""
    if resume and init_from is not None:
        raise UsageError("--resume continues a run from its own weights; drop --init-from")
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite replaces it; choose one")
    if resume:
        return _resume(config, run_dir, given)
    _check_fresh_folder(run_dir, overwrite, say)
    if init_from is not None:
        return _seed_from(config, Path(init_from), given, say)
    return Start(config, None, None)


def holds_epoch(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a complete epoch, of a model or of an ensemble's member: a run to resume."""
    return (run_dir / CHECKPOINT).is_file() or any((run_dir / MEMBERS).glob(f"*/{CHECKPOINT}"))


def _check_fresh_folder(run_dir: Path, overwrite: bool, say) -> None:
    """A folder holding a complete epoch (of a model, or of an ensemble's member) is replaced only with
    --overwrite; one without is started afresh."""
    if holds_epoch(run_dir):
        if not overwrite:
            raise UsageError(f"{run_dir} already holds a run; pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --out")
    elif (run_dir / CONFIG).is_file():
        say(f"note: {run_dir} holds no complete epoch (an earlier run stopped during its first); starting afresh")


def _resume(requested: Config, run_dir: Path, given: Collection[str] | None) -> Start:
    """The saved run, with the settings that may change on resume taken from ``requested``."""
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / CONFIG).is_file():
        raise UsageError(f"nothing to resume in {run_dir}: no complete epoch was saved there; "
                         "run the same command without --resume to start afresh")
    _, config, vocab = read_settings(run_dir)
    _refuse_conflicts(requested, config, given, exempt=RESUMABLE + marked("derived"),
                      why=f"--resume continues {run_dir} with its saved settings",
                      advice=f"drop them (only {', '.join(flag_of(f.name) for f in options() if f.name in RESUMABLE)}"
                             " may change), or start a new run with another --out")
    for name in RESUMABLE:  # the request's value; the framework's settings (extra) add to the saved ones
        setattr(config, name, {**config.extra, **requested.extra} if name == "extra" else getattr(requested, name))
    saved = read_checkpoint(run_dir / CHECKPOINT, config)
    if saved.epoch >= config.epochs:
        raise UsageError(f"{run_dir} has already trained {plural(saved.epoch, 'epoch')}; "
                         f"ask for more with --epochs N (N > {saved.epoch})")
    rows = _saved_rows(run_dir, saved.epoch)
    if saved.best["epoch"] == saved.epoch:
        # The checkpoint is written before the best weights: a kill between the two left older weights.
        save_params(run_dir / WEIGHTS, saved.params)
    return Start(config, vocab, saved.params, saved.optimizer, saved.epoch, saved.step, saved.best, rows)


def _saved_rows(run_dir: Path, epochs: int) -> list[dict[str, Any]]:
    """metrics.jsonl's rows of the ``epochs`` the checkpoint holds (rows past it, from a kill between the two
    writes, are dropped); a missing row is refused, since resuming would leave it out of the run's record."""
    rows = [r for r in read_metrics(run_dir) if r["epoch"] <= epochs]
    if [r["epoch"] for r in rows] != list(range(1, epochs + 1)):
        held = f"the rows of epochs {', '.join(str(r['epoch']) for r in rows)}" if rows else "no row"
        raise UsageError(f"{run_dir / METRICS} holds {held}, but the checkpoint has trained "
                         f"{plural(epochs, 'epoch')}, one row each; the file was edited or damaged: restore it, or "
                         "train the run again with --overwrite")
    return rows


def _seed_from(config: Config, source_dir: Path, given: Collection[str] | None, say) -> Start:
    """--init-from: the source's weights and vocabulary, so its model settings too (refusing given conflicts)."""
    source = load_run(source_dir)
    if source.members:
        raise UsageError(f"--init-from {source_dir} is an ensemble of {len(source.members)} models, and a run starts "
                         f"from one model's weights: give one of its members, such as {member_dir(source_dir, 0)}")
    if source.config.context != config.context:
        raise UsageError(f"--init-from {source_dir} is a {source.config.context}-context run and this one is "
                         f"--context {config.context}; start from a {config.context}-context run, or train "
                         "from scratch")
    _refuse_conflicts(config, source.config, given, only=ADOPTED, whose="the source run's",
                      why=f"--init-from {source_dir} starts from weights and a vocabulary built with other settings",
                      advice="drop them to use the source run's settings, or train from scratch")
    for name in ADOPTED:
        setattr(config, name, getattr(source.config, name))
    say(f"--init-from {source_dir}: {config.model} model, {config.cell} cell, {config.layers} layer(s) of hidden "
        f"size {config.hidden_size}{f', embedding {config.embed_dim}' if config.model == 'embedding' else ''}, "
        f"its vocabulary of {len(source.vocab)} (tokenizer {config.tokenizer}, min-freq {config.min_freq})")
    return Start(config, source.vocab, source.params)


def _refuse_conflicts(requested: Config, saved: Config, given: Collection[str] | None, *, why: str, advice: str,
                      exempt: Collection[str] = (), only: Collection[str] | None = None, whose: str = "saved") -> None:
    """One line naming every asked-for setting that differs from the saved run's, with the saved value."""
    names = [n for n in (only or requested.to_dict()) if n not in exempt and (given is None or n in given)]
    conflicts = [f"--{n.replace('_', '-')} {getattr(requested, n)} ({whose}: {getattr(saved, n)})"
                 for n in names if getattr(requested, n) != getattr(saved, n)]
    if conflicts:
        raise UsageError(f"{why}, but {', '.join(conflicts)}; {advice}")


def _refuse_unread_flags(config: Config, given: Collection[str] | None) -> None:
    """A setting the run's context never reads is refused when asked for, never silently ignored."""
    if not config.layout.carries_state and given is not None and "bptt" in given:
        raise UsageError("--bptt is the length of the poem context's chunks, and this run reads windows "
                         "(--context window): add --context poem, or drop --bptt")
    if get_optimizer(config.optimizer).average is None and given is not None and "nonmono" in given:
        raise UsageError(f"--nonmono says when NT-ASGD starts averaging, and this run uses --optimizer "
                         f"{config.optimizer}: add --optimizer ntasgd, or drop --nonmono")


def _write_settings(run_dir: Path, config: Config, framework: str, vocab: Vocab, fresh: bool) -> None:
    """config.json (rewritten on resume: it says what the run now is) and, for a fresh run, vocab.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        for stale in (WEIGHTS, CHECKPOINT, SAMPLES, METRICS):
            (run_dir / stale).unlink(missing_ok=True)
        remove_members(run_dir, keep=config.ensemble)
        atomic_write_text(run_dir / VOCAB, vocab.to_json() + "\n")
    write_config(run_dir, config, framework)


# ---------------------------------------------------------------- ensembles

def _is_ensemble(config: Config, run_dir: Path, resume: bool) -> bool:
    """Whether this run is an ensemble: as asked, or on --resume as the saved run says (a changed --ensemble is
    then refused, naming the saved value, as any other changed setting is)."""
    if resume and (run_dir / CONFIG).is_file():
        return read_settings(run_dir)[1].ensemble > 1
    return config.ensemble > 1


def _train_ensemble(config: Config, backend: Backend, run_dir: Path, *, resume: bool, init_from: str | Path | None,
                    overwrite: bool, quiet: bool, dataset: Dataset | None, write_samples: bool,
                    given: Collection[str] | None, explain_interrupt: bool, say) -> RunResult:
    """``config.ensemble`` members, member k a whole run folder ``members/k`` trained from seed ``seed + k`` on the
    ensemble's own split and vocabulary; then the ensemble's validation row (the members' probabilities averaged)
    and its samples in ``run_dir``. ``--resume`` finishes the members that have not finished."""
    if init_from is not None:
        raise UsageError("--init-from starts one model from another's weights, and an ensemble trains each member "
                         "from its own seed; drop --init-from or --ensemble")
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite replaces it; choose one")
    primary = backend.process_index == 0
    vocab = None
    if resume:
        config, vocab = _resume_ensemble(config, run_dir, given)
    else:
        _check_fresh_folder(run_dir, overwrite, say)
    _refuse_unread_flags(config, given)
    if dataset is None:  # the split and vocabulary of the ensemble's seed, which every member reads
        dataset = load_dataset(**config.dataset_args(), vocab=vocab)
    config.vocab_size = len(dataset.vocab)
    if primary:
        if dataset.source is not None:
            record_corpus(run_dir, dataset.source, resuming=resume)
        _write_settings(run_dir, config, backend.framework, dataset.vocab, fresh=not resume)
    n = config.ensemble
    say(f"ensemble of {n} {config.model} {config.cell} models, seeds {config.seed} to {config.seed + n - 1}, one "
        f"split and vocabulary of {len(dataset.vocab)} -> {run_dir}")
    members = []
    for k in range(n):
        folder, member = member_dir(run_dir, k), config.member(k)
        if resume and _member_finished(folder, member):
            say(f"member {k} (seed {member.seed}): finished in {folder}")
        else:
            say(f"member {k} (seed {member.seed}) -> {folder}")
            result = train(member, backend, folder, resume=resume and (folder / CHECKPOINT).is_file(),
                           overwrite=overwrite, quiet=quiet, dataset=dataset, write_samples=False, given=given,
                           explain_interrupt=False)
            if result.exit_code:
                if explain_interrupt:
                    print(f"\ninterrupted while member {k} trained; {run_dir} keeps every complete epoch of its "
                          f"members. Continue with --resume --out {run_dir}", file=sys.stderr)
                return RunResult(run_dir, config, exit_code=result.exit_code)
        members.append(backend.init(read_weights(folder / WEIGHTS, member), member))
    row = _ensemble_row(backend, members, dataset, config, run_dir)
    if primary:
        write_metrics(run_dir, [row])
    say(f"ensemble of {n}: val {row['val_loss']:.4f}  ppl {row['val_ppl']:8.2f}  top1 {row['val_top1']:.1%}  "
        f"top5 {row['val_top5']:.1%}  (members' ppl " + ", ".join(f"{math.exp(v):.2f}" for v in row["member_val_loss"])
        + ")")
    result = RunResult(run_dir, config, [row], row["best_epoch"])
    if write_samples and primary:
        result.samples = write_samples_from(ensemble_source(backend, members, config), run_dir, config,
                                            dataset.vocab)
        say(result.samples)
    return result


def _resume_ensemble(requested: Config, run_dir: Path, given: Collection[str] | None) -> tuple[Config, Vocab]:
    """The saved ensemble's settings, with those a resume may change taken from ``requested``, and its vocabulary."""
    _, config, vocab = read_settings(run_dir)
    check_members_folder(run_dir, config)
    if not any((run_dir / MEMBERS).glob(f"*/{CHECKPOINT}")):
        raise UsageError(f"nothing to resume in {run_dir}: no member of the ensemble completed an epoch; "
                         "run the same command without --resume to start afresh")
    _refuse_conflicts(requested, config, given, exempt=RESUMABLE + marked("derived"),
                      why=f"--resume continues the ensemble in {run_dir} with its saved settings",
                      advice=f"drop them (only {', '.join(flag_of(f.name) for f in options() if f.name in RESUMABLE)}"
                             " may change), or start a new run with another --out")
    for name in RESUMABLE:
        setattr(config, name, {**config.extra, **requested.extra} if name == "extra" else getattr(requested, name))
    return config, vocab


def _member_finished(folder: Path, member: Config) -> bool:
    """A member has finished when its checkpoint holds ``epochs`` epochs or its patience ran out."""
    if not (folder / CHECKPOINT).is_file():
        return False
    saved = read_checkpoint(folder / CHECKPOINT, member)
    stopped = bool(member.patience) and saved.best["bad_epochs"] >= member.patience
    return saved.epoch >= member.epochs or stopped


def _ensemble_row(backend: Backend, members: list[Any], dataset: Dataset, config: Config,
                  run_dir: Path) -> dict[str, Any]:
    """The ensemble's line of metrics.jsonl: its validation figures from the members' best weights, beside each
    member's best validation loss and epoch; ``epoch`` and ``best_epoch`` the most epochs any member trained."""
    started = time.perf_counter()
    row: dict[str, Any] = evaluate_ensemble(backend, members, dataset, config)
    member_rows = [read_metrics(member_dir(run_dir, k)) for k in range(len(members))]
    bests = [min(rows, key=lambda r: r["val_loss"]) for rows in member_rows]
    epochs = max(rows[-1]["epoch"] for rows in member_rows)
    return {"ensemble": len(members), "epoch": epochs, "train_loss": float(np.mean([r[-1]["train_loss"]
                                                                                     for r in member_rows])),
            **row, "val_oov_rate": dataset.val_oov_rate, "best_epoch": epochs,
            "member_val_loss": [r["val_loss"] for r in bests], "member_best_epoch": [r["epoch"] for r in bests],
            "seconds": float(sum(r["seconds"] for rows in member_rows for r in rows)),
            "eval_seconds": time.perf_counter() - started}


def evaluate_ensemble(backend: Backend, members: list[Any], dataset: Dataset, config: Config) -> dict[str, float]:
    """``evaluate_run`` of the ensemble of ``members`` (backend states): their probabilities averaged."""
    unk = dataset.vocab.unk_id
    if config.layout.carries_state:
        return evaluate_poems(sequence_logits_of(backend, members), dataset.val_ids, config.seq_len, unk_id=unk)
    return evaluate(window_logits_of(backend, members), dataset.val_x, dataset.val_y, unk_id=unk)


def window_logits_of(backend: Backend, members: list[Any]) -> LogitsFn:
    """Windows ``x`` [B, T] -> logits [B, V] of the ensemble of ``members`` (backend states; one: that model)."""
    return ensemble_window([lambda x, state=state: backend.logits(state, x, last_only=True)[0] for state in members])


def sequence_logits_of(backend: Backend, members: list[Any]) -> SequenceLogits:
    """``(x [B, T], carry) -> (logits [B, T, V], carry)`` of the ensemble of ``members``, the state carried."""
    return ensemble_sequence([lambda x, carry, state=state: backend.logits(state, x, carry) for state in members])


def ensemble_source(backend: Backend, members: list[Any], config: Config) -> Source:
    """``generation_source`` of an ensemble (one backend state per member; one member: that model)."""
    if config.layout.carries_state:
        return Stateful(sequence_logits_of(backend, members))
    return window_logits_of(backend, members)


# ---------------------------------------------------------------- the epochs

def _train_epochs(backend: Backend, state: Any, dataset: Dataset, config: Config, run_dir: Path, start: Start,
                  primary: bool, quiet: bool, say, stop_after: StopAfter | None = None) -> dict[str, Any]:
    """Epochs ``start.epoch + 1 ..``: train, evaluate, save; returns the best-epoch counters."""
    rows, step, best = start.rows, start.step, dict(start.best)
    guard = DivergenceGuard(config, run_dir, rows)
    # A diverging NumPy model overflows; the guard reports that once, in words, instead of warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(start.epoch + 1, config.epochs + 1):
            state, step, row = _train_epoch(backend, state, dataset, config, epoch, step, quiet, guard)
            scored = scored_state(backend, state, config)
            average = scored if scored is not state else None  # before the trigger below may replace ``state``
            row.update(evaluate_run(backend, scored, dataset, config))
            row["eval_seconds"] = time.perf_counter() - row.pop("_eval_start")
            row["val_oov_rate"] = dataset.val_oov_rate
            guard.check_validation(row, step)
            improved = row["val_loss"] < best["val_loss"]
            best = ({"val_loss": row["val_loss"], "epoch": epoch, "bad_epochs": 0} if improved
                    else {**best, "bad_epochs": best["bad_epochs"] + 1})
            row["best_epoch"] = best["epoch"]
            rows.append(row)
            state = _maybe_start_averaging(backend, state, config, rows, step, say)
            if primary:
                _save_epoch(run_dir, backend, state, rows, step, best, improved, average)
            say(_epoch_line(row, config.epochs))
            if config.patience and best["bad_epochs"] >= config.patience:
                say(f"no better validation loss for {plural(config.patience, 'epoch')}: stopping early")
                break
            if stop_after is not None and stop_after(row):
                break
    return best


def _save_epoch(run_dir: Path, backend: Backend, state: Any, rows: list[dict[str, Any]], step: int,
                best: dict[str, Any], improved: bool, average: Any = None) -> None:
    """Metrics, then the checkpoint (the mark of a complete epoch), then the best weights.

    In this order a kill at any moment leaves a folder that ``--resume`` and
    ``generate`` agree on: metrics rows past the checkpoint are dropped on
    resume, and weights older than a best checkpoint are rewritten from it.
    ``average``: the state holding the averaged weights the epoch was evaluated with (``scored_state``), if
    any; the best weights are then its weights, and the checkpoint holds the training state's.
    """
    write_metrics(run_dir, rows)
    weights = backend.canonical(state)
    arrays = {f"param.{k}": v for k, v in weights.items()}
    arrays.update(backend.optimizer_arrays(state))
    save_arrays(run_dir / CHECKPOINT, arrays, {"epoch": rows[-1]["epoch"], "step": step, "best": best})
    if improved:
        save_params(run_dir / WEIGHTS, weights if average is None else backend.canonical(average))


def scored_state(backend: Backend, state: Any, config: Config) -> Any:
    """The state evaluation, the best weights and so generation and export read: ``state`` itself, or, once the
    optimizer averages the weights and has averaged a step (NT-ASGD), a state holding that average."""
    spec = get_optimizer(config.optimizer)
    if spec.average is None:
        return state
    averaged = spec.averaged_weights(backend.optimizer_arrays(state))
    return state if averaged is None else backend.init(averaged, config)


def _maybe_start_averaging(backend: Backend, state: Any, config: Config, rows: list[dict[str, Any]], step: int,
                           say) -> Any:
    """NT-ASGD: begin averaging the weights from the next step on when the validation losses of ``rows`` meet
    AWD-LSTM's rule (``nonmonotone_trigger``); the step it began is saved with the optimizer state."""
    spec = get_optimizer(config.optimizer)
    if spec.average is None:
        return state
    arrays = backend.optimizer_arrays(state)
    if spec.averaging(arrays) or not nonmonotone_trigger([r["val_loss"] for r in rows], config.nonmono):
        return state
    say(f"validation loss {rows[-1]['val_loss']:.4f} is worse than the best of the epochs before the last "
        f"{plural(config.nonmono, 'epoch')}: {spec.label} averages the weights from step {step + 1} on")
    return backend.load_optimizer_arrays(state, spec.start_averaging(arrays))


class DivergenceGuard:
    """Stops training, in one line, when the loss leaves the range a learning model stays in."""

    def __init__(self, config: Config, run_dir: Path, rows: list[dict[str, Any]]):
        self.config, self.run_dir, self.rows = config, run_dir, rows
        uniform = math.log(max(config.vocab_size, 2))
        self.uniform = uniform
        self.limit = DIVERGED_FACTOR * max(uniform, 1.0)

    def check_loss(self, loss: float, step: int, epoch: int) -> None:
        if not math.isfinite(loss) or loss > self.limit:
            self.fail(f"the training loss became {loss:.4g} at step {step} (epoch {epoch}), "
                      f"against {self.uniform:.2f} for uniform guessing")

    def check_validation(self, row: dict[str, Any], step: int) -> None:
        if not math.isfinite(row["val_loss"]) or not math.isfinite(row["val_ppl"]):
            self.fail(f"the validation loss became {row['val_loss']:.4g} (perplexity {row['val_ppl']:.4g}) "
                      f"after step {step} (epoch {row['epoch']})")

    def fail(self, what: str) -> None:
        kept = self.rows[-1]["epoch"] if self.rows else 0
        saved = (f"{self.run_dir} keeps epoch {kept}, the last good one" if kept
                 else f"nothing to keep: no epoch had completed in {self.run_dir}")
        raise Diverged(f"training diverged: {what}; {saved}. Try a smaller --lr (now {self.config.lr:g}) "
                       f"or a gradient clip such as --clip 1 (now {self.config.clip:g})")


def evaluate_run(backend: Backend, state: Any, dataset: Dataset, config: Config) -> dict[str, float]:
    """The validation row: windows from a zero state, or whole poems read with the state carried; both score
    the same targets (every token with at least ``seq_len`` tokens before it in its poem)."""
    return evaluate_ensemble(backend, [state], dataset, config)


def _batches(backend: Backend, dataset: Dataset, config: Config, epoch: int) -> tuple[int, Any]:
    """How many steps the epoch takes, and a generator of ``(step function, targets)`` for each: one per chunk of
    the epoch as the context's layout cuts it, the state carried from one chunk to the next where the layout
    carries it (``wordrnn.core.layout``)."""
    layout = config.layout
    chunks = dataset.epoch_chunks(layout, config.batch_size, config.bptt, config.seed, epoch, config.bptt_jitter)

    def steps():
        carry = None
        for chunk in chunks:
            def take(state, step, chunk=chunk):
                nonlocal carry
                state, loss, after = backend.train_step(state, chunk, carry, step)
                if layout.carries_state:
                    carry = after
                return state, loss
            yield take, chunk.targets

    return len(chunks), steps()


def _train_epoch(backend: Backend, state: Any, dataset: Dataset, config: Config, epoch: int, step: int,
                 quiet: bool, guard: DivergenceGuard) -> tuple[Any, int, dict[str, Any]]:
    """One pass over the training data; returns the state, the global step and the epoch's row."""
    total_steps, steps = _batches(backend, dataset, config, epoch)
    # On a terminal a live bar; in a log file the per-epoch lines say enough (a bar there is carriage returns).
    bar = tqdm(total=total_steps, desc=f"epoch {epoch}/{config.epochs}",
               unit=config.layout.unit, disable=quiet or not sys.stderr.isatty(),
               leave=False, file=sys.stderr)
    pending: list[tuple[int, Any, int]] = []  # (step, loss not yet on the host, batch size)
    total, seen = 0.0, 0
    started = time.perf_counter()

    def sync() -> None:
        nonlocal total, seen
        for at, loss, size in pending:
            value = float(loss)
            guard.check_loss(value, at, epoch)
            total += value * size
            seen += size
        pending.clear()
        bar.set_postfix(loss=f"{total / max(seen, 1):.3f}", refresh=False)

    with bar:
        for take, targets in steps:
            state, loss = take(state, step)
            pending.append((step, loss, targets))
            step += 1
            if len(pending) >= LOSS_SYNC_EVERY:
                sync()
            bar.update(1)
        sync()
    eval_start = time.perf_counter()
    row = {"epoch": epoch, "train_loss": total / seen, "seconds": eval_start - started,
           "_eval_start": eval_start}
    return state, step, row


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    mark = "  *best*" if row["best_epoch"] == row["epoch"] else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
            f"ppl {row['val_ppl']:8.2f}  top1 {row['val_top1']:.1%}  top5 {row['val_top5']:.1%}  "
            f"{row['seconds']:.2f}s{mark}")


def _say_interrupted(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    done = rows[-1]["epoch"] if rows else 0
    if done:
        print(f"\ninterrupted; {run_dir} holds {plural(done, 'complete epoch')}. "
              f"Continue with --resume --out {run_dir}", file=sys.stderr)
    else:
        print(f"\ninterrupted before the first epoch completed; nothing to resume in {run_dir}. "
              "Run the same command again to start afresh", file=sys.stderr)


# ---------------------------------------------------------------- samples and the command

def sample_prompts(vocab: Vocab) -> list[str]:
    """``SAMPLE_PROMPTS``, each replaced by the vocabulary's most frequent word where it knows none of its words.

    A corpus without "sea", "love" or "night" still trains; its samples then start from a word it has.
    """
    fallback = next((t for t in vocab.tokens if t != vocab.tokens[vocab.unk_id] and t[:1].isalnum()), None)

    def known(prompt: str) -> bool:
        return any(t in vocab.index for t in tokenize(prompt, vocab.tokenizer))

    return [p if known(p) else fallback for p in SAMPLE_PROMPTS if known(p) or fallback is not None]


def write_run_samples(backend: Backend, run_dir: Path, config: Config, vocab: Vocab) -> str:
    """Generate from the best weights: one greedy and two sampled texts, saved to samples.txt."""
    best, _ = load_arrays(run_dir / WEIGHTS)
    return write_samples_from(generation_source(backend, backend.init(best, config), config), run_dir, config, vocab)


def write_samples_from(logits_fn: Source, run_dir: Path, config: Config, vocab: Vocab) -> str:
    """One greedy and two sampled texts from ``logits_fn``, saved to ``run_dir``/samples.txt."""
    blocks = []
    for i, prompt in enumerate(sample_prompts(vocab)):
        settings = SamplerSettings("greedy") if i == 0 else SamplerSettings(temperature=0.8, top_p=0.9, seed=i)
        text = generate_text(logits_fn, vocab, config.seq_len, prompt, SAMPLE_TOKENS, settings)
        blocks.append(f"--- prompt {prompt!r}, {settings.strategy}"
                      f"{'' if i == 0 else f', temperature 0.8, top-p 0.9, seed {i}'} ---\n{text}\n")
    samples = "\n".join(blocks)
    atomic_write_text(run_dir / SAMPLES, samples)
    return samples


def generation_source(backend: Backend, state: Any, config: Config) -> Source:
    """What the sampler reads a model through: windows of a window model, a ``Stateful`` poem model."""
    return ensemble_source(backend, [state], config)


def train_from_args(args: argparse.Namespace, backend: Backend, extra: dict[str, Any] | None = None) -> int:
    """What every ``python -m <framework>.train`` does after parsing its flags."""
    limit_threads(args.threads)
    if args.vocab_choice is not None and args.init_from is None:
        raise UsageError("--vocab-from-source and --new-vocab choose the vocabulary of an --init-from run; "
                         "add --init-from DIR, or drop them")
    check_search_flags(args)
    config = config_from_args(args, extra)
    run_dir = Path(args.out or f"runs/{backend.framework}-{config.model}")
    if args.recipe in SEARCHED:
        return _search_and_train(args, backend, config, run_dir)
    result = train(config, backend, run_dir, resume=args.resume, init_from=args.init_from,
                   overwrite=args.overwrite, quiet=args.quiet, given=given_flags(args),
                   vocab_choice=args.vocab_choice)
    return result.exit_code


def _search_and_train(args: argparse.Namespace, backend: Backend, base: Config, run_dir: Path) -> int:
    """``--recipe auto``: the search on the run's validation poems (``wordrnn.run.search``), then the chosen
    configuration trained into the same folder; ``--resume`` continues whichever of the two was stopped."""
    from wordrnn.run.search import Budget, check_search_folder, search_then_config

    if args.init_from is not None:
        raise UsageError("--recipe auto searches the model's size and depth, and --init-from fixes them to the "
                         "source run's; drop one of the two")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite replaces it; choose one")
    check_search_folder(run_dir, resume=args.resume, overwrite=args.overwrite)
    if not args.resume and not args.overwrite and holds_epoch(run_dir):
        raise UsageError(f"{run_dir} already holds a run; pass --overwrite to replace it, or choose another --out")
    dataset = load_dataset(**base.dataset_args())
    config, searched = search_then_config(base, backend, dataset, run_dir, explicit_flags(args), args.search_space,
                                          Budget(args.search_trials, args.search_epochs), resume=args.resume,
                                          overwrite=args.overwrite, quiet=args.quiet)
    if config is None:
        done = searched.record["trials_done"]
        print(f"\ninterrupted during the search; {run_dir} keeps its {plural(done, 'finished trial')}. "
              f"Continue with --resume --out {run_dir}", file=sys.stderr)
        return INTERRUPTED_EXIT
    result = train(config, backend, run_dir, resume=args.resume and holds_epoch(run_dir), overwrite=args.overwrite,
                   quiet=args.quiet, dataset=dataset, given=given_flags(args))
    return result.exit_code

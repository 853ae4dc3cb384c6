"""The one training loop. Every framework supplies a ``Backend``; this does the rest.

Per epoch: seeded batches, ``backend.train_step`` with a progress bar, the
NaN guard, evaluation on the validation windows (in NumPy, from logits), a
line of ``metrics.jsonl``, the best weights, and a checkpoint for exact
``--resume``. At the end: samples. Ctrl-C leaves the last complete epoch
saved.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from data.batches import batch_indices, num_batches
from data.dataset import Dataset, load_dataset
from data.vocab import Vocab
from wordrnn.core.backend import Backend
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.flags import config_from_args
from wordrnn.core.metrics import evaluate
from wordrnn.core.params import Params, init_params
from wordrnn.core.sampling import SamplerSettings
from wordrnn.core.threads import limit_threads
from wordrnn.run.folder import (
    CHECKPOINT,
    CONFIG,
    SAMPLES,
    VOCAB,
    WEIGHTS,
    atomic_write_text,
    load_arrays,
    load_run,
    read_metrics,
    save_arrays,
    save_params,
    write_config,
    write_metrics,
)
from wordrnn.run.generation import generate_text

SAMPLE_PROMPTS = ("the sea", "my love", "the night")
SAMPLE_TOKENS = 40
LOSS_SYNC_EVERY = 20  # steps between host syncs of the running loss (lets async frameworks run ahead)
INTERRUPTED_EXIT = 130


class Diverged(UsageError):
    """The training loss became NaN or infinite."""


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


def count_params(params: Params) -> int:
    return int(sum(p.size for p in params.values()))


def train(config: Config, backend: Backend, run_dir: str | Path, *, resume: bool = False,
          init_from: str | Path | None = None, overwrite: bool = False, quiet: bool = False,
          dataset: Dataset | None = None, write_samples: bool = True) -> RunResult:
    """Train ``backend`` on the data ``config`` names and write the run folder ``run_dir``."""
    run_dir = Path(run_dir)
    # With several JAX processes (multi-host data parallelism) every process trains; only the first writes.
    primary = getattr(backend, "process_index", 0) == 0
    quiet = quiet or not primary
    say = (lambda *a: None) if quiet else print
    start_epoch, step, best = 0, 0, {"val_loss": math.inf, "epoch": 0, "bad_epochs": 0}
    rows: list[dict[str, Any]] = []
    checkpoint_arrays: dict[str, np.ndarray] | None = None

    if resume and init_from is not None:
        raise UsageError("--resume continues a run from its own weights; drop --init-from")
    if resume:
        config, vocab, checkpoint_arrays, counters = _read_checkpoint(run_dir, config)
        start_epoch, step, best = counters["epoch"], counters["step"], counters["best"]
        rows = [r for r in read_metrics(run_dir) if r["epoch"] <= start_epoch]
    else:
        if (run_dir / CONFIG).exists() and not overwrite:
            raise UsageError(f"{run_dir} already holds a run; pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --out")
        vocab = None
        if init_from is not None:
            source = load_run(init_from)
            config = _adopt_model(config, source.config)
            vocab = source.vocab
    if dataset is None:
        dataset = load_dataset(config, vocab)
    config.vocab_size = len(dataset.vocab)

    if checkpoint_arrays is not None:
        params = {k[len("param."):]: v for k, v in checkpoint_arrays.items() if k.startswith("param.")}
    elif init_from is not None:
        params = source.params
    else:
        params = init_params(config)
    state = backend.init(params, config)
    if checkpoint_arrays is not None:
        opt = {k: v for k, v in checkpoint_arrays.items() if not k.startswith("param.")}
        state = backend.load_optimizer_arrays(state, opt)
    elif primary:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config, backend.framework)
        atomic_write_text(run_dir / VOCAB, dataset.vocab.to_json() + "\n")
        for stale in (WEIGHTS, CHECKPOINT, SAMPLES, "metrics.jsonl"):
            (run_dir / stale).unlink(missing_ok=True)

    say(f"{backend.framework} {config.model}: vocabulary {config.vocab_size}, "
        f"{count_params(params):,} parameters, {len(dataset.train_x)} training / {len(dataset.val_x)} "
        f"validation windows, validation OOV {dataset.val_oov_rate:.1%} -> {run_dir}")
    result = RunResult(run_dir, config, rows, best["epoch"])
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            state, step, row = _train_epoch(backend, state, dataset, config, epoch, step, quiet)
            row.update(evaluate(lambda xb, s=state: backend.logits(s, xb), dataset.val_x, dataset.val_y))
            row["eval_seconds"] = time.perf_counter() - row.pop("_eval_start")
            row["val_oov_rate"] = dataset.val_oov_rate
            if row["val_loss"] < best["val_loss"]:
                best = {"val_loss": row["val_loss"], "epoch": epoch, "bad_epochs": 0}
                if primary:
                    save_params(run_dir / WEIGHTS, backend.canonical(state))
            else:
                best["bad_epochs"] += 1
            row["best_epoch"] = best["epoch"]
            rows.append(row)
            if primary:
                write_metrics(run_dir, rows)
                _write_checkpoint(run_dir, backend, state, epoch, step, best)
            say(_epoch_line(row, config.epochs))
            if config.patience and best["bad_epochs"] >= config.patience:
                say(f"no better validation loss for {config.patience} epochs: stopping early")
                break
    except KeyboardInterrupt:
        done = rows[-1]["epoch"] if rows else 0
        print(f"\ninterrupted; {run_dir} holds {done} complete epoch(s). "
              f"Continue with --resume --out {run_dir}", file=sys.stderr)
        result.exit_code = INTERRUPTED_EXIT
        return result
    result.best_epoch = best["epoch"]
    if write_samples and primary and best["epoch"]:
        result.samples = write_run_samples(backend, run_dir, config, dataset.vocab)
        say(result.samples)
    return result


def _train_epoch(backend: Backend, state: Any, dataset: Dataset, config: Config, epoch: int, step: int,
                 quiet: bool) -> tuple[Any, int, dict[str, Any]]:
    """One pass over the training windows; returns the state, the global step and the epoch's row."""
    n = len(dataset.train_x)
    bar = tqdm(total=num_batches(n, config.batch_size), desc=f"epoch {epoch}/{config.epochs}",
               unit="batch", disable=quiet, leave=False, file=sys.stderr)
    pending: list[tuple[int, Any, int]] = []  # (step, loss not yet on the host, batch size)
    total, seen = 0.0, 0
    started = time.perf_counter()

    def sync() -> None:
        nonlocal total, seen
        for at, loss, size in pending:
            value = float(loss)
            if not math.isfinite(value):
                raise Diverged(f"the training loss became {value} at step {at} (epoch {epoch}); the last "
                               "complete epoch is kept in the run folder. Lower --lr or set --clip")
            total += value * size
            seen += size
        pending.clear()
        bar.set_postfix(loss=f"{total / max(seen, 1):.3f}", refresh=False)

    with bar:
        for idx in batch_indices(n, config.batch_size, config.seed, epoch):
            state, loss = backend.train_step(state, dataset.train_x[idx], dataset.train_y[idx], step)
            pending.append((step, loss, len(idx)))
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


def _write_checkpoint(run_dir: Path, backend: Backend, state: Any, epoch: int, step: int,
                      best: dict[str, Any]) -> None:
    arrays = {f"param.{k}": v for k, v in backend.canonical(state).items()}
    arrays.update(backend.optimizer_arrays(state))
    save_arrays(run_dir / CHECKPOINT, arrays, {"epoch": epoch, "step": step, "best": best})


def _read_checkpoint(run_dir: Path, requested: Config) -> tuple[Config, Vocab, dict[str, np.ndarray], dict]:
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / CONFIG).is_file():
        raise UsageError(f"nothing to resume in {run_dir}: no complete epoch was saved there; "
                         "train without --resume first")
    run = load_run(run_dir)
    config = run.config
    config.epochs, config.patience = requested.epochs, requested.patience
    config.extra = {**config.extra, **requested.extra}
    arrays, counters = load_arrays(run_dir / CHECKPOINT)
    if counters["epoch"] >= config.epochs:
        raise UsageError(f"{run_dir} has already trained {counters['epoch']} epochs; "
                         f"ask for more with --epochs N (N > {counters['epoch']})")
    return config, run.vocab, arrays, counters


def _adopt_model(config: Config, source: Config) -> Config:
    """--init-from: the model shape and vocabulary settings come from the source run."""
    for name in ("model", "hidden_size", "embed_dim", "tokenizer", "min_freq"):
        setattr(config, name, getattr(source, name))
    return config


def write_run_samples(backend: Backend, run_dir: Path, config: Config, vocab: Vocab) -> str:
    """Generate from the best weights: one greedy and two sampled texts, saved to samples.txt."""
    best, _ = load_arrays(run_dir / WEIGHTS)
    state = backend.init(best, config)
    logits_fn = lambda x: backend.logits(state, x)  # noqa: E731
    blocks = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        settings = SamplerSettings("greedy") if i == 0 else SamplerSettings(temperature=0.8, top_p=0.9, seed=i)
        text = generate_text(logits_fn, vocab, config.seq_len, prompt, SAMPLE_TOKENS, settings)
        blocks.append(f"--- prompt {prompt!r}, {settings.strategy}"
                      f"{'' if i == 0 else f', temperature 0.8, top-p 0.9, seed {i}'} ---\n{text}\n")
    samples = "\n".join(blocks)
    atomic_write_text(run_dir / SAMPLES, samples)
    return samples


def train_from_args(args: argparse.Namespace, backend: Backend, extra: dict[str, Any] | None = None) -> int:
    """What every ``python -m <framework>.train`` does after parsing its flags."""
    limit_threads(args.threads)
    config = config_from_args(args, extra)
    run_dir = Path(args.out or f"runs/{backend.framework}-{config.model}")
    result = train(config, backend, run_dir, resume=args.resume, init_from=args.init_from,
                   overwrite=args.overwrite, quiet=args.quiet)
    return result.exit_code

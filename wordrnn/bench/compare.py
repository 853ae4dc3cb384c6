"""``python -m wordrnn.bench.compare``: every implementation of both models, side by side, in one report.

Trains NumPy, PyTorch and JAX/Flax x one-hot and embedding on the benchmark
configuration (same data, split, initial weights and batches), the quality
embedding RNN (``RECIPE_RUN``) and the Kneser-Ney baseline, then writes the report
folder (``wordrnn.bench.report``): REPORT.md, results.json, results.csv,
loss_curves.png, form.png, the run folders (each with its samples.txt), and the best run
exported to ONNX with a sample generated from it by onnxruntime.

An existing report folder is replaced only with ``--overwrite``, and then its
old report files are removed before anything is trained: a rerun stopped
half-way never leaves an old REPORT.md beside new run folders.

Only light modules are imported at the top: thread pools are sized when
NumPy, PyTorch and JAX load, and ``--threads`` must be applied before that.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from wordrnn.bench.machine import describe_machine, limit_threads
from wordrnn.core.config import CONTEXTS, MODELS, Config
from wordrnn.core.errors import INTERRUPTED_EXIT, CommandParser, UsageError, cli, plural
from wordrnn.core.flags import add_data_flags, add_threads_flag, add_training_flags, config_from_args
from wordrnn.core.paths import REPORT_RUNS
from wordrnn.core.recipes import recipe
from wordrnn.frameworks import IMPLS, parse_names

DEFAULT_OUT = "reports/latest"  # what `make demo` writes
# What a report folder holds besides its run folders: removed first when a report is replaced.
REPORT_FILES = ("REPORT.md", "results.json", "results.csv", "loss_curves.png", "form.png", "model.onnx")
# 6 epochs show where the plain RNNs start to overfit and fit the 4-minute budget on a 2-core CPU
# with --threads 1 (docs/PERFORMANCE.md has the measured time).
DEFAULT_EPOCHS = 6

# The recipe row of the report is one member of the quality recipe (``quality-single``: wordrnn.core.recipes,
# docs/QUALITY.md), so that make demo stays within its minutes: the recipe's three members would take three times
# as long. One configuration for every corpus, with its own early stopping, trained by PyTorch (the fastest for
# its LSTM on a CPU). The windows are the comparison's (--seq-len), so that every row is scored on the same targets.
RECIPE_RUN: dict[str, Any] = {k: v for k, v in recipe("quality-single").items() if k != "seq_len"}
RECIPE_IMPL = "torch"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m wordrnn.bench.compare",
        description="Train the NumPy, PyTorch and JAX/Flax RNNs (one-hot and embedding) on the same data, "
        "initial weights and batches, plus the quality recipe (an LSTM) and a Kneser-Ney baseline, and write a report "
        "(REPORT.md, results.json, results.csv, loss_curves.png, form.png, the best run exported to ONNX).",
    )
    add_data_flags(parser)
    add_training_flags(parser)
    g = parser.add_argument_group("model sizes (both models are trained)")
    g.add_argument("--hidden-size", type=int, default=Config.hidden_size,
                   help="RNN state size H (default: %(default)s)")
    g.add_argument("--embed-dim", type=int, default=Config.embed_dim,
                   help="embedding size E (default: %(default)s)")
    g.add_argument("--context", default=Config.context, choices=CONTEXTS,
                   help="the context of the six lab runs: window (the lab's) or poem; the recipe row reads whole "
                   "poems either way (default: %(default)s)")
    g.add_argument("--bptt", type=int, default=Config.bptt,
                   help="poem context: tokens per truncated-BPTT chunk of the lab runs (default: %(default)s)")
    g = parser.add_argument_group("comparison")
    g.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="report folder (default: %(default)s)")
    g.add_argument("--overwrite", action="store_true", help="replace the report already in --out")
    g.add_argument("--impls", default=",".join(IMPLS), help="implementations to train (default: %(default)s)")
    g.add_argument("--models", default=",".join(MODELS), help="models to train (default: %(default)s)")
    g.add_argument("--no-recipe", action="store_true",
                   help="skip the quality recipe's run (one member of it; docs/QUALITY.md)")
    g.add_argument("--no-export", action="store_true", help="skip the ONNX export of the best run")
    g.add_argument("--prompt", default="the sea", help="prompt of every sample (default: %(default)r)")
    add_threads_flag(g)
    g.add_argument("--quiet", action="store_true", help="one line per run instead of progress bars and epochs")
    parser.set_defaults(epochs=DEFAULT_EPOCHS, model="embedding", cell="rnn")
    return parser


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    impls = parse_names(args.impls, IMPLS, "--impls")
    models = parse_names(args.models, MODELS, "--models")
    base = config_from_args(args)
    if base.ensemble > 1:  # the lab's rows are single models, framework against framework
        raise UsageError(f"--ensemble {base.ensemble}: compare sets single models of each framework side by side; "
                         "measure an ensemble with python -m wordrnn.bench.quality --ensemble N")
    recipe_runs = {} if args.no_recipe else {"recipe": {"epochs": base.epochs, **RECIPE_RUN}}
    for run in recipe_runs.values():
        replace(base, **run).validate()
    out = Path(args.out)
    check_report_folder(out, args.overwrite)
    limit_threads(args.threads)

    from data.dataset import load_dataset
    from wordrnn.bench.lab import dataset_summary, run_comparison
    from wordrnn.bench.report import write_report
    from wordrnn.run.generation import prompt_to_ids

    started = time.perf_counter()
    dataset = load_dataset(**base.dataset_args())
    base.vocab_size = len(dataset.vocab)
    prompt_to_ids(args.prompt, dataset.vocab)  # an unusable prompt fails now, not after training
    clear_report(out)
    summary = dataset_summary(dataset)
    print(f"corpus {dataset.describe_source()}: vocabulary {summary['vocab_size']}, {summary['train_windows']:,} "
          f"training / {summary['val_windows']:,} validation windows; {plural(base.epochs, 'epoch')}; "
          f"report -> {out}", flush=True)
    try:
        entries, extras = run_comparison(base, dataset, out, impls, models, recipe_runs, RECIPE_IMPL, args.prompt,
                                         args.quiet, export=not args.no_export)
    except KeyboardInterrupt:
        print(f"\ninterrupted: no report written; {out} holds only the run folders trained so far. "
              "Run the same command again to start afresh", file=sys.stderr)
        return INTERRUPTED_EXIT
    command = shlex.join(["python", "-m", "wordrnn.bench.compare", *(sys.argv[1:] if argv is None else argv)])
    write_report(out, entries, base, extras, summary, describe_machine(args.threads), command, args.prompt,
                 time.perf_counter() - started)
    print(f"wrote {out / 'REPORT.md'}, results.json, results.csv, loss_curves.png, form.png "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


def check_report_folder(out: Path, overwrite: bool) -> None:
    """Before any work: --out must be a folder (or not exist), and an existing report needs --overwrite."""
    from wordrnn.run.folder import check_out_dir

    check_out_dir(out)
    if not out.is_dir() or overwrite or not any(out.iterdir()):
        return
    if any((out / name).exists() for name in REPORT_FILES):
        raise UsageError(f"{out} already holds a report; pass --overwrite to replace it, or choose another --out")
    if sorted(p.name for p in out.iterdir()) != [REPORT_RUNS]:
        raise UsageError(f"{out} holds files that are not a report of this command; choose another --out, "
                         "or pass --overwrite to write the report there anyway")
    # Only the run folders of a comparison stopped before its report: nothing finished to protect.
    print(f"note: {out} holds the runs of an interrupted comparison and no report; starting afresh",
          file=sys.stderr)


def clear_report(out: Path) -> None:
    """Remove an old report's files, so the folder never shows a report beside other runs' folders."""
    out.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m wordrnn.bench.speed``: training and generation speed of every implementation, side by side.

One process measures, one after another on the same machine and the same
batches: training throughput (examples/s) of NumPy, PyTorch eager and JAX/Flax
(jitted) for both models, relative to PyTorch; greedy generation at batch 1
with onnxruntime, PyTorch, Flax (jitted) and NumPy, relative to PyTorch; and
the achieved GFLOP/s of each training step beside a float32 matmul peak
measured here. Medians of repeats; warm-ups (compilation included) are timed
apart. Shared machines are noisy: read the ratios, not the absolute figures.

Only light modules are imported at the top, so ``--threads`` is applied before
NumPy, PyTorch and JAX start their thread pools.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from wordrnn.bench.backends import IMPLS, parse_names
from wordrnn.bench.machine import describe_machine, limit_threads
from wordrnn.core.config import MODELS, Config
from wordrnn.core.errors import UsageError, cli
from wordrnn.core.flags import add_data_flags, data_config

RUNTIMES = ("onnxruntime", "torch", "flax", "numpy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wordrnn.bench.speed",
        description="Measure training throughput and generation speed of the NumPy, PyTorch and JAX/Flax "
        "implementations (and onnxruntime for generation) in one process, as ratios to PyTorch.",
    )
    add_data_flags(parser)
    g = parser.add_argument_group("model")
    for flag, default, what in (("--batch-size", Config.batch_size, "windows per step"),
                                ("--hidden-size", Config.hidden_size, "RNN state size H"),
                                ("--embed-dim", Config.embed_dim, "embedding size E")):
        g.add_argument(flag, type=int, default=default, help=f"{what} (default: %(default)s)")
    g = parser.add_argument_group("measurement")
    g.add_argument("--steps", type=int, default=40,
                   help="training steps per timed repeat, per implementation and model (default: %(default)s)")
    g.add_argument("--tokens", type=int, default=100,
                   help="generated tokens per timed repeat, per runtime and model (default: %(default)s)")
    g.add_argument("--repeats", type=int, default=3,
                   help="timed repeats; the median is reported (default: %(default)s)")
    g.add_argument("--impls", default=",".join(IMPLS), help="training implementations (default: %(default)s)")
    g.add_argument("--runtimes", default=",".join(RUNTIMES), help="generation runtimes (default: %(default)s)")
    g.add_argument("--models", default=",".join(MODELS), help="models (default: %(default)s)")
    g.add_argument("--threads", type=int, default=1,
                   help="compute threads for every library, the same budget for each (0: each library's "
                   "default; default: %(default)s)")
    g.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    return parser


def _ratio(value: float, reference: float | None) -> float | None:
    return value / reference if reference else None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def run_speed(args: argparse.Namespace, base: Config, impls: list[str], runtimes: list[str],
              models: list[str]) -> dict[str, Any]:
    from data.dataset import load_dataset
    from wordrnn.bench import timing
    from wordrnn.core.params import init_params

    dataset = load_dataset(**base.dataset_args())
    base.vocab_size = len(dataset.vocab)
    print(f"vocabulary {base.vocab_size}, batch {base.batch_size}, {args.steps} steps x {args.repeats} repeats, "
          f"{args.tokens} tokens x {args.repeats} repeats, threads {args.threads or 'default'}", flush=True)

    peak = timing.matmul_gflops(args.repeats)
    peak_gflops = max(peak.values())
    print("float32 1024x1024 matmul: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.items()), flush=True)

    train_rows: list[dict[str, Any]] = []
    for model in models:
        config = replace(base, model=model)
        runs, warmups = {}, {}
        for impl in impls:
            runs[impl], warmups[impl], batch = timing.prepare_training(impl, config, dataset)  # same for all
            print(f"train    {impl:<11} {model:<9} warm-up {warmups[impl]:.2f} s", flush=True)
        steps = {impl: (lambda run=run: run(args.steps)) for impl, run in runs.items()}
        seconds = timing.interleaved_medians(steps, args.repeats)
        for impl in impls:
            examples_per_s = args.steps * batch / seconds[impl]
            gflops = timing.train_flops_per_example(config) * examples_per_s / 1e9
            train_rows.append({"impl": impl, "model": model, "examples_per_s": examples_per_s, "batch": batch,
                               "step_ms": 1e3 * seconds[impl] / args.steps, "warmup_seconds": warmups[impl],
                               "gflops": gflops, "fraction_of_peak": gflops / peak_gflops})
    for row in train_rows:
        torch_row = next((r for r in train_rows if r["impl"] == "torch" and r["model"] == row["model"]), None)
        # seconds per epoch over torch's: torch's throughput over this one
        row["time_ratio_vs_torch"] = _ratio(torch_row["examples_per_s"], row["examples_per_s"]) if torch_row else None

    generate_rows: list[dict[str, Any]] = []
    for model in models:
        config = replace(base, model=model)
        prompt = [int(i) for i in dataset.val_x[0]]
        fns = timing.logits_functions(config, init_params(config), runtimes, args.threads)
        runs, warmups = {}, {}
        for runtime, fn in fns.items():
            runs[runtime], warmups[runtime] = timing.prepare_generation(fn, prompt, args.tokens, config.seq_len)
            print(f"generate {runtime:<11} {model:<9} warm-up {warmups[runtime]:.2f} s", flush=True)
        seconds = timing.interleaved_medians(runs, args.repeats)
        reference = runs["torch"]() if "torch" in runs else None
        for runtime, run in runs.items():
            tokens_per_s = args.tokens / seconds[runtime]
            generate_rows.append({"runtime": runtime, "model": model, "tokens_per_s": tokens_per_s,
                                  "ms_per_token": 1e3 * seconds[runtime] / args.tokens,
                                  "warmup_seconds": warmups[runtime],
                                  "same_tokens_as_torch": None if reference is None else run() == reference})
    for row in generate_rows:
        torch_row = next((r for r in generate_rows if r["runtime"] == "torch" and r["model"] == row["model"]), None)
        row["speedup_vs_torch"] = _ratio(row["tokens_per_s"], torch_row["tokens_per_s"]) if torch_row else None

    return {
        "train": train_rows,
        "generate": generate_rows,
        "matmul_gflops": peak,
        "settings": {"steps": args.steps, "tokens": args.tokens, "repeats": args.repeats},
        "config": base.to_dict(),
        "machine": describe_machine(args.threads),
    }


def print_summary(results: dict[str, Any]) -> None:
    print("\ntraining (time per epoch relative to PyTorch eager; lower is faster)")
    print(f"  {'impl':<7}{'model':<10}{'examples/s':>11}{'vs torch':>10}{'GFLOP/s':>9}{'of peak':>9}")
    for r in results["train"]:
        print(f"  {r['impl']:<7}{r['model']:<10}{r['examples_per_s']:>11.0f}{_fmt(r['time_ratio_vs_torch'], '.2f'):>10}"
              f"{r['gflops']:>9.2f}{r['fraction_of_peak']:>9.1%}")
    print("generation, batch 1, greedy (speed-up over PyTorch; higher is faster)")
    print(f"  {'runtime':<12}{'model':<10}{'tokens/s':>9}{'speed-up':>10}  same tokens")
    for r in results["generate"]:
        same = {True: "yes", False: "NO", None: "—"}[r["same_tokens_as_torch"]]
        print(f"  {r['runtime']:<12}{r['model']:<10}{r['tokens_per_s']:>9.0f}{_fmt(r['speedup_vs_torch'], '.2f'):>10}"
              f"  {same}")


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("steps", "tokens", "repeats", "batch_size", "hidden_size", "embed_dim"):
        if getattr(args, flag) <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number, got {getattr(args, flag)}")
    base = data_config(args, batch_size=args.batch_size, hidden_size=args.hidden_size, embed_dim=args.embed_dim)
    impls = parse_names(args.impls, IMPLS, "--impls")
    runtimes = parse_names(args.runtimes, RUNTIMES, "--runtimes")
    models = parse_names(args.models, MODELS, "--models")
    limit_threads(args.threads)
    results = run_speed(args, base, impls, runtimes, models)
    print_summary(results)
    if args.json:
        from wordrnn.run.folder import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

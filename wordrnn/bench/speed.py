"""``python -m wordrnn.bench.speed``: training and generation speed of every implementation, side by side,
beside the fastest the machine could go.

One process measures, one after another on the same machine and the same
batches: training throughput (examples/s) of NumPy, PyTorch eager and JAX/Flax
(jitted), relative to PyTorch; greedy generation at batch 1 with onnxruntime,
PyTorch, Flax (jitted) and NumPy, relative to PyTorch. Each row also carries
an estimated lower bound on its step time (``wordrnn.bench.roofline``: the
step's FLOPs against a float32 matmul peak and its bytes against a copy
bandwidth, both measured in this run) and the fraction of it achieved.

``--precision bfloat16`` (or ``both``) adds PyTorch's and JAX's mixed-precision rows (``--precision`` of the
trainers), each against the bfloat16 product's peak measured in this run, with its speed over the same
implementation's float32 row where both were measured. Every training row carries its peak memory
(``wordrnn.bench.peak_memory``: the resident set on the CPU, the device's peak on a GPU).

Two contexts (``--context``): ``window`` (a batch of windows, the last step scored) and ``poem``
(a chunk of ``--batch-size`` streams x ``--bptt`` tokens, the state carried from chunk to chunk and
every position scored: training tokens per second, the limit counted for the chunk). Generation is
measured in the window context only.

Two sizes: ``benchmark`` (the corpus and configuration of docs/DESIGN.md) and
``large`` (a user's size: a seeded synthetic corpus, ``wordrnn.bench.synthetic``);
both models and every cell. ``--epoch-large`` times one whole epoch of the
large corpus per implementation instead. Medians of interleaved repeats;
warm-ups (compilation included) are timed apart. Shared machines are noisy:
read the ratios, not the absolute figures.

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

from wordrnn.core.errors import start_command
from wordrnn.core.hugepages import exec_with_huge_pages

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line
    exec_with_huge_pages()  # glibc reads its tunables at start: before the imports, which the new process repeats

from wordrnn.bench.machine import describe_machine, limit_threads  # noqa: E402
from wordrnn.bench.synthetic import LARGE, SyntheticSize, check_size  # noqa: E402
from wordrnn.core.cells import CELLS  # noqa: E402
from wordrnn.core.config import CONTEXTS, MODELS, PRECISIONS, Config  # noqa: E402
from wordrnn.core.errors import CommandParser, UsageError, cli  # noqa: E402
from wordrnn.core.flags import add_data_flags, add_threads_flag, data_config  # noqa: E402
from wordrnn.core.hugepages import tunable_set  # noqa: E402
from wordrnn.core.layout import layout_of  # noqa: E402
from wordrnn.core.paths import check_writable  # noqa: E402
from wordrnn.frameworks import DEVICES, IMPLS, parse_names, resolve_device  # noqa: E402

RUNTIMES = ("onnxruntime", "torch", "flax", "numpy")
SIZES = ("benchmark", "large")
CPU_ONLY = ("numpy", "onnxruntime")  # these run on the CPU whatever --device says
LIMIT_REPEATS = 10
LINEAR_SCAN_FORMS = ("auto", "parallel", "sequential")  # jaxmodels.scan.FORMS, without importing JAX here
# A library whose bfloat16 product runs this many times slower than its float32 one has no bfloat16 kernel on this
# device (PyTorch on a CPU without AVX-512: 0.16 against 21 GFLOP/s, docs/PERFORMANCE.md): its rows would take
# minutes and say only that, so they are left out, and a line says so
EMULATION_SLOWDOWN = 4.0


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m wordrnn.bench.speed",
        description="Measure training throughput and generation speed of the NumPy, PyTorch and JAX/Flax "
        "implementations (and onnxruntime for generation) in one process, as ratios to PyTorch and as a fraction "
        "of the machine's estimated limit, at the benchmark size and at a user's size.",
    )
    add_data_flags(parser)
    g = parser.add_argument_group("model")
    g.add_argument("--context", choices=(*CONTEXTS, "both"), default="window",
                   help="window: batches of windows, the last step scored; poem: chunks of streams of whole "
                   "poems, the state carried, every position scored (default: %(default)s)")
    for flag, default, what in (("--batch-size", Config.batch_size, "windows per step, or streams per chunk"),
                                ("--bptt", Config.bptt, "tokens per chunk in the poem context"),
                                ("--hidden-size", Config.hidden_size, "RNN state size H"),
                                ("--embed-dim", Config.embed_dim, "embedding size E")):
        g.add_argument(flag, type=int, default=default, help=f"{what} (default: %(default)s)")
    g.add_argument("--layers", default="1",
                   help="stacked layers, comma-separated: one row each (default: %(default)s; 1,2 adds a 2-layer "
                   "row)")
    g.add_argument("--models", default=",".join(MODELS), help="models (default: %(default)s)")
    g.add_argument("--cells", default=",".join(CELLS), help="recurrent cells (default: %(default)s)")
    g.add_argument("--linear-scan", choices=LINEAR_SCAN_FORMS, default="auto",
                   help="JAX's mingru recurrence: the parallel scan, the sequential lax.scan, or auto (parallel on "
                   "a GPU/TPU, sequential on the CPU; jaxmodels.scan) (default: %(default)s)")
    add_precision_flag(g, "float32")
    g = parser.add_argument_group("sizes")
    g.add_argument("--size", choices=(*SIZES, "both"), default="both",
                   help="benchmark: the corpus (--data) and docs/DESIGN.md's configuration; large: a seeded "
                   "synthetic corpus of a user's size (default: %(default)s)")
    g.add_argument("--large-vocab", type=int, default=LARGE.vocab_size,
                   help="vocabulary of the large size (default: %(default)s)")
    g.add_argument("--large-tokens", type=int, default=LARGE.train_tokens,
                   help="training tokens of the large size (default: %(default)s)")
    g = parser.add_argument_group("measurement")
    g.add_argument("--steps", type=int, default=40,
                   help="training steps per timed repeat, per implementation, model and cell (default: %(default)s)")
    g.add_argument("--tokens", type=int, default=100,
                   help="generated tokens per timed repeat, per runtime, model and cell (default: %(default)s)")
    g.add_argument("--repeats", type=int, default=3,
                   help="timed repeats; the median is reported (default: %(default)s)")
    g.add_argument("--impls", default=",".join(IMPLS), help="training implementations (default: %(default)s)")
    g.add_argument("--runtimes", default=",".join(RUNTIMES), help="generation runtimes (default: %(default)s)")
    g.add_argument("--device", choices=DEVICES, default="auto",
                   help="where PyTorch (--device) and JAX (--accelerator) run; NumPy and onnxruntime stay on the "
                   "CPU. auto: cuda if PyTorch sees a GPU, else cpu (default: %(default)s)")
    add_threads_flag(g)
    g.add_argument("--epoch-large", action="store_true",
                   help="instead of the tables, time one whole training epoch of the large corpus for each "
                   "implementation, model and cell selected")
    g.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    return parser


def add_precision_flag(group: argparse._ActionsContainer, default: str) -> None:
    """``--precision``: the trainers' precisions, or both side by side (bench.speed and bench.scaling)."""
    from wordrnn.core.config import precision_name

    group.add_argument("--precision", type=precision_name, choices=(*PRECISIONS, "both"), default=default,
                       help="float32, bfloat16 (PyTorch's and JAX's mixed precision, against the bfloat16 "
                       "product's peak; NumPy has none) or both, side by side (default: %(default)s)")


def precisions_of(args: argparse.Namespace) -> list[str]:
    return list(PRECISIONS) if args.precision == "both" else [args.precision]


def contenders_of(impls: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """(implementation, precision) pairs to measure: every implementation in float32, PyTorch and JAX in
    bfloat16 (the NumPy reference is float32/float64); a line names a pair left out."""
    pairs = [(impl, p) for p in precisions for impl in impls if p == "float32" or impl != "numpy"]
    if "bfloat16" in precisions and "numpy" in impls:
        print("numpy: no bfloat16 rows (the NumPy reference is float32, what bfloat16 is measured against)")
    return pairs


def contender_name(impl: str, precision: str) -> str:
    return impl if precision == "float32" else f"{impl} bf16"


def without_emulated(contenders: list[tuple[str, str]], devices: dict[str, str],
                     limits: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """``contenders`` less the bfloat16 ones whose library multiplies bfloat16 ``EMULATION_SLOWDOWN`` times slower
    than float32 on their device (each named in one line)."""
    kept = []
    for impl, precision in contenders:
        lim = limits.get(devices[impl], {})
        fast, slow = lim.get("matmul_gflops", {}).get(impl), lim.get("bfloat16_matmul_gflops", {}).get(impl)
        if precision == "bfloat16" and fast and slow and slow * EMULATION_SLOWDOWN < fast:
            print(f"{impl} bf16: left out: its bfloat16 product runs at {slow:.2f} GFLOP/s on {devices[impl]} "
                  f"against {fast:.1f} in float32 (no bfloat16 kernel here; docs/PERFORMANCE.md)", flush=True)
            continue
        kept.append((impl, precision))
    return kept


# -- set-up -----------------------------------------------------------------------------------------------


def check_args(args: argparse.Namespace) -> None:
    for flag in ("steps", "tokens", "repeats", "batch_size", "bptt", "hidden_size", "embed_dim"):
        if getattr(args, flag) <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number, got {getattr(args, flag)}")
    check_size(large_size(args))


def large_size(args: argparse.Namespace) -> SyntheticSize:
    return replace(LARGE, vocab_size=args.large_vocab, train_tokens=args.large_tokens)


def load_size(size: str, base: Config, args: argparse.Namespace) -> tuple[Config, Any]:
    """The configuration (vocabulary size filled in) and dataset of one size."""
    if size == "benchmark":
        from data.dataset import load_dataset

        dataset = load_dataset(**base.dataset_args())
    else:
        from wordrnn.bench.synthetic import synthetic_dataset

        dataset = synthetic_dataset(large_size(args), base.seq_len)
    return replace(base, vocab_size=len(dataset.vocab)), dataset


def variants(config: Config, models: list[str], cells: list[str], contexts: tuple[str, ...] = ("window",),
             layers: tuple[int, ...] = (1,)) -> list[Config]:
    """One configuration per context, model, cell and layer count."""
    return [replace(config, context=context, model=model, cell=cell, layers=n)
            for context in contexts for model in models for cell in cells for n in layers]


def parse_layers(text: str) -> tuple[int, ...]:
    """``--layers``: comma-separated positive layer counts."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise UsageError(f"--layers takes comma-separated positive whole numbers (1,2), got {text!r}")
    return counts


def measure_limits(device: str, configs: dict[str, Config], repeats: int, precisions: tuple[str, ...] = ("float32",)
                   ) -> dict[str, Any]:
    """The matmul peaks (float32, and bfloat16 where it is among ``precisions``) and copy bandwidths of
    ``device``: one bandwidth per working set (each of ``configs``, training and generation)."""
    from wordrnn.bench import roofline

    working = {f"{key}/{task}": roofline.working_set_bytes(config, training=task == "train")
               for key, config in configs.items() for task in ("train", "generate")}
    bandwidth = {key: roofline.copy_bandwidth_gbs(device, nbytes, repeats) for key, nbytes in working.items()}
    bfloat16 = roofline.matmul_peak_gflops(device, repeats, "bfloat16") if "bfloat16" in precisions else {}
    return roofline.Limits(device, roofline.matmul_peak_gflops(device, repeats), bandwidth, working,
                           bfloat16).to_dict()


def variant_key(size: str, variant: Config | dict[str, Any]) -> str:
    """The name of one size, model, cell and layer count (a configuration or a result row)."""
    return f"{size}/{variant_get(variant, 'model')}/{cell_label(variant)}"


def variant_get(variant: Config | dict[str, Any], key: str) -> Any:
    return variant.get(key) if isinstance(variant, dict) else getattr(variant, key)


def cell_label(variant: Config | dict[str, Any]) -> str:
    """The cell, and ``xL`` for a stack of L layers (``lstmx2``)."""
    layers = variant_get(variant, "layers") or 1
    return variant_get(variant, "cell") + (f"x{layers}" if layers > 1 else "")


def best_limits(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The higher of two measurements of each rate (taken before and after the timings): a limit is the best
    the machine did, and a shared machine's load comes and goes."""
    best = dict(first)
    for key in ("matmul_gflops", "bandwidth_gbs", "bfloat16_matmul_gflops"):
        best[key] = {k: max(v, second[key][k]) for k, v in first.get(key, {}).items()}
    best["peak_gflops"] = max(best["matmul_gflops"].values())
    if best["bfloat16_matmul_gflops"]:
        best["bfloat16_peak_gflops"] = max(best["bfloat16_matmul_gflops"].values())
    return best


def add_limits(rows: list[dict[str, Any]], limits: dict[str, dict[str, Any]], task: str, seconds_key: str) -> None:
    """Each row's estimate (its inputs, the lower bound, what bounds it) and the fraction of it achieved."""
    from wordrnn.bench.roofline import Work, peak_key

    for row in rows:
        lim = limits[row["device"]]
        peak = lim[peak_key(row.get("precision", "float32"))]
        bandwidth = lim["bandwidth_gbs"][f"{variant_key(row['size'], row)}/{task}"]
        work = Work(row["flops_per_step"], row["bytes_per_step"])
        seconds = row[seconds_key] / 1e3
        row.update(peak_gflops=peak, bandwidth_gbs=bandwidth, limit_ms=1e3 * work.seconds(peak, bandwidth),
                   bound=work.bound(peak, bandwidth), gflops=work.flops / seconds / 1e9,
                   fraction_of_peak=work.flops / seconds / 1e9 / peak,
                   limit_fraction=work.seconds(peak, bandwidth) / seconds)


# -- measuring ---------------------------------------------------------------------------------------------


def training_rows(size: str, config: Config, dataset: Any, contenders: list[tuple[str, str]],
                  args: argparse.Namespace, devices: dict[str, str]) -> list[dict[str, Any]]:
    """Every (implementation, precision)'s training speed and peak memory on one size, context, model and cell,
    measured side by side."""
    from wordrnn.bench import roofline, timing
    from wordrnn.bench.peak_memory import PeakTracker

    runs, warmups, memory = {}, {}, PeakTracker()
    for impl, precision in contenders:
        name = contender_name(impl, precision)
        run, warmups[name], batch = timing.prepare_training(impl, replace(config, precision=precision), dataset,
                                                            devices[impl])
        runs[name] = memory.wrap(name, impl, devices[impl], lambda run=run: run(args.steps))
        print(f"train    {size:<9} {config.context:<6} {name:<11} {config.model:<9} {cell_label(config):<6} "
              f"warm-up {warmups[name]:.2f} s", flush=True)
    seconds = timing.interleaved_medians(runs, args.repeats)
    poem = config.layout.carries_state
    work = (roofline.chunk_step_work(config, config.batch_size, config.bptt) if poem
            else roofline.train_step_work(config, batch))
    rows = []
    for impl, precision in contenders:
        name = contender_name(impl, precision)
        step_s = seconds[name] / args.steps
        rows.append({"impl": impl, "precision": precision, "context": config.context, "model": config.model,
                     "cell": config.cell, "layers": config.layers, "size": size, "device": devices[impl],
                     "examples_per_s": batch / step_s,
                     "unit": "tokens" if poem else "windows", "batch": batch, "step_ms": 1e3 * step_s,
                     "peak_memory_mb": memory.peaks[name] / 2**20, "warmup_seconds": warmups[name],
                     "flops_per_step": work.flops, "bytes_per_step": work.bytes})
    return rows


def generation_rows(size: str, config: Config, dataset: Any, runtimes: list[str], args: argparse.Namespace,
                    devices: dict[str, str]) -> list[dict[str, Any]]:
    """Every runtime's greedy generation speed (batch 1) on one size, model and cell, side by side."""
    from wordrnn.bench import roofline, timing
    from wordrnn.core.params import init_params

    prompt = [int(i) for i in dataset.val_x[0]]
    params = init_params(config)
    runs, warmups = {}, {}
    for runtime in runtimes:
        fn = timing.logits_functions(config, params, [runtime], args.threads, devices[runtime])[runtime]
        runs[runtime], warmups[runtime] = timing.prepare_generation(fn, prompt, args.tokens, config.seq_len)
        print(f"generate {size:<9} {runtime:<11} {config.model:<9} {cell_label(config):<6} "
              f"warm-up {warmups[runtime]:.2f} s", flush=True)
    seconds = timing.interleaved_medians(runs, args.repeats)
    reference = runs["torch"]() if "torch" in runs else None
    work = roofline.generate_token_work(config)
    rows = []
    for runtime, run in runs.items():
        token_s = seconds[runtime] / args.tokens
        rows.append({"runtime": runtime, "model": config.model, "cell": config.cell, "layers": config.layers,
                     "size": size,
                     "device": devices[runtime], "tokens_per_s": 1 / token_s, "ms_per_token": 1e3 * token_s,
                     "warmup_seconds": warmups[runtime],
                     "same_tokens_as_torch": None if reference is None else run() == reference,
                     "flops_per_step": work.flops, "bytes_per_step": work.bytes})
    return rows


def epoch_rows(config: Config, dataset: Any, impls: list[str], args: argparse.Namespace,
               devices: dict[str, str]) -> list[dict[str, Any]]:
    """One whole training epoch of the large corpus per implementation, one context, model and cell."""
    from wordrnn.bench import timing

    rows = []
    steps = len(timing.epoch_batches(dataset, config))
    name = f"epoch    large     {config.context:<6} {{impl:<11}} {config.model:<9} {config.cell:<4}"
    for impl in impls:
        print(name.format(impl=impl) + f" {steps} steps...", flush=True)
        seconds, cpu_seconds, warmup = timing.time_epoch(impl, config, dataset, devices[impl])
        print(name.format(impl=impl) + f" {seconds:.1f} s ({steps} steps, threads {args.threads or 'default'})",
              flush=True)
        rows.append({"impl": impl, "context": config.context, "model": config.model, "cell": config.cell,
                     "size": "large",
                     "device": devices[impl], "threads": args.threads or "library defaults", "seconds": seconds,
                     "cpu_seconds": cpu_seconds,
                     "steps": steps, "examples": len(dataset.train_x), "targets": _targets(config, dataset),
                     "warmup_seconds": warmup})
    return rows


def _targets(config: Config, dataset: Any) -> int:
    """Targets an epoch trains on: one a window, or every token of a poem but its last."""
    if config.layout.carries_state:
        return sum(len(ids) - 1 for ids in dataset.train_ids)
    return len(dataset.train_x)


def add_ratios(rows: list[dict[str, Any]], who: str, value: str, ratio: str, invert: bool) -> None:
    """``row[ratio]``: ``row[value]`` against the torch row of the same size, context, model and cell
    (``invert``: torch's over this one, so a time ratio comes from a throughput)."""
    def group(r: dict[str, Any]) -> tuple:
        return r["size"], r.get("context", "window"), r["model"], cell_label(r), r.get("precision", "float32")

    for row in rows:
        torch_row = next((r for r in rows if r[who] == "torch" and group(r) == group(row)), None)
        if torch_row is None or not torch_row[value] or not row[value]:
            row[ratio] = None
        else:
            row[ratio] = torch_row[value] / row[value] if invert else row[value] / torch_row[value]


def add_float32_ratios(rows: list[dict[str, Any]]) -> None:
    """``row["vs_float32"]``: a bfloat16 row's examples/s over the float32 row of the same implementation, size,
    context, model and cell (None where that was not measured; 1 for a float32 row)."""
    def group(r: dict[str, Any]) -> tuple:
        return r["impl"], r["size"], r["context"], r["model"], cell_label(r)

    for row in rows:
        base = next((r for r in rows if r["precision"] == "float32" and group(r) == group(row)), None)
        row["vs_float32"] = None if base is None else row["examples_per_s"] / base["examples_per_s"]


def run_speed(args: argparse.Namespace, base: Config, impls: list[str], runtimes: list[str], models: list[str],
              cells: list[str], sizes: list[str], device: str, contexts: tuple[str, ...] = ("window",),
              layers: tuple[int, ...] = (1,), precisions: tuple[str, ...] = ("float32",)) -> dict[str, Any]:
    """Load each size, measure the machine, then every training and generation group; all rows, for the JSON."""
    devices = {name: "cpu" if name in CPU_ONLY else device for name in (*impls, *runtimes)}
    loaded = {size: load_size(size, base, args) for size in sizes}
    for size, (config, dataset) in loaded.items():
        print(f"{size}: vocabulary {config.vocab_size}, {len(dataset.train_x)} training windows, "
              f"batch {config.batch_size}, bptt {config.bptt} (poem context)", flush=True)
    configs = {variant_key(size, v): v for size, (config, _) in loaded.items()
               for v in variants(config, models, cells, layers=layers)}
    on = sorted(set(devices.values()))
    limits = {d: measure_limits(d, configs, LIMIT_REPEATS, precisions) for d in on}
    print_limits(limits, "before")
    contenders = without_emulated(contenders_of(impls, list(precisions)), devices, limits)
    print(f"{args.steps} steps x {args.repeats} repeats, {args.tokens} tokens x {args.repeats} repeats, "
          f"threads {args.threads or 'default'}, device {device}, "
          f"huge pages {'asked for' if tunable_set() else 'not asked for'}, mingru scan {args.linear_scan}",
          flush=True)

    results: dict[str, Any] = {"train": [], "generate": [], "epochs": []}
    for size, (config, dataset) in loaded.items():
        for variant in variants(config, models, cells, contexts, layers):
            if args.epoch_large:
                results["epochs"] += epoch_rows(variant, dataset, impls, args, devices)
                continue
            if contenders:
                results["train"] += training_rows(size, variant, dataset, contenders, args, devices)
            if runtimes and not variant.layout.carries_state:  # generation reads windows in both contexts' models
                results["generate"] += generation_rows(size, variant, dataset, runtimes, args, devices)
    if not args.epoch_large:
        after = {d: measure_limits(d, configs, LIMIT_REPEATS, precisions) for d in on}
        print_limits(after, "after")
        limits = {d: best_limits(limits[d], after[d]) for d in on}
        add_limits(results["train"], limits, "train", "step_ms")
        add_limits(results["generate"], limits, "generate", "ms_per_token")
    add_ratios(results["train"], "impl", "examples_per_s", "time_ratio_vs_torch", invert=True)
    add_float32_ratios(results["train"])
    add_ratios(results["generate"], "runtime", "tokens_per_s", "speedup_vs_torch", invert=False)
    return {
        **results,
        "limits": limits,
        "matmul_gflops": limits.get("cpu", next(iter(limits.values())))["matmul_gflops"],
        "estimate": "limit = max(flops / (peak GFLOP/s), bytes / (bandwidth GB/s)) per step; limit_fraction = "
                    "limit / achieved step time (wordrnn.bench.roofline says what is counted)",
        "sizes": {size: {"vocab_size": config.vocab_size, "train_windows": len(dataset.train_x),
                         "source": str(dataset.source) if dataset.source else "synthetic"}
                  for size, (config, dataset) in loaded.items()},
        "settings": {"steps": args.steps, "tokens": args.tokens, "repeats": args.repeats, "device": device,
                     "threads": args.threads, "contexts": list(contexts), "bptt": base.bptt,
                     "batch_size": base.batch_size, "linear_scan": args.linear_scan, "precisions": list(precisions)},
        "config": base.to_dict(),
        "machine": describe_machine(args.threads),
    }


# -- printing ----------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def print_limits(limits: dict[str, dict[str, Any]], when: str) -> None:
    """The peak, and the range of copy bandwidths over the working sets of each size and task."""
    for d, lim in limits.items():
        ranges: dict[str, list[float]] = {}
        for key, gbs in lim["bandwidth_gbs"].items():
            size, _, _, task = key.split("/")
            ranges.setdefault(f"{size} {task}", []).append(gbs)
        bfloat16 = (f", bfloat16 matmul peak {lim['bfloat16_peak_gflops']:.1f} GFLOP/s"
                    if "bfloat16_peak_gflops" in lim else "")
        print(f"{d}, {when} the timings: float32 matmul peak {lim['peak_gflops']:.1f} GFLOP/s{bfloat16}; "
              "copy bandwidth "
              + ", ".join(f"{k} {min(v):.0f}-{max(v):.0f}" for k, v in ranges.items()) + " GB/s", flush=True)


def print_training(rows: list[dict[str, Any]], size: str, context: str = "window") -> None:
    streams = layout_of(context).carries_state
    shape = f"chunks of {rows[0]['batch']} tokens, every position scored" if streams else "batches of windows"
    print(f"\ntraining, {size} size, {context} context ({shape}; time relative to PyTorch eager of the same "
          "precision, lower is faster; vs fp32: speed over the same implementation's float32 row; of limit: "
          "estimated lower bound / achieved step time, against the row's precision's peak; peak MB: resident set "
          "on the CPU, the device's peak on a GPU)")
    per_s = "tokens/s" if streams else "examples/s"
    print(f"  {'impl':<7}{'prec':<6}{'model':<10}{'cell':<6}{per_s:>11}{'vs torch':>10}{'vs fp32':>9}{'step ms':>9}"
          f"{'limit ms':>10}{'of limit':>10}{'peak MB':>9}  bound")
    for r in rows:
        prec = "bf16" if r["precision"] == "bfloat16" else "fp32"
        print(f"  {r['impl']:<7}{prec:<6}{r['model']:<10}{cell_label(r):<8}{r['examples_per_s']:>11.0f}"
              f"{_fmt(r['time_ratio_vs_torch'], '.2f'):>10}{_fmt(r['vs_float32'], '.2f'):>9}{r['step_ms']:>9.2f}"
              f"{r['limit_ms']:>10.2f}{r['limit_fraction']:>10.1%}{r['peak_memory_mb']:>9.0f}  {r['bound']}")


def print_generation(rows: list[dict[str, Any]], size: str) -> None:
    print(f"generation, {size} size, batch 1, greedy (speed-up over PyTorch; higher is faster)")
    print(f"  {'runtime':<12}{'model':<10}{'cell':<6}{'tokens/s':>9}{'speed-up':>10}{'ms/token':>10}{'of limit':>10}"
          "  same tokens")
    for r in rows:
        same = {True: "yes", False: "NO", None: "—"}[r["same_tokens_as_torch"]]
        print(f"  {r['runtime']:<12}{r['model']:<10}{cell_label(r):<8}{r['tokens_per_s']:>9.0f}"
              f"{_fmt(r['speedup_vs_torch'], '.2f'):>10}{r['ms_per_token']:>10.3f}{r['limit_fraction']:>10.1%}  {same}")


def print_epochs(rows: list[dict[str, Any]]) -> None:
    print("\none training epoch of the large corpus")
    print(f"  {'context':<8}{'impl':<7}{'model':<10}{'cell':<6}{'device':<7}{'threads':>8}{'steps':>7}{'seconds':>9}"
          f"{'CPU s':>8}{'targets/s':>10}")
    for r in rows:
        print(f"  {r['context']:<8}{r['impl']:<7}{r['model']:<10}{cell_label(r):<8}{r['device']:<7}{r['threads']!s:>8}"
              f"{r['steps']:>7}{r['seconds']:>9.1f}{r['cpu_seconds']:>8.1f}{r['targets'] / r['seconds']:>10.0f}")


def print_summary(results: dict[str, Any]) -> None:
    for size in results["sizes"]:
        for context in CONTEXTS:
            train = [r for r in results["train"] if r["size"] == size and r["context"] == context]
            if train:
                print_training(train, size, context)
        generate = [r for r in results["generate"] if r["size"] == size]
        if generate:
            print_generation(generate, size)
    if results["epochs"]:
        print_epochs(results["epochs"])


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    base = data_config(args, batch_size=args.batch_size, bptt=args.bptt, hidden_size=args.hidden_size,
                       embed_dim=args.embed_dim)
    contexts = CONTEXTS if args.context == "both" else (args.context,)
    impls = parse_names(args.impls, IMPLS, "--impls")
    runtimes = [] if args.epoch_large or contexts == ("poem",) else parse_names(args.runtimes, RUNTIMES,
                                                                                 "--runtimes")
    models = parse_names(args.models, MODELS, "--models")
    cells = parse_names(args.cells, tuple(CELLS), "--cells")
    sizes = ["large"] if args.epoch_large else list(SIZES) if args.size == "both" else [args.size]
    if args.epoch_large and args.size == "benchmark":
        raise UsageError("--epoch-large times the large size; leave out --size benchmark")
    if args.epoch_large and args.runtimes != ",".join(RUNTIMES):
        raise UsageError("--epoch-large times training only; leave out --runtimes")
    if args.json:
        check_writable(args.json, "--json")
    if args.linear_scan != "auto" and ("jax" not in impls or "mingru" not in cells):
        raise UsageError(f"--linear-scan {args.linear_scan} sets JAX's mingru recurrence; add jax to --impls and "
                         "mingru to --cells, or leave it out")
    limit_threads(args.threads)
    if args.linear_scan != "auto":
        from jaxmodels import scan

        scan.set_form(args.linear_scan)
    device = resolve_device(args.device)
    precisions = tuple(precisions_of(args))
    if args.epoch_large and precisions != ("float32",):
        raise UsageError("--epoch-large times float32 epochs; leave out --precision")
    results = run_speed(args, base, impls, runtimes, models, cells, sizes, device, contexts, parse_layers(args.layers),
                        precisions)
    print_summary(results)
    if args.json:
        from wordrnn.run.folder import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

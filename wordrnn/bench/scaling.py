"""``python -m wordrnn.bench.scaling``: how the poem context's training speed grows with the batch and the model,
drawn beside the machine's limit.

Two sweeps of one model and cell at the user's vocabulary (V 16,000 by default), poem context (chunks of
``--bptt`` tokens, the state carried, every position scored): training tokens per second against the number
of streams (``--streams``) at ``--hidden-size``, and against the hidden size (``--hidden``) at
``--batch-size`` streams, every implementation measured side by side at each point (``wordrnn.bench.timing``:
warm-ups apart, repeats interleaved). Beside each curve the roofline: the tokens per second of the estimated
limit (``wordrnn.bench.roofline.chunk_step_work`` against the matmul peak and the copy bandwidth measured in
this run). One PNG per device (``docs/scaling_cpu.png``, ``docs/scaling_gpu.png``) and the JSON beside it.
Both precisions by default (``--precision``): PyTorch's and JAX's bfloat16 rows beside the float32 ones, each
against its own precision's product peak; every row carries its peak memory (``wordrnn.bench.peak_memory``).

The chunks are seeded synthetic poems (``wordrnn.bench.synthetic``): speed depends on the sizes and where the
poems start, not on the words.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from wordrnn.bench.machine import describe_machine, limit_threads
from wordrnn.core.cells import CELLS
from wordrnn.core.config import MODELS, Config
from wordrnn.core.errors import CommandParser, UsageError, cli
from wordrnn.core.hugepages import exec_with_huge_pages
from wordrnn.frameworks import IMPLS, parse_names

# the sweeps, on a GPU and on the CPU alike; with both precisions and two repeats a point they take under 10 minutes
# on the quiet 2-core box, threads 1 (7 min 48 s: docs/PERFORMANCE.md, "This round on a quiet box")
STREAMS, HIDDEN = (8, 32, 128, 512, 1024), (128, 256, 512, 1024)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m wordrnn.bench.scaling",
        description="Poem-context training tokens per second of every implementation against the number of "
        "streams and against the hidden size, beside the machine's estimated limit; writes a PNG and its JSON.",
    )
    parser.add_argument("--impls", default=",".join(IMPLS), help="implementations (default: %(default)s)")
    parser.add_argument("--model", choices=MODELS, default="embedding", help="(default: %(default)s)")
    parser.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="(default: %(default)s)")
    parser.add_argument("--vocab-size", type=int, default=16_000, help="vocabulary V (default: %(default)s)")
    parser.add_argument("--embed-dim", type=int, default=Config.embed_dim, help="(default: %(default)s)")
    parser.add_argument("--bptt", type=int, default=Config.bptt, help="tokens per chunk (default: %(default)s)")
    parser.add_argument("--streams", default=None,
                        help="comma-separated stream counts of the first sweep "
                        f"(default: {','.join(map(str, STREAMS))})")
    parser.add_argument("--hidden", default=None,
                        help="comma-separated hidden sizes of the second sweep "
                        f"(default: {','.join(map(str, HIDDEN))})")
    parser.add_argument("--batch-size", type=int, default=Config.batch_size,
                        help="streams in the hidden-size sweep (default: %(default)s)")
    parser.add_argument("--hidden-size", type=int, default=Config.hidden_size,
                        help="hidden size in the streams sweep (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=1, help="chunks per timed repeat (default: %(default)s)")
    # two: a point of 512 or more streams is 18,000+ tokens a repeat, and a third repeat of every point costs the
    # sweep about 2.5 minutes (docs/PERFORMANCE.md)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats, median kept (default: %(default)s)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where PyTorch and JAX run (NumPy stays on the CPU); auto: cuda if PyTorch sees a GPU "
                        "(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="compute threads for every library (0: each library's default; default: %(default)s)")
    from wordrnn.bench.speed import add_precision_flag

    add_precision_flag(parser, "both")
    parser.add_argument("--out", type=Path, default=None,
                        help="the PNG (default: docs/scaling_cpu.png or docs/scaling_gpu.png); the JSON goes beside it")
    return parser


def parse_sizes(text: str | None, default: tuple[int, ...], flag: str) -> list[int]:
    if text is None:
        return list(default)
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise UsageError(f"{flag} takes positive numbers, got {text!r}")
    return sizes


def check_args(args: argparse.Namespace) -> None:
    for flag in ("vocab_size", "embed_dim", "bptt", "batch_size", "hidden_size", "steps", "repeats"):
        if getattr(args, flag) <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number, got {getattr(args, flag)}")
    if args.vocab_size < 2:
        raise UsageError(f"--vocab-size must be at least 2, got {args.vocab_size}")


def point_chunks(config: Config, steps: int) -> list:
    """``steps + 1`` chunks (one for the warm-up) of ``config.batch_size`` streams of seeded synthetic poems."""
    from data.streams import epoch_chunks
    from wordrnn.bench.synthetic import LARGE, synthetic_poems

    tokens = config.batch_size * config.bptt * (steps + 2)
    size = replace(LARGE, vocab_size=config.vocab_size, train_tokens=max(tokens, 2 * LARGE.poem_tokens))
    chunks = epoch_chunks(synthetic_poems(size)[0], config.batch_size, config.bptt, config.seed, 1)
    return chunks[:steps + 1]


def measure_point(config: Config, contenders: list[tuple[str, str]], devices: dict[str, str],
                  args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (implementation, precision)'s tokens/s and peak memory at one size, side by side, with the work of
    its step and the copy bandwidth of its working set (``add_limits`` turns them into the limit)."""
    from wordrnn.bench import roofline, timing
    from wordrnn.bench.peak_memory import PeakTracker
    from wordrnn.bench.speed import contender_name

    chunks = point_chunks(config, args.steps)
    trainers = {contender_name(impl, p): (impl, timing.Trainer(impl, replace(config, precision=p), devices[impl]))
                for impl, p in contenders}
    warmups = {name: timing.timed(lambda t=t: t.run(chunks, 1))[0] for name, (_, t) in trainers.items()}
    memory = PeakTracker()
    seconds = timing.interleaved_medians(
        {name: memory.wrap(name, impl, devices[impl], lambda t=t: t.run(chunks, args.steps))
         for name, (impl, t) in trainers.items()}, args.repeats)
    work = roofline.chunk_step_work(config, config.batch_size, config.bptt)
    tokens = config.batch_size * config.bptt
    bandwidths = {d: roofline.copy_bandwidth_gbs(d, roofline.working_set_bytes(config), 3)
                  for d in sorted(set(devices.values()))}
    rows = []
    for impl, precision in contenders:
        name = contender_name(impl, precision)
        step_s = seconds[name] / args.steps
        rows.append({"impl": impl, "precision": precision, "device": devices[impl], "streams": config.batch_size,
                     "hidden": config.hidden_size, "tokens": tokens, "tokens_per_s": tokens / step_s,
                     "step_ms": 1e3 * step_s, "peak_memory_mb": memory.peaks[name] / 2**20,
                     "warmup_seconds": warmups[name], "flops_per_step": work.flops,
                     "bytes_per_step": work.bytes, "bandwidth_gbs": bandwidths[devices[impl]]})
    return rows


def add_limits(rows: list[dict[str, Any]], peaks: dict[tuple[str, str], float]) -> None:
    """Each row's limit (its step's work against its device's peak of its precision, and its working set's
    bandwidth): tokens/s at the limit, the fraction of it achieved, and what bounds it."""
    from wordrnn.bench.roofline import Work

    for row in rows:
        work, peak, bandwidth = Work(row["flops_per_step"], row["bytes_per_step"]), \
            peaks[row["device"], row["precision"]], row["bandwidth_gbs"]
        limit_s = work.seconds(peak, bandwidth)
        row.update(peak_gflops=peak, limit_tokens_per_s=row["tokens"] / limit_s,
                   limit_fraction=limit_s * row["tokens_per_s"] / row["tokens"], bound=work.bound(peak, bandwidth))


def sweep(base: Config, contenders: list[tuple[str, str]], devices: dict[str, str], args: argparse.Namespace,
          streams: list[int], hidden: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Both sweeps, point by point, with a progress bar."""
    from tqdm import tqdm

    points = [("streams", replace(base, batch_size=b)) for b in streams]
    points += [("hidden", replace(base, hidden_size=h)) for h in hidden]
    results: dict[str, list[dict[str, Any]]] = {"streams": [], "hidden": []}
    with tqdm(total=len(points), desc="scaling", unit="point", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        for axis, config in points:
            rows = measure_point(config, contenders, devices, args)
            results[axis] += rows
            bar.update()
            if not sys.stderr.isatty():  # plain lines in a log
                print(f"{axis:<8} B {config.batch_size:>5} H {config.hidden_size:>5}  " + "  ".join(
                    f"{row_label(r)} {r['tokens_per_s']:,.0f} tok/s" for r in rows), flush=True)
    return results


IMPL_LABELS = {"numpy": "NumPy", "torch": "PyTorch eager", "jax": "JAX/Flax (jit)"}


def row_label(row: dict[str, Any]) -> str:
    """A row's implementation and, for bfloat16, its precision: ``jax``, ``jax bf16``."""
    return row["impl"] if row["precision"] == "float32" else f"{row['impl']} bf16"


def plot(results: dict[str, Any], path: Path) -> None:
    """Two panels (tokens/s against streams, against H), one line per implementation, the roofline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    s = results["settings"]
    for ax, axis, label, fixed in ((axes[0], "streams", "streams (batch size B)", f"H {s['hidden_size']}"),
                                   (axes[1], "hidden", "hidden size H", f"B {s['batch_size']}")):
        rows = results["sweeps"][axis]
        for name in dict.fromkeys(row_label(r) for r in rows):
            mine = [r for r in rows if row_label(r) == name]
            bf16 = mine[0]["precision"] == "bfloat16"
            impl = IMPL_LABELS.get(mine[0]["impl"], name) + (" bfloat16" if bf16 else "")
            ax.plot([r[axis] for r in mine], [r["tokens_per_s"] for r in mine], marker="s" if bf16 else "o",
                    linestyle="-." if bf16 else "-", label=f"{impl} ({mine[0]['device']})")
        for device, precision in dict.fromkeys((r["device"], r["precision"]) for r in rows):
            # the limit is the device's and the precision's
            first = next(row_label(r) for r in rows if (r["device"], r["precision"]) == (device, precision))
            mine = [r for r in rows if row_label(r) == first]
            ax.plot([r[axis] for r in mine], [r["limit_tokens_per_s"] for r in mine],
                    color="black" if precision == "float32" else "gray", linestyle="--" if device == "cpu" else ":",
                    label=f"estimated limit ({device}, {precision})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted({r[axis] for r in rows}), [str(v) for v in sorted({r[axis] for r in rows})])
        ax.set_xlabel(label)
        ax.set_ylabel("training tokens / s")
        ax.set_title(f"{s['model']} {s['cell']}, V {s['vocab_size']:,}, bptt {s['bptt']}, {fixed}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    load = results["machine"].get("load_average")
    fig.suptitle(f"poem context, threads {s['threads'] or 'default'}"
                 + (f", load average {load[0]:.1f}" if load else ""), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    impls = parse_names(args.impls, IMPLS, "--impls")
    limit_threads(args.threads)
    from wordrnn.bench.roofline import matmul_peak_gflops
    from wordrnn.bench.speed import (
        CPU_ONLY,
        contender_name,
        contenders_of,
        precisions_of,
        resolve_device,
        without_emulated,
    )

    device = resolve_device(args.device)
    gpu = device == "cuda"
    streams = parse_sizes(args.streams, STREAMS, "--streams")
    hidden = parse_sizes(args.hidden, HIDDEN, "--hidden")
    out = args.out or Path("docs") / f"scaling_{'gpu' if gpu else 'cpu'}.png"
    base = Config(model=args.model, cell=args.cell, context="poem", vocab_size=args.vocab_size,
                  embed_dim=args.embed_dim, bptt=args.bptt, batch_size=args.batch_size,
                  hidden_size=args.hidden_size).validate()
    devices = {impl: "cpu" if impl in CPU_ONLY else device for impl in impls}
    on = sorted(set(devices.values()))
    precisions = precisions_of(args)
    before = {(d, p): matmul_peak_gflops(d, 5, p) for d in on for p in precisions}
    contenders = without_emulated(contenders_of(impls, precisions), devices, {d: {
        "matmul_gflops": before.get((d, "float32"), {}), "bfloat16_matmul_gflops": before.get((d, "bfloat16"), {})}
        for d in on})
    if not contenders:
        raise UsageError("nothing left to measure: every implementation asked for was left out above; add "
                         "--precision float32 or other --impls")
    sweeps = sweep(base, contenders, devices, args, streams, hidden)
    # the best of the two measurements: a limit is what the machine did, and a shared machine's load comes and goes
    after = {(d, p): matmul_peak_gflops(d, 5, p) for d in on for p in precisions}
    limits = {d: {p: {"matmul_gflops_before": before[d, p], "matmul_gflops_after": after[d, p],
                      "peak_gflops": max(*before[d, p].values(), *after[d, p].values())} for p in precisions}
              for d in on}
    for rows in sweeps.values():
        add_limits(rows, {(d, p): lim["peak_gflops"] for d, by in limits.items() for p, lim in by.items()})
    print(f"{', '.join(contender_name(i, p) for i, p in contenders)} on {device}; matmul peak " + ", ".join(
        f"{d} {p} {lim['peak_gflops']:.1f} GFLOP/s" for d, by in limits.items() for p, lim in by.items()),
        flush=True)
    for axis, rows in sweeps.items():
        for r in rows:
            print(f"  {axis:<8} B {r['streams']:>5} H {r['hidden']:>5} {row_label(r):<9} {r['tokens_per_s']:>10,.0f} "
                  f"tok/s  {r['limit_fraction']:>6.1%} of the limit ({r['bound']}), peak {r['peak_memory_mb']:,.0f} MB")
    results = {
        "sweeps": sweeps, "limits": limits,
        "settings": {"model": args.model, "cell": args.cell, "vocab_size": args.vocab_size, "bptt": args.bptt,
                     "batch_size": args.batch_size, "hidden_size": args.hidden_size, "steps": args.steps,
                     "repeats": args.repeats, "device": device, "threads": args.threads, "precisions": precisions},
        "machine": describe_machine(args.threads),
    }
    plot(results, out)
    from wordrnn.run.folder import atomic_write_text

    atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    exec_with_huge_pages()
    raise SystemExit(main())

"""How far apart are the NumPy, PyTorch and Flax implementations? One table, docs/DESIGN.md's tolerances.

    python -m wordrnn.bench.parity                          # benchmark sizes: V 1823, H 128, E 100, T 5, B 64
    python -m wordrnn.bench.parity --model onehot --cells lstm --vocab-size 50 --hidden-size 16
    python -m wordrnn.bench.parity --device cuda            # torch and JAX on the GPU, TF32 off

From one set of random canonical weights (no corpus needed), for each model and cell:
logits and every parameter's gradient of the loss in float32 and float64,
then both with fixed dropout masks fed to all three, and 20 Adam steps with
clipping (then with weight decay too) through each framework's training
backend. Every row gives the worst difference of each pair of frameworks, the
tolerance, and pass or FAIL; the exit status is 1 if any row fails. This is
the command; the comparisons are the library ``wordrnn.testing.parity``, the
code the parity tests run.

Only light modules are imported at the top, so ``--threads`` is applied before
NumPy, PyTorch and JAX start their thread pools.
"""

from __future__ import annotations

import argparse
import time

from wordrnn.bench.machine import limit_threads
from wordrnn.core.cells import CELLS
from wordrnn.core.config import CONTEXTS, MODELS, Config
from wordrnn.core.errors import CommandParser, UsageError, cli
from wordrnn.core.flags import add_threads_flag
from wordrnn.frameworks import DEVICES, parse_names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m wordrnn.bench.parity",
        description="Compare the NumPy, PyTorch and Flax implementations of every model and cell on random "
                    "weights and batches: "
                    "logits and gradients (float32, float64, with fixed dropout masks) and Adam training "
                    "trajectories. Prints one markdown table with docs/DESIGN.md's tolerances; exits 1 if any "
                    "difference exceeds its tolerance.")
    parser.add_argument("--model", choices=(*MODELS, "both"), default="both", help="default: %(default)s")
    parser.add_argument("--context", choices=(*CONTEXTS, "both"), default="both",
                        help="window: windows from a zero state; poem: carried chunks of streams with a poem "
                             "starting inside one (default: %(default)s)")
    parser.add_argument("--bptt", type=int, default=20, help="chunk length of the poem context (default: %(default)s)")
    parser.add_argument("--cells", default=",".join(CELLS),
                        help="comma-separated cells to compare (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES[1:], default="cpu",  # a comparison names its device
                        help="where torch and JAX compute; cuda runs with TF32 off and JAX's matmul precision "
                             "'highest' (NumPy stays on the CPU; default: %(default)s)")
    parser.add_argument("--vocab-size", type=int, default=1823,
                        help="V (default: %(default)s, poems-100's vocabulary at --min-freq 2)")
    parser.add_argument("--hidden-size", type=int, default=128, help="H (default: %(default)s)")
    parser.add_argument("--embed-dim", type=int, default=100, help="E (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=5, help="T (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="B (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weights, batches, masks (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="steps per trajectory (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="learning rate of the trajectories (default: %(default)s, the benchmark's)")
    parser.add_argument("--weight-decay", type=float, default=1e-2,
                        help="weight decay of the second trajectory (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.3,
                        help="drop rate of the fixed dropout masks (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=1, help="stacked layers of every model (default: %(default)s)")
    parser.add_argument("--ar", type=float, default=0.0,
                        help="activation regularization's weight in every loss (default: %(default)s)")
    parser.add_argument("--tar", type=float, default=0.0,
                        help="temporal activation regularization's weight in every loss (default: %(default)s)")
    add_threads_flag(parser)
    args = parser.parse_args(argv)
    # sizes and learning rate as every trainer checks them (Config.validate names the flag)
    Config(hidden_size=args.hidden_size, embed_dim=args.embed_dim, seq_len=args.seq_len, bptt=args.bptt,
           batch_size=args.batch_size, lr=args.lr, layers=args.layers, ar=args.ar, tar=args.tar).validate()
    args.cells = parse_names(args.cells, tuple(CELLS), "--cells")
    if args.vocab_size < 2:
        raise UsageError(f"--vocab-size must be at least 2, got {args.vocab_size}")
    if args.steps < 1:
        raise UsageError(f"--steps must be a positive whole number, got {args.steps}")
    if not args.weight_decay > 0:
        raise UsageError(f"--weight-decay must be positive (the second trajectory uses it), "
                         f"got {args.weight_decay}")
    if not 0.0 < args.dropout < 1.0:
        raise UsageError(f"--dropout must lie strictly between 0 and 1, got {args.dropout}")
    return args


def markdown_table(checks: list) -> str:
    """One row per ``Check``: the worst difference of each pair, the tolerance, pass or FAIL."""
    pairs = list(checks[0].diffs)  # every check compares the same pairs
    header = ["model", "cell", "check", *pairs, "tolerance", "result"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for check in checks:
        diffs = [f"{check.diffs[pair]:.2e}" for pair in pairs]
        result = ("pass, explained below" if check.explained else "pass") if check.passed else "**FAIL**"
        row = [check.model, check.cell, check.name, *diffs, f"{check.tolerance:g}", result]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit_threads(args.threads)
    # imports NumPy, PyTorch and JAX: after limit_threads
    from wordrnn.testing.parity import all_checks, all_poem_checks, use_device

    try:
        use_device(args.device)
    except RuntimeError as err:
        raise UsageError(f"--device {args.device}: {err}; use --device cpu") from None
    started = time.perf_counter()
    checks = []
    for cell in args.cells:
        for model in MODELS if args.model == "both" else (args.model,):
            sizes = (model, args.vocab_size, args.hidden_size, args.embed_dim, args.seq_len, args.batch_size)
            levers = {"layers": args.layers, "ar": args.ar, "tar": args.tar}
            if args.context in ("window", "both"):
                checks += all_checks(*sizes, seed=args.seed, steps=args.steps, lr=args.lr,
                                     weight_decay=args.weight_decay, dropout=args.dropout, cell=cell,
                                     device=args.device, **levers)
            if args.context in ("poem", "both"):
                checks += all_poem_checks(*sizes, seed=args.seed, steps=args.steps, lr=args.lr,
                                          dropout=args.dropout, cell=cell, bptt=args.bptt, device=args.device,
                                          **levers)
    failed = [c for c in checks if not c.passed]
    print(f"parity on {args.device}: V {args.vocab_size}, H {args.hidden_size}, E {args.embed_dim}, "
          f"T {args.seq_len}, B {args.batch_size}, poem chunks of {args.bptt}, {args.layers} layer(s), AR {args.ar:g}, "
          f"TAR {args.tar:g}, seed {args.seed}; random weights "
          "and batches. Gradients: max abs diff over the largest entry; trajectories: worst step's loss, max abs "
          "diff of all weights at the end\n")
    print(markdown_table(checks))
    for check in checks:  # weights over the tolerance that the error model put down to Adam (docs/DESIGN.md)
        for pair, why in check.explained.items():
            print(f"\n{check.model} {check.cell} {check.name}, {pair}: {why}")
    verdict = "all within tolerance" if not failed else f"{len(failed)} over tolerance"
    print(f"\n{len(checks)} checks, {verdict} ({time.perf_counter() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

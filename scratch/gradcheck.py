"""Check the hand-written BPTT gradients against central finite differences, in float64.

    python -m scratch.gradcheck                   # every cell, both models, with and without dropout masks
    python -m scratch.gradcheck --cell lstm --vocab-size 500 --entries 50

For every parameter p, a set of its entries (all of them for small tensors,
else a random subset plus the entry with the largest analytic gradient) is
nudged by +-eps and the numerical gradient (L(p+eps) - L(p-eps)) / 2 eps
compared with the analytic one. The error reported per parameter is

    max_i |analytic_i - numerical_i| / max(max_j |analytic_j|, max_i |numerical_i|)

that is, the worst absolute error measured against the scale of that
parameter's gradient (the same "relative to the largest entry" that docs/DESIGN.md
uses across frameworks). An entry-wise |a - n| / (|a| + |n|) would be
meaningless here: many entries have true gradients of 1e-12 or exactly 0
(tokens absent from the batch), where the finite difference is pure rounding
noise of about 1e-16 * L / eps and the entry-wise ratio is near 1 for a
correct gradient. The check fails above ``wordrnn.core.tolerances.FINITE_DIFFERENCE``.
Weight decay is not part of the loss (the optimizer adds it), so only dropout
masks are checked; they are drawn as training draws them
(``wordrnn.core.dropout.draw_masks``) and then held fixed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line

import numpy as np  # noqa: E402

from scratch import sequence  # noqa: E402
from wordrnn.core.cells import CELLS  # noqa: E402
from wordrnn.core.config import Config  # noqa: E402
from wordrnn.core.dropout import Masks, draw_masks  # noqa: E402
from wordrnn.core.errors import CommandParser, UsageError, cli  # noqa: E402
from wordrnn.core.flags import seed  # noqa: E402
from wordrnn.core.params import Params, init_params  # noqa: E402
from wordrnn.core.tolerances import FINITE_DIFFERENCE, TINY  # noqa: E402


def make_problem(kind: str, vocab_size: int, hidden_size: int, embed_dim: int, batch_size: int, seq_len: int,
                 dropout: float, seed: int, cell: str = "rnn", layers: int = 1
                 ) -> tuple[Params, np.ndarray, np.ndarray, Masks | None]:
    """Float64 canonical weights of ``cell`` (``layers`` stacked), a random batch, and (if ``dropout`` > 0) fixed
    dropout masks."""
    config = Config(model=kind, cell=cell, vocab_size=vocab_size, hidden_size=hidden_size, embed_dim=embed_dim,
                    seed=seed, layers=layers)
    params = init_params(config, dtype=np.float64)
    rng = np.random.default_rng([seed, 1])
    x = rng.integers(0, vocab_size, size=(batch_size, seq_len))
    y = rng.integers(0, vocab_size, size=batch_size)
    masks = draw_masks(config, batch_size, seq_len, rng, p=dropout, dtype=np.float64, x=x) if dropout > 0 else None
    return params, x, y, masks


def check_gradients(params: Params, x: np.ndarray, y: np.ndarray, masks: Masks | None = None, *,
                    cell: str = "rnn", eps: float = 1e-5, entries: int = 300, seed: int = 0,
                    loss_and_grads: Callable | None = None, loss: Callable | None = None) -> dict[str, float]:
    """The worst relative error (see the module docstring) of every parameter's gradient for ``cell``.

    ``loss_and_grads(params, x, y, masks) -> (loss, grads)`` is the function under test (by default the
    hand-written ``scratch.sequence.loss_and_grads`` of ``cell`` on windows: the chunk from a zero state, its last
    position scored); the numerical side uses ``loss(params, x, y, masks)`` (default ``scratch.sequence.loss``).
    """
    for name, p in params.items():
        if p.dtype != np.float64:
            raise ValueError(f"the gradient check needs float64 parameters; {name} is {p.dtype}")
    if loss_and_grads is None:
        def loss_and_grads(p, x, y, masks):
            return sequence.loss_and_grads(p, x, y, cell=cell, masks=masks, last_only=True)[:2]
    if loss is None:
        def loss(p, x, y, masks):
            return sequence.loss(p, x, y, cell=cell, masks=masks, last_only=True)
    _, grads = loss_and_grads(params, x, y, masks)
    rng = np.random.default_rng(seed)
    errors = {}
    for name, p in params.items():
        analytic = grads[name].reshape(-1)
        flat = p.reshape(-1)  # a view: nudging it nudges the parameter
        if flat.size <= entries:
            chosen = np.arange(flat.size)
        else:
            chosen = np.union1d(rng.choice(flat.size, entries, replace=False), [np.argmax(np.abs(analytic))])
        numerical = np.empty(len(chosen))
        for i, j in enumerate(chosen):
            saved = flat[j]
            flat[j] = saved + eps
            up = loss(params, x, y, masks)
            flat[j] = saved - eps
            down = loss(params, x, y, masks)
            flat[j] = saved
            numerical[i] = (up - down) / (2 * eps)
        scale = max(np.abs(analytic).max(), np.abs(numerical).max(), TINY)
        errors[name] = float(np.abs(analytic[chosen] - numerical).max() / scale)
    return errors


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m scratch.gradcheck",
        description="Check the NumPy BPTT gradients of every cell and both models against central finite "
                    f"differences (float64); exits 1 if any parameter's relative error exceeds {FINITE_DIFFERENCE:g}.")
    parser.add_argument("--cell", choices=tuple(CELLS), default=None,
                        help="check this cell only (default: every cell)")
    parser.add_argument("--vocab-size", type=_positive, default=13, help="V (default: %(default)s)")
    parser.add_argument("--hidden-size", type=_positive, default=8, help="H (default: %(default)s)")
    parser.add_argument("--embed-dim", type=_positive, default=6, help="E (default: %(default)s)")
    parser.add_argument("--batch-size", type=_positive, default=4, help="B (default: %(default)s)")
    parser.add_argument("--seq-len", type=_positive, default=5, help="T (default: %(default)s)")
    parser.add_argument("--layers", type=_positive, default=1, help="stacked layers (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.3,
                        help="drop rate of the fixed masks of the second pass (default: %(default)s)")
    parser.add_argument("--entries", type=_positive, default=300,
                        help="entries checked per parameter; larger tensors are sampled (default: %(default)s)")
    parser.add_argument("--eps", type=float, default=1e-5, help="finite-difference step (default: %(default)s)")
    parser.add_argument("--seed", type=seed, default=0,
                        help="weights, batch, masks, sampled entries (default: %(default)s)")
    args = parser.parse_args(argv)
    if not 0.0 < args.dropout < 1.0:
        raise UsageError(f"--dropout must lie strictly between 0 and 1, got {args.dropout}")
    if not args.eps > 0:
        raise UsageError(f"--eps must be positive, got {args.eps}")
    return args


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    worst = 0.0
    print(f"{'cell':<5} {'model':<10} {'masks':<6} {'parameter':<14} {'worst rel. error':>16}")
    for cell in (args.cell,) if args.cell else tuple(CELLS):
        for kind in ("onehot", "embedding"):
            for dropout in (0.0, args.dropout):
                params, x, y, masks = make_problem(kind, args.vocab_size, args.hidden_size, args.embed_dim,
                                                   args.batch_size, args.seq_len, dropout, args.seed, cell,
                                                   args.layers)
                errors = check_gradients(params, x, y, masks, cell=cell, eps=args.eps, entries=args.entries,
                                         seed=args.seed)
                for name, err in errors.items():
                    flag = "" if err <= FINITE_DIFFERENCE else "  FAIL"
                    print(f"{cell:<5} {kind:<10} {'fixed' if masks else 'none':<6} {name:<14} {err:>16.2e}{flag}")
                    worst = max(worst, err)
    verdict = "ok" if worst <= FINITE_DIFFERENCE else "FAILED"
    print(f"{verdict}: worst relative error {worst:.2e} (tolerance {FINITE_DIFFERENCE:g})")
    return 0 if worst <= FINITE_DIFFERENCE else 1


if __name__ == "__main__":
    raise SystemExit(main())

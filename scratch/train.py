"""Train a wordrnn model with the NumPy reference: ``python -m scratch.train --help``.

The shared flags and the whole epoch loop come from ``wordrnn``; this file adds
the NumPy flag and hands a ``NumpyBackend`` to the loop.
"""

from __future__ import annotations

import argparse

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line

import numpy as np  # noqa: E402

from scratch.backend import NumpyBackend  # noqa: E402
from wordrnn.core.errors import cli  # noqa: E402
from wordrnn.core.flags import shared_parser  # noqa: E402
from wordrnn.core.hugepages import exec_with_huge_pages  # noqa: E402
from wordrnn.run.loop import train_from_args  # noqa: E402

DTYPES = {"float32": np.float32, "float64": np.float64}


def build_parser() -> argparse.ArgumentParser:
    parser = shared_parser("Train the word-level RNN language model with the NumPy reference "
                           "(hand-written backpropagation through time).", prog="python -m scratch.train")
    g = parser.add_argument_group("numpy")
    g.add_argument("--dtype", default="float32", choices=tuple(DTYPES),
                   help="precision of the weights and arithmetic; run folders are float32 either way "
                        "(default: %(default)s)")
    return parser


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return train_from_args(args, NumpyBackend(DTYPES[args.dtype]), extra={"dtype": args.dtype})


if __name__ == "__main__":
    exec_with_huge_pages()
    raise SystemExit(main())

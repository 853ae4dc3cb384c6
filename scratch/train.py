"""Train a wordrnn model with the NumPy reference: ``python -m scratch.train --help``.

The shared flags and the whole epoch loop come from ``wordrnn``; this file adds
the NumPy flag and hands a ``NumpyBackend`` to the loop.
"""

from __future__ import annotations

import argparse

from wordrnn.core.errors import start_command
from wordrnn.core.hugepages import exec_with_huge_pages

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line
    exec_with_huge_pages()  # glibc reads its tunables at start: before the imports, which the new process repeats

import numpy as np  # noqa: E402

from scratch.backend import NumpyBackend  # noqa: E402
from wordrnn.core.errors import cli  # noqa: E402
from wordrnn.core.flags import shared_parser  # noqa: E402
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
    raise SystemExit(main())

"""Train a wordrnn model with PyTorch: ``python -m torchmodels.train --help``.

The shared flags and the whole epoch loop come from ``wordrnn``; this file adds
the PyTorch flags and hands a ``TorchBackend`` to the loop.

PyTorch (and the loop's NumPy) are imported inside the functions, under the command's ``@cli``: a
Ctrl-C during those imports is one ``interrupted`` line, and a Python without them one line saying how
to install them, where a module-level import would end in a traceback.
"""

from __future__ import annotations

import argparse

from wordrnn.core.hugepages import exec_with_huge_pages
from wordrnn.core.interrupt import quit_on_ctrl_c

quit_on_ctrl_c()  # before the imports below: a Ctrl-C while they load is one line too

from wordrnn.core.errors import cli  # noqa: E402
from wordrnn.core.flags import shared_parser  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    from torchmodels.devices import DEVICES

    parser = shared_parser("Train the word-level RNN language model with PyTorch.",
                           prog="python -m torchmodels.train")
    g = parser.add_argument_group("pytorch")
    g.add_argument("--device", default="auto", choices=DEVICES,
                   help="auto: cuda if available, else mps, else cpu (default: %(default)s)")
    g.add_argument("--compile", action="store_true", help="run the model through torch.compile")
    g.add_argument("--onehot-gather", action="store_true",
                   help="one-hot model: look up columns of W_ih instead of multiplying one-hot vectors "
                        "(same numbers, much faster for a large vocabulary)")
    return parser


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from torchmodels.backend import TorchBackend
    from wordrnn.run.loop import train_from_args

    backend = TorchBackend(device=args.device, compile=args.compile, onehot_gather=args.onehot_gather)
    extra = {"device": str(backend.device), "compile": args.compile, "onehot_gather": args.onehot_gather}
    return train_from_args(args, backend, extra=extra)


if __name__ == "__main__":
    exec_with_huge_pages()  # a step's large buffers reused, not faulted in afresh (wordrnn.core.hugepages)
    raise SystemExit(main())

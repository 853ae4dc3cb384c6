"""Train a wordrnn model with PyTorch: ``python -m torchmodels.train --help``.

The shared flags and the whole epoch loop come from ``wordrnn``; this file adds
the PyTorch flags and hands a ``TorchBackend`` to the loop.
"""

from __future__ import annotations

import argparse

from torchmodels.backend import TorchBackend
from torchmodels.devices import DEVICES
from wordrnn.core.errors import cli
from wordrnn.core.flags import shared_parser
from wordrnn.run.loop import train_from_args


def build_parser() -> argparse.ArgumentParser:
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
    backend = TorchBackend(device=args.device, compile=args.compile, onehot_gather=args.onehot_gather)
    extra = {"device": str(backend.device), "compile": args.compile, "onehot_gather": args.onehot_gather}
    return train_from_args(args, backend, extra=extra)


if __name__ == "__main__":
    raise SystemExit(main())

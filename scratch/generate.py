"""``python -m scratch.generate``: verse from any run folder, computed by the NumPy reference.

Reads a run folder written by any framework (``wordrnn.run.folder.load_run`` checks it
is complete and that the weights match vocab.json), then continues the
prompt with ``scratch.model.logits``. Prompt handling and sampling are
``wordrnn.run.generation``'s, shared with every other runtime: the same prompt, sampler
settings and seed give the same text as ``python -m export.generate``.
"""

from __future__ import annotations

import argparse

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line

import numpy as np  # noqa: E402

from scratch import model  # noqa: E402
from wordrnn.core.errors import CommandParser, cli  # noqa: E402
from wordrnn.core.metrics import ensemble_window  # noqa: E402
from wordrnn.run.folder import load_run  # noqa: E402
from wordrnn.run.generation import add_sampler_flags, print_samples, settings_from_args  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m scratch.generate",
        description="Generate verse from a run folder (any framework's) with the NumPy reference model.",
    )
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder written by a trainer")
    add_sampler_flags(parser)
    return parser.parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings_from_args(args)  # bad sampler values are refused before the run folder is read
    run = load_run(args.run)
    members = [{name: np.asarray(p, dtype=np.float32) for name, p in params.items()} for params in run.member_params]
    logits = ensemble_window([lambda x, params=params: model.logits(params, x, run.config.cell) for params in members])
    print_samples(logits, run.vocab, run.config.seq_len, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

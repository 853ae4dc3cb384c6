"""``python -m export.generate``: verse from one ``.onnx`` file, with onnxruntime alone.

Needs the file written by ``python -m export.onnx`` and nothing else: the
vocabulary, tokenizer, context and window length come from its metadata. A
poem model reads the prompt once and then one token a step, its state carried. Imports
onnxruntime, NumPy, ``wordrnn.core``, ``wordrnn.run`` and ``data``, never torch or jax. Prompt handling
and sampling are ``wordrnn.run.generation``'s, shared with every other runtime, so the
same prompt, sampler settings and seed give the same text as
``python -m scratch.generate`` on the source run folder (given the cache flags the file was exported with;
docs/GENERATION.md, "How each runtime reads a model").
"""

from __future__ import annotations

import argparse

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command("onnxruntime")  # a missing library or a Ctrl-C during the imports: one line

from export.session import load  # noqa: E402
from wordrnn.core.errors import CommandParser, cli  # noqa: E402
from wordrnn.run.generation import add_sampler_flags, print_samples, settings_from_args  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m export.generate",
        description="Generate verse from an exported ONNX model with onnxruntime (no torch, no jax).",
    )
    parser.add_argument("--model", required=True, metavar="FILE", help="the .onnx file written by export.onnx")
    parser.add_argument("--no-cache", action="store_true",
                        help="write without the file's neural cache, if it has one (the model's own probabilities)")
    add_sampler_flags(parser)
    return parser.parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings_from_args(args)  # bad sampler values are refused before the model is loaded
    lm = load(args.model)
    if args.no_cache:
        lm.cache = None
    print_samples(lm.source, lm.card.vocab, lm.card.config.seq_len, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

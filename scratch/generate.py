"""``python -m scratch.generate``: verse from any run folder, computed by the NumPy reference.

Reads a run folder written by any framework (``core.runs.load_run`` checks it
is complete and that the weights match vocab.json), then continues the
prompt with ``scratch.model.logits``. Prompt handling and sampling are
``core.sampler``'s, shared with every other runtime: the same prompt, sampler
settings and seed give the same text as ``python -m export.generate``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np

from core.errors import UsageError, cli
from core.runs import load_run
from core.sampler import add_sampler_flags, generate_text, prompt_to_ids, settings_from_args
from data.tokenizer import tokenize
from scratch import model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scratch.generate",
        description="Generate verse from a run folder (any framework's) with the NumPy reference model.",
    )
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder written by a trainer")
    parser.add_argument("--prompt", default="the", help="text to continue (default: %(default)r)")
    parser.add_argument("--words", type=int, default=60,
                        help="tokens to generate: words, punctuation marks and line breaks (default: %(default)s)")
    parser.add_argument("--num-samples", type=int, default=1,
                        help="texts to generate; sample i uses seed --seed + i (default: %(default)s)")
    add_sampler_flags(parser)
    return parser.parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from_args(args)
    if args.words <= 0:
        raise UsageError(f"--words must be a positive number, got {args.words}")
    if args.num_samples <= 0:
        raise UsageError(f"--num-samples must be a positive number, got {args.num_samples}")
    run = load_run(args.run)
    vocab, seq_len = run.vocab, run.config.seq_len
    params = {name: np.asarray(p, dtype=np.float32) for name, p in run.params.items()}
    prompt_to_ids(args.prompt, vocab)  # refuses an empty or all-unknown prompt before anything is printed
    unknown = sorted({tok for tok in tokenize(args.prompt, vocab.tokenizer) if tok not in vocab.index})
    if unknown:
        print(f"note: {', '.join(map(repr, unknown))} not in the vocabulary; read as <unk>", file=sys.stderr)
    for i in range(args.num_samples):
        sample = replace(settings, seed=settings.seed + i)
        if args.num_samples > 1:
            print(("\n" if i else "") + f"--- sample {i + 1}, seed {sample.seed} ---", flush=True)
        generate_text(lambda x: model.logits(params, x), vocab, seq_len, args.prompt, args.words, sample,
                      stream=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

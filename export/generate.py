"""``python -m export.generate``: verse from one ``.onnx`` file, with onnxruntime alone.

Needs the file written by ``python -m export.onnx`` and nothing else: the
vocabulary, tokenizer and window length come from its metadata. Imports
onnxruntime, NumPy, ``core`` and ``data``, never torch or jax. Prompt handling
and sampling are ``core.sampler``'s, shared with every other runtime, so the
same prompt, sampler settings and seed give the same text as
``python -m scratch.generate`` on the source run folder.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from core.errors import UsageError, cli
from core.sampler import add_sampler_flags, generate_text, prompt_to_ids, settings_from_args
from data.tokenizer import tokenize
from export.session import load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m export.generate",
        description="Generate verse from an exported ONNX model with onnxruntime (no torch, no jax).",
    )
    parser.add_argument("--model", required=True, metavar="FILE", help="the .onnx file written by export.onnx")
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
    lm = load(args.model)
    vocab, seq_len = lm.card.vocab, lm.card.config.seq_len
    prompt_to_ids(args.prompt, vocab)  # refuses an empty or all-unknown prompt before anything is printed
    unknown = sorted({tok for tok in tokenize(args.prompt, vocab.tokenizer) if tok not in vocab.index})
    if unknown:
        print(f"note: {', '.join(map(repr, unknown))} not in the vocabulary; read as <unk>", file=sys.stderr)
    for i in range(args.num_samples):
        sample = replace(settings, seed=settings.seed + i)
        if args.num_samples > 1:
            print(("\n" if i else "") + f"--- sample {i + 1}, seed {sample.seed} ---", flush=True)
        generate_text(lm.logits, vocab, seq_len, args.prompt, args.words, sample, stream=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

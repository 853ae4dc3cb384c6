"""Text in, verse out: the prompt to token ids, the sampler flags, and detokenized streaming.

The command-line glue around the contract's sampler (``wordrnn.core.sampling``)
that every ``generate`` command shares, so that the same prompt, settings and
seed give the same text in every runtime (docs/GENERATION.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TextIO

from data.tokenizer import NEWLINE, Detokenizer, tokenize
from data.vocab import UNK, Vocab
from wordrnn.core.errors import UsageError
from wordrnn.core.sampling import SEED_LIMIT, STRATEGIES, TEMPERATURE_MIN, SamplerSettings, Source, iter_generate


def add_sampler_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampling")
    g.add_argument("--prompt", default="the", help="text to continue (default: %(default)r)")
    g.add_argument("--words", type=int, default=60,
                   help="tokens to generate: words, punctuation marks and line breaks (default: %(default)s)")
    g.add_argument("--num-samples", type=int, default=1,
                   help="texts to generate; sample i uses seed --seed + i (default: %(default)s)")
    g.add_argument("--strategy", default="sample", choices=STRATEGIES,
                   help="greedy: always the most likely token; sample: draw from the distribution "
                   "(default: %(default)s)")
    g.add_argument("--temperature", type=float, default=1.0,
                   help=f"divide the logits by this, at least {TEMPERATURE_MIN:g} (below it use --strategy greedy; "
                   "default: %(default)s)")
    g.add_argument("--top-k", type=int, default=0, help="keep only the k most likely tokens (default: 0, all)")
    g.add_argument("--top-p", type=float, default=1.0,
                   help="keep the smallest set of tokens whose probability reaches p (default: 1.0, all)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the sampler's SplitMix64 generator, 0 to 2**64-1 (default: %(default)s)")
    g.add_argument("--allow-unk", action="store_true", help="let the model write <unk> (default: never)")
    g.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                   help="never write an N-gram (N tokens in a row) that the text, prompt included, already holds "
                   "(default: 0, off)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R",
                   help="for every token already in the text: a positive logit divided by R, a negative one "
                   "multiplied by R (Keskar et al. 2019; 1.2 is common; default: 1.0, off)")


def settings_from_args(args: argparse.Namespace) -> SamplerSettings:
    """The validated sampler settings (and --words, --num-samples) the flags describe."""
    if args.words <= 0:
        raise UsageError(f"--words must be a positive number, got {args.words}")
    if args.num_samples <= 0:
        raise UsageError(f"--num-samples must be a positive number, got {args.num_samples}")
    if args.strategy == "greedy" and args.num_samples > 1:
        raise UsageError(f"--strategy greedy draws no random numbers, so all {args.num_samples} samples would be "
                         "the same text; use --num-samples 1, or --strategy sample for different texts")
    settings = SamplerSettings(args.strategy, args.temperature, args.top_k, args.top_p, args.seed,
                               args.allow_unk, args.no_repeat_ngram, args.repetition_penalty).validate()
    last = args.seed + args.num_samples - 1  # sample i uses seed --seed + i
    if last >= SEED_LIMIT:
        raise UsageError(f"--seed {args.seed} with --num-samples {args.num_samples} gives the last sample seed "
                         f"{last}, past 2**64 - 1 (sample i uses --seed + i); give a seed up to "
                         f"{SEED_LIMIT - args.num_samples} or fewer samples")
    return settings


def print_samples(source: Source, vocab: Vocab, seq_len: int, args: argparse.Namespace,
                  stream: TextIO | None = None) -> None:
    """What every ``generate`` command prints: ``--num-samples`` texts, streamed line by line."""
    stream = stream or sys.stdout
    settings = settings_from_args(args)
    prompt_to_ids(args.prompt, vocab)  # refuses an empty or all-unknown prompt before anything is printed
    unknown = unknown_words(args.prompt, vocab)
    if unknown:
        print(f"note: {', '.join(map(repr, unknown))} not in the vocabulary; read as {UNK}", file=sys.stderr)
    for i in range(args.num_samples):
        sample = replace(settings, seed=settings.seed + i)
        if args.num_samples > 1:
            stream.write(("\n" if i else "") + f"--- sample {i + 1}, seed {sample.seed} ---\n")
        generate_text(source, vocab, seq_len, args.prompt, args.words, sample, stream=stream)


def unknown_words(prompt: str, vocab: Vocab) -> list[str]:
    """The prompt's tokens that the vocabulary lacks (read as <unk>), sorted, each once."""
    return sorted({tok for tok in tokenize(prompt, vocab.tokenizer) if tok not in vocab.index})


def prompt_to_ids(prompt: str, vocab: Vocab) -> list[int]:
    """Tokenize a prompt with the vocabulary's tokenizer; refuse an empty or all-unknown prompt."""
    tokens = tokenize(prompt, vocab.tokenizer)
    if not tokens:
        raise UsageError("the prompt is empty; give at least one word with --prompt")
    ids = [int(i) for i in vocab.encode(tokens)]
    if all(i == vocab.unk_id for i in ids) and UNK not in tokens:
        raise UsageError(
            f"every word of the prompt ({' '.join(tokens)}) is unknown to this model and maps to {UNK}; "
            "use words from the training poems"
        )
    return ids


def generate_text(source: Source, vocab: Vocab, seq_len: int, prompt: str, n_tokens: int,
                  settings: SamplerSettings, stream: TextIO | None = None) -> str:
    """Prompt in, verse out, from a window model's logits or a poem model's ``Stateful`` stepper (``source``).
    With ``stream``, each line is written as soon as it is complete.

    The detokenizer sees each token once, so the cost grows linearly with the length.
    """
    prompt_ids = prompt_to_ids(prompt, vocab)
    detok = Detokenizer()
    pieces = [detok.push(token) for token in vocab.decode(prompt_ids)]
    shown = 0  # pieces already written to the stream
    for token_id in iter_generate(source, prompt_ids, n_tokens, seq_len, settings):
        token = vocab.tokens[token_id]
        pieces.append(detok.push(token))
        if stream is not None and token == NEWLINE:
            stream.write("".join(pieces[shown:]))
            stream.flush()
            shown = len(pieces)
    if stream is not None:
        stream.write("".join(pieces[shown:]) + "\n")
        stream.flush()
    return "".join(pieces)

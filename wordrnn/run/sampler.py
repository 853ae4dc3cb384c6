"""One NumPy sampler for every runtime.

Given the same logits and seed it returns the same tokens, whichever
framework (or ONNX runtime) produced the logits. The context fed back to the
model is the last ``seq_len`` tokens.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TextIO

import numpy as np

from data.tokenizer import NEWLINE, detokenize, tokenize
from data.vocab import UNK, Vocab
from wordrnn.core.errors import UsageError

LogitsFn = Callable[[np.ndarray], np.ndarray]  # int64 [1, T] -> float [1, V]
STRATEGIES = ("sample", "greedy")


@dataclass
class SamplerSettings:
    strategy: str = "sample"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    allow_unk: bool = False

    def validate(self) -> SamplerSettings:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown --strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise UsageError(f"--temperature must be a positive number, got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"--top-k must be 0 (off) or a positive number, got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise UsageError(f"--top-p must lie in (0, 1], got {self.top_p}")
        return self


def add_sampler_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampling")
    g.add_argument("--prompt", default="the", help="text to continue (default: %(default)r)")
    g.add_argument("--words", type=int, default=60,
                   help="tokens to generate: words, punctuation marks and line breaks (default: %(default)s)")
    g.add_argument("--num-samples", type=int, default=1,
                   help="texts to generate; sample i uses seed --seed + i (default: %(default)s)")
    g.add_argument("--strategy", default="sample", choices=STRATEGIES,
                   help="greedy: always the most likely token; sample: draw from the distribution (default)")
    g.add_argument("--temperature", type=float, default=1.0, help="divide the logits by this (default: 1.0)")
    g.add_argument("--top-k", type=int, default=0, help="keep only the k most likely tokens (0: all)")
    g.add_argument("--top-p", type=float, default=1.0,
                   help="keep the smallest set of tokens whose probability reaches p (1.0: all)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler (default: 0)")
    g.add_argument("--allow-unk", action="store_true", help="let the model write <unk> (default: never)")


def settings_from_args(args: argparse.Namespace) -> SamplerSettings:
    """The validated sampler settings (and --words, --num-samples) the flags describe."""
    if args.words <= 0:
        raise UsageError(f"--words must be a positive number, got {args.words}")
    if args.num_samples <= 0:
        raise UsageError(f"--num-samples must be a positive number, got {args.num_samples}")
    return SamplerSettings(args.strategy, args.temperature, args.top_k, args.top_p, args.seed,
                           args.allow_unk).validate()


def print_samples(logits_fn: LogitsFn, vocab: Vocab, seq_len: int, args: argparse.Namespace,
                  stream: TextIO | None = None) -> None:
    """What every ``generate`` command prints: ``--num-samples`` texts, streamed line by line."""
    stream = stream or sys.stdout
    settings = settings_from_args(args)
    prompt_to_ids(args.prompt, vocab)  # refuses an empty or all-unknown prompt before anything is printed
    unknown = sorted({tok for tok in tokenize(args.prompt, vocab.tokenizer) if tok not in vocab.index})
    if unknown:
        print(f"note: {', '.join(map(repr, unknown))} not in the vocabulary; read as {UNK}", file=sys.stderr)
    for i in range(args.num_samples):
        sample = replace(settings, seed=settings.seed + i)
        if args.num_samples > 1:
            stream.write(("\n" if i else "") + f"--- sample {i + 1}, seed {sample.seed} ---\n")
        generate_text(logits_fn, vocab, seq_len, args.prompt, args.words, sample, stream=stream)


def next_token(logits: np.ndarray, settings: SamplerSettings, rng: np.random.Generator) -> int:
    """Pick the next token id from one row of logits."""
    z = np.asarray(logits, dtype=np.float64).copy()
    if not settings.allow_unk and z.shape[0] > 1:
        z[0] = -np.inf
    if settings.strategy == "greedy":
        return int(np.argmax(z))
    z /= settings.temperature
    if 0 < settings.top_k < z.shape[0]:
        kth = np.partition(z, -settings.top_k)[-settings.top_k]
        z[z < kth] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    if settings.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cumulative, settings.top_p)) + 1]
        mask = np.zeros_like(p)
        mask[keep] = p[keep]
        p = mask / mask.sum()
    # Inverse-CDF draw: one uniform number per token, the same on every NumPy version.
    return int(min(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"), p.shape[0] - 1))


def iter_generate(logits_fn: LogitsFn, prompt_ids: list[int], n_tokens: int, seq_len: int,
                  settings: SamplerSettings) -> Iterator[int]:
    """Yield ``n_tokens`` new token ids, each conditioned on the last ``seq_len`` tokens."""
    rng = np.random.default_rng(settings.seed)
    ids = list(prompt_ids)
    for _ in range(n_tokens):
        context = np.asarray([ids[-seq_len:]], dtype=np.int64)
        token = next_token(np.asarray(logits_fn(context))[0], settings, rng)
        ids.append(token)
        yield token


def generate(logits_fn: LogitsFn, prompt_ids: list[int], n_tokens: int, seq_len: int,
             settings: SamplerSettings) -> list[int]:
    return list(iter_generate(logits_fn, prompt_ids, n_tokens, seq_len, settings))


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


def generate_text(logits_fn: LogitsFn, vocab: Vocab, seq_len: int, prompt: str, n_tokens: int,
                  settings: SamplerSettings, stream: TextIO | None = None) -> str:
    """Prompt in, verse out. With ``stream``, each line is written as soon as it is complete."""
    prompt_ids = prompt_to_ids(prompt, vocab)
    tokens = vocab.decode(prompt_ids)
    shown = 0
    for token_id in iter_generate(logits_fn, prompt_ids, n_tokens, seq_len, settings):
        tokens.append(vocab.tokens[token_id])
        if stream is not None and tokens[-1] == NEWLINE:
            text = detokenize(tokens)
            stream.write(text[shown:])
            stream.flush()
            shown = len(text)
    text = detokenize(tokens)
    if stream is not None:
        stream.write(text[shown:] + "\n")
        stream.flush()
    return text

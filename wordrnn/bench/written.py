"""What a row writes, measured on enough text to hold a distribution: its form and its repetition.

A report's short sample (40 or 60 tokens) is for reading: 3 to 5 lines, too few for a histogram of words per
line or for a share of repeated 4-grams. So every row of ``bench.compare`` and ``bench.quality`` also writes
``SAMPLES`` texts of ``TOKENS`` tokens each (2,000 tokens in all), one from each prompt of one prompt set (the
same for every row), at the short samples' sampler settings and seed i for the i-th text; and on them:

- form (``wordrnn.bench.form``): the words per line and lines per stanza of every complete line and stanza of
  all the texts together (the prompt counts: it begins its text's first line), against the training poems';
- repetition (``wordrnn.core.repetition``): the mean repeated-4-gram share, distinct-1 and distinct-2 of the
  texts (the prompt left out), against the 5th-95th percentile of pieces of ``TOKENS`` tokens cut from the
  training poems.

The prompt set: the words of ``PROMPTS`` that the vocabulary knows, in that order, taken in turn until there are
``SAMPLES`` (a vocabulary that knows none of them: its first word).

``python -m wordrnn.bench.written --model FILE`` measures an exported file the same way at the README's settings
(by default 20 texts of 200 tokens from the 20 prompts, temperature 0.8, top-p 0.9, with the cache the file
writes with, or ``--cache scoring`` or ``none``), beside the poems of the run's training split.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from data.vocab import Vocab
from wordrnn.bench.form import Form, PoemForm, is_word
from wordrnn.core.errors import CommandParser, UsageError, cli
from wordrnn.core.repetition import PoemRepetition, RepetitionComparison, compare_repetition
from wordrnn.core.sampling import SamplerSettings, Source, generate

SAMPLES = 8
TOKENS = 250
# Common first words of English verse; the reports' prompt set is the first eight a corpus's vocabulary knows.
PROMPTS = ("the", "i", "and", "when", "my", "o", "in", "love", "we", "she", "he", "you", "if", "what", "there",
           "now", "all", "a", "this", "how")


def prompt_set(vocab: Vocab, samples: int = SAMPLES) -> list[str]:
    """``samples`` one-word prompts: the known words of ``PROMPTS`` in turn (the vocabulary's first word if none)."""
    known = [w for w in PROMPTS if w in vocab.index] or [next((t for t in vocab.tokens[1:] if is_word(t)),
                                                              vocab.tokens[-1])]
    return [known[i % len(known)] for i in range(samples)]


@dataclass(frozen=True)
class Written:
    """The texts one row wrote: each prompt's tokens and the tokens written after it."""

    prompts: list[list[str]]
    texts: list[list[str]]

    @property
    def tokens(self) -> int:
        return sum(len(t) for t in self.texts)


def write_texts(source: Source, vocab: Vocab, seq_len: int, settings: SamplerSettings,
                samples: int = SAMPLES, tokens: int = TOKENS, progress: bool = False) -> Written:
    """``samples`` texts of ``tokens`` tokens from the prompt set, seed ``settings.seed + i`` for the i-th (with
    ``progress``, a bar on a terminal's standard error)."""
    from tqdm import tqdm

    prompts = [[w] for w in prompt_set(vocab, samples)]
    texts = [vocab.decode(generate(source, [vocab.index[p[0]]], tokens, seq_len,
                                   replace(settings, seed=settings.seed + i)))
             for i, p in enumerate(tqdm(prompts, desc="texts", unit="text", file=sys.stderr, leave=False,
                                        disable=not (progress and sys.stderr.isatty())))]
    return Written(prompts, texts)


@dataclass(frozen=True)
class WrittenMeasure:
    """One row's long text: its form and its repetition beside the training poems'."""

    form: Form
    repetition: RepetitionComparison
    samples: int
    tokens: int

    def describe(self) -> str:
        return (f"{self.samples} texts, {self.tokens:,} tokens: {self.form.describe()}; "
                f"{self.repetition.describe()}")

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "tokens": self.tokens, "form": self.form.to_json(),
                "repetition": self.repetition.to_json()}

    def row(self) -> dict[str, Any]:
        """The columns a report's row carries: the lines it prints, the figures, and the whole detail."""
        s = self.repetition.sample
        return {"form": self.form.describe(), "repetition": self.repetition.describe(),
                "form_words_per_line_distance": self.form.words_per_line.distance,
                "form_lines_per_stanza_distance": self.form.lines_per_stanza.distance,
                "repeated_4grams": s.repeated_4grams, "distinct_1": s.distinct_1, "distinct_2": s.distinct_2,
                "repetition_within_poems": self.repetition.within, "written_tokens": self.tokens,
                "written_detail": self.to_json()}


class TrainingPoems:
    """The training poems' form and repetition, counted once, to hold every row's long text against."""

    def __init__(self, poems: Sequence[Sequence[str]]):
        self.form = PoemForm(poems)
        self.repetition = PoemRepetition(poems)

    def measure(self, written: Written) -> WrittenMeasure:
        whole = [list(p) + list(t) for p, t in zip(written.prompts, written.texts, strict=True)]
        return WrittenMeasure(self.form.pooled_form(whole), compare_repetition(written.texts, self.repetition),
                              len(written.texts), written.tokens)


CACHES = ("writing", "scoring", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m wordrnn.bench.written",
        description="Form and repetition of what an exported file writes (one text per prompt, seed i for the "
        "i-th), beside the poems of the run's training split: words per line and lines per stanza, and the mean "
        "repeated-4-gram share, distinct-1 and distinct-2 against the 5th-95th percentile of pieces of the poems "
        "as long as a text.")
    parser.add_argument("--model", required=True, metavar="FILE", help="the .onnx file written by export.onnx")
    parser.add_argument("--data", default=None, metavar="FILE",
                        help="the corpus the run was trained on (default: the file's config, else WORDRNN_DATA)")
    parser.add_argument("--cache", choices=CACHES, default="writing",
                        help="the file's neural cache for writing (what every client applies), its cache for "
                        "scoring (what a version-3 file wrote with), or none (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=len(PROMPTS),
                        help="texts, one per prompt of the prompt set in turn (default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens a text (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, help="(default: %(default)s, the README's)")
    parser.add_argument("--top-p", type=float, default=0.9, help="(default: %(default)s, the README's)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the measures as JSON")
    return parser


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.samples < 1 or args.tokens < 4:
        raise UsageError(f"--samples must be at least 1 and --tokens at least 4 (a 4-gram), got {args.samples} "
                         f"and {args.tokens}")
    settings = SamplerSettings(temperature=args.temperature, top_p=args.top_p).validate()
    from data.dataset import load_dataset
    from export.session import load
    from wordrnn.run.folder import atomic_write_text, check_out_file

    if args.json:
        check_out_file(args.json, overwrite=True, flag="--json")
    lm = load(args.model)
    card = lm.card
    if args.cache != "writing" and card.cache is None:
        raise UsageError(f"--cache {args.cache}: {args.model} has no neural cache; leave --cache out")
    if card.cache:
        lm.cache = {"writing": card.cache.writing, "scoring": card.cache.scoring, "none": None}[args.cache]
    config = card.config
    dataset = load_dataset(**{**config.dataset_args(), **({"data": args.data} if args.data else {})},
                           vocab=card.vocab)
    written = write_texts(lm.source, card.vocab, config.seq_len, settings, args.samples, args.tokens, progress=True)
    measure = TrainingPoems([card.vocab.decode(ids) for ids in dataset.train_ids]).measure(written)
    cache = lm.cache
    used = "none" if cache is None else f"size {cache.size}, theta {cache.theta:g}, lambda {cache.lam:g}"
    print(f"{args.model}: neural cache {args.cache} ({used}); {args.samples} texts of {args.tokens} tokens from the "
          f"prompts {', '.join(dict.fromkeys(p[0] for p in written.prompts))}, temperature "
          f"{args.temperature}, top-p {args.top_p}, seed i for the i-th")
    print(measure.repetition.describe())
    print(measure.form.describe())
    if args.json:
        atomic_write_text(args.json, json.dumps({"model": args.model, "cache": args.cache, **measure.to_json(),
                                                 "texts": [" ".join(t) for t in written.texts]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

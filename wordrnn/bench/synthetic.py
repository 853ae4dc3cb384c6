"""A seeded synthetic corpus of a user's size, so speed can be measured where no such corpus is at hand.

Speed does not depend on what the words mean, only on the vocabulary size,
the number of training windows and how often each word comes up (which rows
of the embedding are touched). The corpus here draws words from a Zipf-like
distribution (the probability of the word of rank r is proportional to
``1 / r**exponent``, as in natural text), cut into poems of lines, with the
same seed giving the same corpus on every machine.

Two forms from one draw: a ``data.dataset.Dataset`` built directly from token
ids (the vocabulary is exactly ``vocab_size``: id 0 ``<unk>``, id r the word of
rank r), and a ``.txt`` corpus file that the trainers read like any other
(``write_corpus``; its vocabulary comes from the training split and
``--min-freq``, so it is a little smaller: the rarest words may be seen once;
and its line breaks are tokens of their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.dataset import Dataset, make_windows
from data.vocab import UNK, Vocab
from wordrnn.core.errors import CommandParser, UsageError, cli

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class SyntheticSize:
    """The user-sized configuration: vocabulary, training tokens, and the shape of the text."""

    vocab_size: int = 16_000
    train_tokens: int = 500_000
    val_fraction: float = 0.1  # validation tokens, as a share of the training tokens
    poem_tokens: int = 200  # mean poem length
    line_tokens: int = 8  # words per line in the corpus file
    exponent: float = 1.0  # Zipf exponent
    seed: int = 0


LARGE = SyntheticSize()


def base26(n: int) -> str:
    """Bijective base 26 in letters: 1 -> a, 26 -> z, 27 -> aa, ... (letters only: one token each)."""
    letters = []
    while n > 0:
        n, digit = divmod(n - 1, 26)
        letters.append(ALPHABET[digit])
    return "".join(reversed(letters))


def words(n: int) -> list[str]:
    """``n`` distinct lower-case words, most frequent first.

    The first are the words of the trainers' sample prompts (``wordrnn.run.loop.SAMPLE_PROMPTS``), so a
    trainer run on this corpus can write its samples at the end; the rest are letter strings.
    """
    from wordrnn.run.loop import SAMPLE_PROMPTS

    chosen = list(dict.fromkeys(w for prompt in SAMPLE_PROMPTS for w in prompt.split()))[:n]
    taken, i = set(chosen), 1
    while len(chosen) < n:
        if base26(i) not in taken:
            chosen.append(base26(i))
        i += 1
    return chosen


def zipf_probabilities(n_words: int, exponent: float = 1.0) -> np.ndarray:
    """``p[r - 1]`` proportional to ``1 / r**exponent`` for ranks r = 1..n_words, summing to 1."""
    weights = 1.0 / np.arange(1, n_words + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def draw_poems(size: SyntheticSize, n_tokens: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Poems of word ids (1..vocab_size-1, id = rank) holding ``n_tokens`` tokens in all."""
    p = zipf_probabilities(size.vocab_size - 1, size.exponent)
    ids = rng.choice(np.arange(1, size.vocab_size, dtype=np.int64), size=n_tokens, p=p)
    # poem lengths vary around the mean; the cut points are a seeded sample of positions
    n_poems = max(1, n_tokens // size.poem_tokens)
    cuts = np.sort(rng.choice(np.arange(1, n_tokens), size=n_poems - 1, replace=False)) if n_poems > 1 else []
    return list(np.split(ids, cuts))


def synthetic_poems(size: SyntheticSize = LARGE) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Training and validation poems as id arrays, from ``size.seed``."""
    rng = np.random.default_rng(size.seed)
    train = draw_poems(size, size.train_tokens, rng)
    val = draw_poems(size, max(1, round(size.val_fraction * size.train_tokens)), rng)
    return train, val


def synthetic_vocab(size: SyntheticSize = LARGE) -> Vocab:
    return Vocab([UNK, *words(size.vocab_size - 1)], min_freq=1)


def synthetic_dataset(size: SyntheticSize = LARGE, seq_len: int = 5) -> Dataset:
    """The synthetic corpus as windows of ``seq_len`` tokens, the vocabulary exactly ``size.vocab_size``."""
    train, val = synthetic_poems(size)
    train_x, train_y = make_windows(train, seq_len)
    val_x, val_y = make_windows(val, seq_len)
    return Dataset(synthetic_vocab(size), train, val, train_x, train_y, val_x, val_y)


def corpus_text(size: SyntheticSize = LARGE) -> str:
    """The same poems as text: lines of ``size.line_tokens`` words, poems separated by two blank lines."""
    train, val = synthetic_poems(size)
    table = np.array(["", *words(size.vocab_size - 1)], dtype=object)
    poems = []
    for ids in train + val:
        tokens = table[ids]
        lines = [" ".join(tokens[i:i + size.line_tokens]) for i in range(0, len(tokens), size.line_tokens)]
        poems.append("\n".join(lines))
    return "\n\n\n".join(poems) + "\n"


def write_corpus(path: Path, size: SyntheticSize = LARGE) -> Path:
    """Write the corpus as a ``.txt`` file (atomically) that ``--data`` accepts; returns ``path``."""
    from wordrnn.run.folder import atomic_write_text

    atomic_write_text(Path(path), corpus_text(size))
    return Path(path)


@cli
def main(argv: list[str] | None = None) -> int:
    """``python -m wordrnn.bench.synthetic PATH``: write the synthetic corpus file."""

    parser = CommandParser(prog="python -m wordrnn.bench.synthetic",
                                     description="Write the seeded synthetic corpus (Zipf-like words) as a .txt "
                                     "file that every trainer reads with --data.")
    parser.add_argument("path", type=Path, help="the .txt file to write")
    parser.add_argument("--vocab-size", type=int, default=LARGE.vocab_size, help="words + <unk> (default: %(default)s)")
    parser.add_argument("--train-tokens", type=int, default=LARGE.train_tokens,
                        help="training tokens (default: %(default)s); validation adds a tenth")
    parser.add_argument("--seed", type=int, default=LARGE.seed, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    size = SyntheticSize(vocab_size=args.vocab_size, train_tokens=args.train_tokens, seed=args.seed)
    check_size(size)
    write_corpus(args.path, size)
    print(f"wrote {args.path}: {size.train_tokens} training tokens, vocabulary up to {size.vocab_size}")
    return 0


def check_size(size: SyntheticSize) -> None:
    """``UsageError`` for a size no corpus can have."""
    if size.vocab_size < 2:
        raise UsageError(f"the synthetic vocabulary needs at least 2 entries (<unk> and a word), got {size.vocab_size}")
    if size.train_tokens < 2 * size.poem_tokens:
        raise UsageError(f"the synthetic corpus needs at least {2 * size.poem_tokens} training tokens, "
                         f"got {size.train_tokens}")


if __name__ == "__main__":
    raise SystemExit(main())

"""Cross-validation by poem: k folds, and inside each an inner validation split of its training poems.

Every poem is held out exactly once. Within a fold, the models learn from the
*inner training* poems; every choice (the epoch, by early stopping; the n-gram
order; the mixture weight) is made on the *inner validation* poems, which are
drawn from the fold's training poems only; the held-out poems are scored once,
at the end. The vocabulary of a fold is built from the fold's training poems
(inner training and inner validation together, never the held-out ones) with
the configured ``min_freq``, and every model of the fold is scored on the same
windows with the same ``<unk>`` mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.dataset import Dataset, make_windows
from data.vocab import Vocab
from wordrnn.core.errors import UsageError

INNER_VAL_FRACTION = 0.1


def fold_split(n_poems: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """The held-out poem indices of each of ``k`` folds: a seeded shuffle cut into near-equal parts."""
    if k < 2:
        raise UsageError(f"--folds must be at least 2, got {k}")
    if n_poems < k:
        raise UsageError(f"the corpus has {n_poems} poem(s), too few for --folds {k}; "
                         f"use --folds between 2 and {n_poems}" if n_poems >= 2 else
                         f"the corpus has {n_poems} poem; cross-validation needs at least 2 poems")
    order = np.random.default_rng(seed).permutation(n_poems)
    return [np.sort(part) for part in np.array_split(order, k)]


def inner_split(train_poems: np.ndarray, seed: int = 0,
                fraction: float = INNER_VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(inner training, inner validation) poem indices, both drawn from ``train_poems`` alone."""
    train_poems = np.asarray(train_poems)
    order = np.random.default_rng([seed, len(train_poems)]).permutation(len(train_poems))
    n_val = min(max(1, round(fraction * len(train_poems))), len(train_poems) - 1)
    return np.sort(train_poems[order[n_val:]]), np.sort(train_poems[order[:n_val]])


@dataclass
class Fold:
    index: int
    heldout: np.ndarray  # poem indices
    inner_train: np.ndarray
    inner_val: np.ndarray
    vocab: Vocab
    dataset: Dataset  # train = inner training poems, val = inner validation poems (what the loop sees)
    test_x: np.ndarray  # windows of the held-out poems [N, T]
    test_y: np.ndarray
    test_ids: list[np.ndarray]  # the held-out poems, whole (the poem context reads them from a zero state)

    @property
    def train_ids(self) -> list[np.ndarray]:
        return self.dataset.train_ids


def build_folds(tokens: list[list[str]], k: int, seq_len: int, min_freq: int, tokenizer: str = "default",
                seed: int = 0) -> list[Fold]:
    """The ``k`` folds of a tokenized corpus (one token list per poem), windows of ``seq_len``."""
    n = len(tokens)
    if n < max(k, 3):
        # each fold needs held-out poems, and its training poems must leave one for inner validation
        raise UsageError(f"the corpus has {n} poem(s), too few for --folds {k}; "
                         + (f"use --folds between 2 and {n}" if n >= 3 else "cross-validation needs at least 3"))
    folds = []
    for i, heldout in enumerate(fold_split(n, k, seed)):
        train = np.setdiff1d(np.arange(n), heldout)
        inner_train, inner_val = inner_split(train, seed)
        vocab = Vocab.build((tokens[j] for j in train), min_freq, tokenizer)
        ids = {j: vocab.encode(tokens[j]) for j in range(n)}
        sets = [[ids[j] for j in part] for part in (inner_train, inner_val, heldout)]
        (tx, ty), (vx, vy), (hx, hy) = (make_windows(s, seq_len) for s in sets)
        for what, windows in (("held-out", hx), ("inner training", tx), ("inner validation", vx)):
            if len(windows) == 0:
                raise UsageError(
                    f"fold {i + 1} of {k} has no {what} window of {seq_len + 1} tokens (the corpus has {n} "
                    f"poems); use fewer --folds (2 to {max(2, n // 4)}) or a larger corpus")
        dataset = Dataset(vocab, sets[0], sets[1], tx, ty, vx, vy)
        folds.append(Fold(i, heldout, inner_train, inner_val, vocab, dataset, hx, hy, sets[2]))
    return folds

"""From a corpus file to training and validation windows.

Poems are split (seeded) into training and validation before the vocabulary
is built, so validation words unseen in training become ``<unk>``. A window
is ``seq_len`` consecutive tokens of one poem and its target is the next
token of the same poem: windows never cross a poem boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.corpus import read_poems
from data.locate import locate_corpus
from data.tokenizer import tokenize
from data.vocab import Vocab
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError


@dataclass
class Dataset:
    vocab: Vocab
    train_ids: list[np.ndarray]  # one int64 array per training poem
    val_ids: list[np.ndarray]
    train_x: np.ndarray  # int64 [N, T]
    train_y: np.ndarray  # int64 [N]
    val_x: np.ndarray
    val_y: np.ndarray
    source: Path | None = None

    @property
    def val_oov_rate(self) -> float:
        """Share of validation targets that are ``<unk>`` (words unseen, or too rare, in training)."""
        return float(np.mean(self.val_y == 0)) if len(self.val_y) else 0.0


def split_poems(n_poems: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and validation poems: a seeded shuffle, at least one poem on each side."""
    if n_poems < 2:
        raise UsageError(f"the corpus has {n_poems} poem; at least 2 are needed to hold one out for validation")
    order = np.random.default_rng(seed).permutation(n_poems)
    n_val = min(max(1, round(val_fraction * n_poems)), n_poems - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def make_windows(poems: list[np.ndarray], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """All (window, next token) pairs inside each poem."""
    xs, ys = [], []
    for ids in poems:
        if len(ids) <= seq_len:
            continue
        view = np.lib.stride_tricks.sliding_window_view(ids, seq_len + 1)
        xs.append(view[:, :seq_len])
        ys.append(view[:, seq_len])
    if not xs:
        return np.zeros((0, seq_len), np.int64), np.zeros((0,), np.int64)
    return np.concatenate(xs).astype(np.int64), np.concatenate(ys).astype(np.int64)


def build_dataset(poems: list[str], config: Config, vocab: Vocab | None = None) -> Dataset:
    """Tokenize, split, build (or reuse) the vocabulary, cut windows."""
    tokens = [tokenize(poem, config.tokenizer) for poem in poems]
    train_idx, val_idx = split_poems(len(tokens), config.val_fraction, config.seed)
    if vocab is None:
        vocab = Vocab.build((tokens[i] for i in train_idx), config.min_freq, config.tokenizer)
    train_ids = [vocab.encode(tokens[i]) for i in train_idx]
    val_ids = [vocab.encode(tokens[i]) for i in val_idx]
    train_x, train_y = make_windows(train_ids, config.seq_len)
    val_x, val_y = make_windows(val_ids, config.seq_len)
    if len(train_x) == 0 or len(val_x) == 0:
        side = "training" if len(train_x) == 0 else "validation"
        raise UsageError(
            f"the {side} poems are too short for --seq-len {config.seq_len} (no window of "
            f"{config.seq_len + 1} tokens); use a smaller --seq-len or a larger corpus"
        )
    return Dataset(vocab, train_ids, val_ids, train_x, train_y, val_x, val_y)


def load_dataset(config: Config, vocab: Vocab | None = None) -> Dataset:
    """Locate and read the corpus named by ``config.data`` (or the defaults) and build the dataset."""
    path = locate_corpus(config.data)
    dataset = build_dataset(read_poems(path, config.text_column), config, vocab)
    dataset.source = path
    return dataset

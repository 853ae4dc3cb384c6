"""From a corpus file to training and validation poems, and from those to the chunks of an epoch.

Poems are split (seeded) into training and validation before the vocabulary
is built, so validation words unseen in training become ``<unk>``. A window
is ``seq_len`` consecutive tokens of one poem and its target is the next
token of the same poem: windows never cross a poem boundary. An epoch is laid
out as its context's layout says (``wordrnn.core.layout``): batches of windows,
or streams of whole poems (``data.streams``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.batches import batch_indices
from data.corpus import read_corpus
from data.locate import locate_corpus
from data.streams import Chunk, epoch_chunks, window_chunk
from data.tokenizer import tokenize
from data.vocab import Vocab
from wordrnn.core.errors import UsageError
from wordrnn.core.layout import Layout


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
    separator: str = ""  # how poems were told apart in the corpus file (``read_corpus``)

    @property
    def val_oov_rate(self) -> float:
        """Share of validation targets that are ``<unk>`` (words unseen, or too rare, in training)."""
        return float(np.mean(self.val_y == self.vocab.unk_id)) if len(self.val_y) else 0.0

    @property
    def poems(self) -> int:
        return len(self.train_ids) + len(self.val_ids)

    def epoch_chunks(self, layout: Layout, batch_size: int, bptt: int, seed: int, epoch: int,
                     jitter: bool = False) -> list[Chunk]:
        """The training chunks of epoch ``epoch`` in order, as ``layout`` cuts them: the same in every framework
        for the same seed (``jitter``: the poem context's chunks of variable length, ``data.streams``)."""
        if layout.carries_state:
            return epoch_chunks(self.train_ids, batch_size, bptt, seed, epoch, jitter)
        return [window_chunk(self.train_x[idx], self.train_y[idx])
                for idx in batch_indices(len(self.train_x), batch_size, seed, epoch)]

    def describe_epoch(self, layout: Layout, batch_size: int, bptt: int, jitter: bool = False) -> str:
        """What an epoch of ``layout`` reads, in words."""
        if layout.carries_state:
            chunks = f"chunks of about {bptt} (variable length)" if jitter else f"chunks of {bptt}"
            return (f"{len(self.train_ids)} training poems in {batch_size} streams, {chunks}; "
                    f"{len(self.val_ids)} validation poems")
        return f"{len(self.train_x)} training / {len(self.val_x)} validation windows"

    def describe_source(self) -> str:
        """What was read, in words: ``poems.txt: 535 poems (separated by one blank line)``."""
        how = f"from {self.separator}" if self.separator.startswith("CSV") else f"separated by {self.separator}"
        return f"{self.source}: {self.poems} poems ({how})"


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


def build_dataset(poems: list[str], *, seq_len: int, tokenizer: str = "default", min_freq: int = 2,
                  val_fraction: float = 0.1, seed: int = 0, vocab: Vocab | None = None) -> Dataset:
    """Tokenize, split, build (or reuse) the vocabulary, cut windows."""
    tokens = [tokenize(poem, tokenizer) for poem in poems]
    train_idx, val_idx = split_poems(len(tokens), val_fraction, seed)
    if vocab is None:
        vocab = Vocab.build((tokens[i] for i in train_idx), min_freq, tokenizer)
        if len(vocab) < 2:
            raise UsageError(f"--min-freq {min_freq} leaves a vocabulary of {len(vocab)} (only <unk>): no word "
                             f"occurs {min_freq} times in the training poems; use a smaller --min-freq")
    train_ids = [vocab.encode(tokens[i]) for i in train_idx]
    val_ids = [vocab.encode(tokens[i]) for i in val_idx]
    train_x, train_y = make_windows(train_ids, seq_len)
    val_x, val_y = make_windows(val_ids, seq_len)
    if len(train_x) == 0 or len(val_x) == 0:
        side = "training" if len(train_x) == 0 else "validation"
        raise UsageError(
            f"the {side} poems are too short for --seq-len {seq_len} (no window of "
            f"{seq_len + 1} tokens); use a smaller --seq-len or a larger corpus"
        )
    return Dataset(vocab, train_ids, val_ids, train_x, train_y, val_x, val_y)


def load_dataset(data: str | None = None, *, seq_len: int, text_column: str = "text", tokenizer: str = "default",
                 min_freq: int = 2, val_fraction: float = 0.1, seed: int = 0,
                 vocab: Vocab | None = None) -> Dataset:
    """Locate and read the corpus ``data`` names (or the defaults: ``locate_corpus``) and build the dataset."""
    path = locate_corpus(data)
    corpus = read_corpus(path, text_column)
    dataset = build_dataset(corpus.poems, seq_len=seq_len, tokenizer=tokenizer, min_freq=min_freq,
                            val_fraction=val_fraction, seed=seed, vocab=vocab)
    dataset.source, dataset.separator = path, corpus.separator
    return dataset

"""Seeded batches: the same seed and epoch give the same batches in every framework."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def batch_indices(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Shuffle ``range(n)`` with a generator seeded by ``[seed, epoch]`` and cut it into batches.

    The last batch holds the remainder (it is not dropped).
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]

"""Dropout masks, specified once for every framework, the gradient check and the parity checks.

Inverted dropout with rate p, in training only: mask values are 0 or 1/(1-p).
Two masks, the same for every cell:

- ``"input"`` [B, T, E]: on the RNN input vectors of the embedding model (None for one-hot);
- ``"hidden"`` [B, H]: on the last hidden state, before the output layer.

The masks of training step ``step`` are drawn by NumPy from
``default_rng([seed, step])``, input mask first, so they depend on nothing
but the seed and the step: a resumed run draws exactly the masks the
uninterrupted one would have, in any framework. Each backend converts them to
its own arrays.
"""

from __future__ import annotations

import numpy as np

from wordrnn.core.config import Config

Masks = dict[str, "np.ndarray | None"]


def mask_shapes(config: Config, batch: int, seq_len: int) -> dict[str, tuple[int, ...] | None]:
    """The shape of each mask for a batch of ``batch`` windows of ``seq_len`` tokens."""
    return {
        "input": (batch, seq_len, config.embed_dim) if config.model == "embedding" else None,
        "hidden": (batch, config.hidden_size),
    }


def draw_masks(config: Config, batch: int, seq_len: int, rng: np.random.Generator, p: float | None = None,
               dtype: type = np.float32) -> Masks:
    """Masks drawn from ``rng`` with rate ``p`` (default ``config.dropout``): each entry kept with probability 1-p."""
    p = config.dropout if p is None else p
    keep = 1.0 - p

    def draw(shape: tuple[int, ...] | None) -> np.ndarray | None:
        if shape is None:
            return None
        return ((rng.random(shape) < keep) / keep).astype(dtype)

    shapes = mask_shapes(config, batch, seq_len)
    return {"input": draw(shapes["input"]), "hidden": draw(shapes["hidden"])}


def step_masks(config: Config, step: int, batch: int, seq_len: int, dtype: type = np.float32) -> Masks | None:
    """The masks of training step ``step`` (None without dropout): a function of ``(config.seed, step)`` alone."""
    if config.dropout == 0:
        return None
    return draw_masks(config, batch, seq_len, np.random.default_rng([config.seed, step]), dtype=dtype)

"""Dropout masks, specified once for every framework, the gradient check and the parity checks.

Inverted dropout with rate p, in training only: mask values are 0 or 1/(1-p).
Two masks, the same for every cell:

- ``"input"``: on the RNN input vectors of the embedding model (None for one-hot);
- ``"hidden"``: on the hidden state the output layer reads.

The window context draws the input mask per position, [B, T, E], and the hidden mask for the one state
it scores, [B, H]. The poem context locks both masks for the whole chunk (variational dropout, Gal and
Ghahramani 2016): [B, 1, E] and [B, 1, H], one mask per stream broadcast over every position, so a
stream is read by one thinned network from the chunk's first token to its last.

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
    """The shape of each mask for a batch of ``batch`` windows (or streams) of ``seq_len`` tokens."""
    if config.context == "poem":
        return {"input": (batch, 1, config.embed_dim) if config.model == "embedding" else None,
                "hidden": (batch, 1, config.hidden_size)}
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

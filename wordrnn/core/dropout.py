"""Dropout masks, specified once for every framework, the gradient check and the parity checks.

Inverted dropout with rate p, in training only: mask values are 0 or 1/(1-p). Up to four masks, each with its
own rate (``Config.rate``), the same for every cell:

- ``"input"``: on the RNN input vectors of the embedding model (None for one-hot), rate ``--dropout-in``;
- ``"hidden"``: on the hidden state the output layer reads, rate ``--dropout-out``;
- embedding dropout (``--embed-dropout``, Gal and Ghahramani 2016 as AWD-LSTM uses it): a word of the
  vocabulary is dropped for the whole step, everywhere it occurs. It is a row mask over the embedding table,
  [V], and since ``(E * m)[x] = E[x] * m[x]`` it is folded into ``"input"``: the input mask becomes the
  per-position [B, T, E] product of the two, and no implementation needs a gradient of its own for it;
- ``"recurrent"``: DropConnect on ``rnn.w_hh`` (``--weight-drop``, AWD-LSTM's weight-drop), [G*H, H], one mask
  for the whole step: every stream and position reads the same thinned recurrent weights ``w_hh * m``, so
  d loss / d w_hh is the gradient for the thinned weights times ``m``. A stacked model thins every layer's
  ``w_hh``: the layers' masks side by side, [G*H, L*H], layer l's the columns ``l*H:(l+1)*H``;
- ``"between"``: on each layer's output where the layer above reads it (``--dropout-between``, AWD-LSTM's
  ``dropouth``), a stacked model only: the L - 1 masks side by side, [B, T or 1, (L-1)*H], the mask under
  layer l the columns ``(l-1)*H:l*H``; shaped as the input mask is.

The layout decides the input mask's shape (``wordrnn.core.layout``): independent windows draw it per position,
[B, T, E]; a chunk of streams locks it for the whole chunk (variational dropout, Gal and Ghahramani 2016),
[B, 1, E], so a stream is read by one thinned network from the chunk's first token to its last. The hidden mask
is one per row, [B, 1, H], broadcast over the positions the head reads (a window's last, or every one).

The masks of training step ``step`` are drawn by NumPy from ``default_rng([seed, step])`` in the order
input, hidden, embedding rows, recurrent, between, so they depend on nothing but the seed, the step and the
tokens: a resumed run draws exactly the masks the uninterrupted one would have, in any framework, and a run
without the later ones draws what it drew before they existed. Each backend converts them to its own arrays.
"""

from __future__ import annotations

import numpy as np

from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config

Masks = dict[str, "np.ndarray | None"]
# The masks a step gets (the embedding rows folded into "input"), and those with a row per window or stream
# (padded, sharded and cut with the batch); "recurrent" is per weight.
MASKS = ("input", "hidden", "recurrent", "between")
BATCH_MASKS = ("input", "hidden", "between")
RATES = ("input", "hidden", "embed", "recurrent", "between")


def mask_shapes(config: Config, batch: int, seq_len: int) -> dict[str, tuple[int, ...] | None]:
    """The shape of each mask for a batch of ``batch`` windows (or streams) of ``seq_len`` tokens, before the
    embedding rows are folded into ``input``; None for a mask the model has no place for."""
    embedding = config.model == "embedding"
    cell = get_cell(config.cell)
    per_position = 1 if config.layout.locked_masks else seq_len
    return {
        "input": (batch, per_position, config.embed_dim) if embedding else None,
        "hidden": (batch, 1, config.hidden_size),
        "embed": (config.vocab_size,) if embedding else None,
        "recurrent": ((cell.num_gates * config.hidden_size, config.layers * config.hidden_size)
                      if cell.recurrent_weights else None),
        "between": ((batch, per_position, (config.layers - 1) * config.hidden_size) if config.layers > 1
                    else None),
    }


def draw_masks(config: Config, batch: int, seq_len: int, rng: np.random.Generator, p: float | None = None,
               dtype: type = np.float32, x: np.ndarray | None = None) -> Masks:
    """Masks drawn from ``rng``, each entry kept with probability 1 - rate. The rates are ``config.rate(mask)``,
    or ``p`` for every mask (the checks); a mask of rate 0 is None. The embedding rows need the tokens ``x``
    [B, T] (without them no row is dropped)."""
    shapes = mask_shapes(config, batch, seq_len)

    def draw(name: str) -> np.ndarray | None:
        rate = config.rate(name) if p is None else p
        if shapes[name] is None or rate == 0:
            return None
        keep = 1.0 - rate
        return ((rng.random(shapes[name]) < keep) / keep).astype(dtype)

    masks = {"input": draw("input"), "hidden": draw("hidden")}
    rows = draw("embed")
    masks["recurrent"] = draw("recurrent")
    masks["between"] = draw("between")
    if rows is not None and x is not None:
        words = rows[np.asarray(x)][..., None]  # [B, T, 1]: E[x] * m[x]
        full = (batch, seq_len, config.embed_dim)
        masks["input"] = np.broadcast_to(words if masks["input"] is None else masks["input"] * words, full).copy()
    return masks


def has_dropout(config: Config) -> bool:
    """Whether training draws any mask (``step_masks`` is None without)."""
    return any(config.rate(name) for name in RATES)


def step_masks(config: Config, step: int, x: np.ndarray, dtype: type = np.float32) -> Masks | None:
    """The masks of training step ``step`` on tokens ``x`` [B, T] (None without dropout): a function of
    ``(config.seed, step, x)`` alone."""
    if not has_dropout(config):
        return None
    x = np.asarray(x)
    return draw_masks(config, x.shape[0], x.shape[1], np.random.default_rng([config.seed, step]), dtype=dtype, x=x)


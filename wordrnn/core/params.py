"""Canonical parameters: names, shapes, and the one seeded initializer.

Every implementation reads and writes these names (docs/DESIGN.md). The
initializer follows torch's defaults so that a freshly built ``nn.RNN`` and
ours are drawn from the same distributions, but it uses NumPy so the same
seed gives the same initial model in every framework.
"""

from __future__ import annotations

import numpy as np

from wordrnn.core.cells import CELLS, get_cell
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError

Params = dict[str, np.ndarray]

# Fixed order: the initializer draws in this order, so it is part of the format.
PARAM_NAMES = ("embedding", "rnn.w_ih", "rnn.w_hh", "rnn.b_ih", "rnn.b_hh", "out.weight", "out.bias")


def param_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """The canonical shape of every parameter the model has (embedding model only: ``embedding``)."""
    V, H, E = config.vocab_size, config.hidden_size, config.embed_dim
    GH = get_cell(config.cell).num_gates * H
    shapes = {
        "rnn.w_ih": (GH, config.input_size),
        "rnn.w_hh": (GH, H),
        "rnn.b_ih": (GH,),
        "rnn.b_hh": (GH,),
        "out.weight": (V, H),
        "out.bias": (V,),
    }
    if config.model == "embedding":
        shapes = {"embedding": (V, E), **shapes}
    return shapes


def init_params(config: Config, seed: int | None = None, dtype=np.float32) -> Params:
    """Draw the initial canonical weights.

    As torch does, for every cell: RNN and output weights and biases ~ U(-1/sqrt(H), 1/sqrt(H))
    (for ``nn.Linear`` that bound comes from kaiming_uniform(a=sqrt(5)) with
    fan_in = H), embedding ~ N(0, 1).
    """
    if config.vocab_size <= 0:
        raise ValueError("config.vocab_size must be set before initializing parameters")
    rng = np.random.default_rng(config.seed if seed is None else seed)
    bound = 1.0 / np.sqrt(config.hidden_size)
    params: Params = {}
    for name, shape in param_shapes(config).items():
        if name == "embedding":
            values = rng.standard_normal(shape)
        else:
            values = rng.uniform(-bound, bound, size=shape)
        params[name] = values.astype(dtype)
    return params


def check_params(params: Params, config: Config) -> None:
    """Raise ``UsageError`` if ``params`` do not match the shapes ``config`` implies."""
    expected = param_shapes(config)
    weights_cell = cell_of(params)
    if weights_cell is not None and weights_cell != config.cell:
        raise UsageError(f"the weights hold the {weights_cell} cell but the configuration says --cell {config.cell}; "
                         f"use --cell {weights_cell}, or weights trained with --cell {config.cell}")
    missing = sorted(set(expected) - set(params))
    if missing:
        raise UsageError(f"weights lack {', '.join(missing)}; the run folder does not hold a {config.model} model")
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise UsageError(
                f"weight {name} has shape {tuple(params[name].shape)} but the vocabulary and "
                f"config need {shape}; the weights and vocab.json come from different runs"
            )


def cell_of(params: Params) -> str | None:
    """The cell whose gate count the stacked ``rnn.w_hh`` [G*H, H] implies (None if none does, or it is absent)."""
    w_hh = params.get("rnn.w_hh")
    if w_hh is None or w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
        return None
    gates = w_hh.shape[0] // w_hh.shape[1]
    return next((name for name, cell in CELLS.items() if cell.num_gates == gates), None)

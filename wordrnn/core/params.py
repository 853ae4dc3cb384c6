"""Canonical parameters: names, shapes, and the one seeded initializer.

Every implementation reads and writes these names (docs/DESIGN.md). The
initializer follows torch's defaults so that a freshly built ``nn.RNN`` and
ours are drawn from the same distributions, but it uses NumPy so the same
seed gives the same initial model in every framework.
"""

from __future__ import annotations

import dataclasses

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
    shapes = {**get_cell(config.cell).param_shapes(config.input_size, H), "out.weight": (V, H), "out.bias": (V,)}
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
    """Raise ``UsageError`` if ``params`` do not match the names and shapes ``config`` implies (its cell named).

    The configuration names the cell; the shapes are only checked against it. The message lists the cells
    whose shapes the weights would fit, as a hint.
    """
    problem = _shape_problem(params, config)
    if problem is None:
        return
    fit = [name for name in CELLS if _shape_problem(params, dataclasses.replace(config, cell=name)) is None]
    hint = f"they fit {' or '.join('--cell ' + n for n in fit)}" if fit else "they come from another model or run"
    raise UsageError(f"the weights do not fit --cell {config.cell} of this {config.model} model ({problem}); "
                     f"{hint}: use the run's own configuration, or weights trained with --cell {config.cell}")


def _shape_problem(params: Params, config: Config) -> str | None:
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(params))
    if missing:
        return f"they lack {', '.join(missing)}"
    extra = sorted(set(params) - set(expected) - {"embedding"})
    if extra:
        return f"they hold {', '.join(extra)}, which the {config.cell} cell has not"
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            return f"{name} is {tuple(params[name].shape)}, the vocabulary and the config need {shape}"
    return None

"""Canonical parameters: names, shapes, and the one seeded initializer.

Every implementation reads and writes these names (docs/DESIGN.md). The
initializer follows torch's defaults so that a freshly built ``nn.RNN`` and
ours are drawn from the same distributions, but it uses NumPy so the same
seed gives the same initial model in every framework.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from wordrnn.core.cells import CELLS, get_cell
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError

Params = dict[str, np.ndarray]

# Fixed order: the initializer draws in this order, so it is part of the format. A tied model has ``out.proj``
# (where E differs from H) in place of ``out.weight``.
PARAM_NAMES = ("embedding", "rnn.w_ih", "rnn.w_hh", "rnn.b_ih", "rnn.b_hh", "out.proj", "out.weight", "out.bias")
# A stacked model's layer l >= 1 has the layer-0 names of its cell with the suffix ``_l{l}`` (``rnn.w_ih_l1``);
# layer 0 keeps the names above, so a one-layer model is unchanged (docs/DESIGN.md, "Stacked layers").
LAYER_SUFFIX = "_l"
# A tied model's embedding is drawn at the output layer's scale (as PyTorch's word_language_model and AWD-LSTM
# draw it): N(0, 1) rows make logits of standard deviation ~sqrt(E) at the start.
TIED_EMBEDDING_BOUND = 0.1


def layer_name(name: str, layer: int) -> str:
    """The canonical name of layer ``layer``'s copy of the layer-0 parameter ``name``."""
    return name if layer == 0 else f"{name}{LAYER_SUFFIX}{layer}"


def num_layers(params: dict) -> int:
    """How many recurrent layers ``params`` hold: 1 + the number of ``rnn.w_ih_l{l}``."""
    layers = 1
    while layer_name("rnn.w_ih", layers) in params:
        layers += 1
    return layers


def layer_slice(layer: int, hidden: int) -> slice:
    """Layer ``layer``'s columns in a stacked state [B, L*H] or a weight-drop mask [G*H, L*H]."""
    return slice(layer * hidden, (layer + 1) * hidden)


def layer_params(params: dict, layer: int) -> dict:
    """Layer ``layer``'s recurrent weights under the layer-0 names a cell's step reads (``rnn.w_ih``...)."""
    names = ("rnn.w_ih", "rnn.w_hh", "rnn.b_ih", "rnn.b_hh")
    return {name: params[layer_name(name, layer)] for name in names if layer_name(name, layer) in params}


def param_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """The canonical shape of every parameter the model has (embedding model only: ``embedding``), in the
    initializer's order: layer 0's, then each further layer's, then the output layer's."""
    V, H, E = config.vocab_size, config.hidden_size, config.embed_dim
    cell = get_cell(config.cell)
    out = {"out.weight": (V, H)} if not config.tie else {"out.proj": (E, H)} if E != H else {}
    stacked = {layer_name(name, layer): shape for layer in range(1, config.layers)
               for name, shape in cell.param_shapes(H, H).items()}
    shapes = {**cell.param_shapes(config.input_size, H), **stacked, **out, "out.bias": (V,)}
    if config.model == "embedding":
        shapes = {"embedding": (V, E), **shapes}
    return shapes


def output_weight(params: dict) -> Any:
    """The output layer's weight [V, H]: ``out.weight``, or for a tied model the embedding [V, E] times
    ``out.proj`` [E, H] (the embedding itself where E = H). Any array type with ``@`` (NumPy, torch, JAX)."""
    if "out.weight" in params:
        return params["out.weight"]
    return params["embedding"] @ params["out.proj"] if "out.proj" in params else params["embedding"]


def untie(params: Params) -> Params:
    """The same model with an output weight of its own (what an inference graph stores): unchanged if untied."""
    if "out.weight" in params:
        return params
    untied = {k: v for k, v in params.items() if k != "out.proj"}
    untied["out.weight"] = np.asarray(output_weight(params), dtype=params["out.bias"].dtype)
    return {name: untied[name] for name in canonical_order(untied)}


def canonical_order(names: Any) -> list[str]:
    """``names`` (any iterable of canonical names) in the format's order: ``PARAM_NAMES``, each further layer's
    recurrent weights after layer 0's."""
    def rank(name: str) -> tuple[int, int, int]:
        base, _, layer = name.rpartition(LAYER_SUFFIX) if LAYER_SUFFIX in name else (name, "", "0")
        group = 0 if base == "embedding" else 1 if base.startswith("rnn.") else 2
        return group, int(layer), PARAM_NAMES.index(base)

    return sorted(set(names), key=rank)


def init_params(config: Config, seed: int | None = None, dtype=np.float32) -> Params:
    """Draw the initial canonical weights.

    As torch does, for every cell: RNN and output weights and biases ~ U(-1/sqrt(H), 1/sqrt(H))
    (for ``nn.Linear`` that bound comes from kaiming_uniform(a=sqrt(5)) with
    fan_in = H), embedding ~ N(0, 1) (a tied model's ~ U(-0.1, 0.1), ``TIED_EMBEDDING_BOUND``).
    """
    if config.vocab_size <= 0:
        raise ValueError("config.vocab_size must be set before initializing parameters")
    rng = np.random.default_rng(config.seed if seed is None else seed)
    bound = 1.0 / np.sqrt(config.hidden_size)
    params: Params = {}
    for name, shape in param_shapes(config).items():
        if name == "embedding" and config.tie:
            values = rng.uniform(-TIED_EMBEDDING_BOUND, TIED_EMBEDDING_BOUND, size=shape)
        elif name == "embedding":
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

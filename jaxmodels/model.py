"""The two wordrnn models in Flax NNX, and their canonical weights in both directions.

Why NNX: the current Flax documentation recommends NNX for new code (Linen stays
supported but is the older API). NNX modules are plain Python objects that own
their parameters, so a module can hold the canonical arrays under the canonical
names (``rnn.w_ih`` is the attribute path ``rnn.w_ih``) with no ``init``/``apply``
indirection, and ``nnx.split``/``nnx.merge`` turn it into a pytree and back
whenever a pure ``jax.jit`` function wants one (see ``backend.py``).

The math lives in one pure function, ``apply``, on a dict of canonical arrays;
the modules only hold the parameters and call it. The recurrence is an explicit
``jax.lax.scan`` over a time-major input with a hand-written Elman cell: Flax's
own ``SimpleCell`` has a single bias and (in, out) kernels, so it could not hold
DESIGN.md's two biases in torch's (out, in) layout.

Dropout is not a module here: ``apply`` takes explicit masks
(``{"input": [B, T, E] or None, "hidden": [B, H] or None}``, values 0 or
``1/(1-p)``), so tests can feed the same masks to every framework and the
training step can draw them from ``(seed, step)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from wordrnn.core.config import Config
from wordrnn.core.params import PARAM_NAMES, Params, check_params

Masks = dict[str, jax.Array | None]

# torch does not use TF32 for float32 matmuls by default; neither do we, so the
# frameworks agree on a GPU as they do on the CPU (where this changes nothing).
PRECISION = jax.lax.Precision.HIGHEST


def _linear(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
    """``x W^T + b`` with W in torch's (out, in) layout."""
    return jnp.matmul(x, weight.T, precision=PRECISION) + bias


def elman_scan(w_hh: jax.Array, b_hh: jax.Array, projected: jax.Array) -> jax.Array:
    """h_T of the Elman recurrence over time-major input projections [T, B, H], h_0 = 0.

    ``projected[t]`` is ``x_t W_ih^T + b_ih``, computed for all steps at once
    outside the scan. The sums are grouped as torch's RNN kernel groups them,
    ``tanh((h W_hh^T + b_hh) + (x W_ih^T + b_ih))``.
    """

    def cell(h, x_proj):
        h = jnp.tanh(_linear(h, w_hh, b_hh) + x_proj)
        return h, None

    h0 = jnp.zeros(projected.shape[1:], projected.dtype)
    h_last, _ = jax.lax.scan(cell, h0, projected)
    return h_last


def apply(
    params: dict[str, jax.Array], x: jax.Array, masks: Masks | None = None, onehot: bool | None = None
) -> jax.Array:
    """Logits [B, V] for token ids ``x`` [B, T] (any T >= 1), from canonical arrays.

    A pure function (jit, grad and ``jax.test_util.check_grads`` apply to it).
    ``onehot`` defaults to "no ``embedding`` in ``params``"; it is accepted so a
    caller can say which model it means and be told if the weights disagree.
    """
    if onehot is None:
        onehot = "embedding" not in params
    elif onehot == ("embedding" in params):
        raise ValueError(f"onehot={onehot} but the params {'hold' if onehot else 'lack'} an embedding table")
    input_mask = masks.get("input") if masks else None
    hidden_mask = masks.get("hidden") if masks else None
    w_ih, b_ih = params["rnn.w_ih"], params["rnn.b_ih"]
    tokens = jnp.asarray(x).T  # time-major [T, B]: lax.scan walks the leading axis
    if onehot:
        if input_mask is not None:
            raise ValueError("the one-hot model takes no input dropout mask (DESIGN.md: embedding model only)")
        # x_t W_ih^T for a one-hot x_t of token k is column k of W_ih: the matmul's only
        # non-zero term is 1.0 * W_ih[:, k], which is exact, and adding zeros is exact, so
        # the lookup gives the one-hot product to the bit without the [T*B, V] matrix.
        projected = w_ih.T[tokens] + b_ih
    else:
        inputs = params["embedding"][tokens]  # [T, B, E]
        if input_mask is not None:
            inputs = inputs * jnp.swapaxes(input_mask, 0, 1)
        projected = _linear(inputs, w_ih, b_ih)
    h_last = elman_scan(params["rnn.w_hh"], params["rnn.b_hh"], projected)
    if hidden_mask is not None:
        h_last = h_last * hidden_mask
    return _linear(h_last, params["out.weight"], params["out.bias"])


class ElmanCell(nnx.Module):
    """The Elman RNN's parameters, torch layout: W_ih [H, in], W_hh [H, H], two biases [H]."""

    def __init__(self, w_ih: jax.Array, w_hh: jax.Array, b_ih: jax.Array, b_hh: jax.Array):
        self.w_ih = nnx.Param(w_ih)
        self.w_hh = nnx.Param(w_hh)
        self.b_ih = nnx.Param(b_ih)
        self.b_hh = nnx.Param(b_hh)


class Readout(nnx.Module):
    """The output layer on h_T: weight [V, H], bias [V]."""

    def __init__(self, weight: jax.Array, bias: jax.Array):
        self.weight = nnx.Param(weight)
        self.bias = nnx.Param(bias)


class WordRNN(nnx.Module):
    """Either model: optional ``embedding`` [V, E], ``rnn`` (an ``ElmanCell``), ``out`` (a ``Readout``).

    Attribute paths are the canonical names, so ``nnx.state(module)`` flattened
    with dots is the canonical dict.
    """

    def __init__(self, params: dict[str, jax.Array], onehot: bool):
        self.onehot = onehot
        if not onehot:
            self.embedding = nnx.Param(params["embedding"])
        self.rnn = ElmanCell(params["rnn.w_ih"], params["rnn.w_hh"], params["rnn.b_ih"], params["rnn.b_hh"])
        self.out = Readout(params["out.weight"], params["out.bias"])

    def arrays(self) -> dict[str, jax.Array]:
        """The current parameter values under their canonical names (traceable)."""
        arrays = {
            "rnn.w_ih": self.rnn.w_ih[...],
            "rnn.w_hh": self.rnn.w_hh[...],
            "rnn.b_ih": self.rnn.b_ih[...],
            "rnn.b_hh": self.rnn.b_hh[...],
            "out.weight": self.out.weight[...],
            "out.bias": self.out.bias[...],
        }
        if not self.onehot:
            arrays["embedding"] = self.embedding[...]
        return arrays

    def __call__(self, x: jax.Array, masks: Masks | None = None) -> jax.Array:
        return apply(self.arrays(), x, masks, onehot=self.onehot)


def build_model(config: Config, params: Params, dtype=jnp.float32) -> WordRNN:
    """The model ``config`` describes, holding the canonical weights ``params`` as ``dtype``.

    ``module(x)`` maps int token ids [B, T] (any T >= 1) to logits [B, V].
    """
    check_params(params, config)
    arrays = {name: jnp.asarray(np.asarray(value), dtype=dtype) for name, value in params.items()}
    if config.model == "onehot":
        arrays.pop("embedding", None)
    return WordRNN(arrays, onehot=config.model == "onehot")


def to_canonical(module: WordRNN) -> Params:
    """The module's weights as canonical float32 NumPy arrays (copies), in ``PARAM_NAMES`` order."""
    arrays = module.arrays()
    return {name: np.array(arrays[name], dtype=np.float32) for name in PARAM_NAMES if name in arrays}

"""The two wordrnn models in Flax NNX, and their canonical weights in both directions.

Why NNX: the current Flax documentation recommends NNX for new code (Linen stays
supported but is the older API). NNX modules are plain Python objects that own
their parameters, so a module can hold the canonical arrays under the canonical
names (``rnn.w_ih`` is the attribute path ``rnn.w_ih``) with no ``init``/``apply``
indirection, and ``nnx.split``/``nnx.merge`` turn it into a pytree and back
whenever a pure ``jax.jit`` function wants one (see ``backend.py``).

The math lives in one pure function, ``apply``, on a dict of canonical arrays,
for both contexts (a batch of windows is a chunk from a zero state scored at its
last position); the modules only hold the parameters and call it. A stacked
model runs one scan per layer: layer l's input projection for every step is
then one product over the whole chunk, as layer 0's is (docs/PERFORMANCE.md). The recurrence is an explicit
``jax.lax.scan`` over a time-major input whose body is the cell's step
(``STEPS``: torch's equations for the Elman RNN, the LSTM and the GRU, see
``wordrnn.core.cells``): Flax's own ``SimpleCell``, ``LSTMCell`` and
``GRUCell`` keep their own kernels in (in, out) layout and their own bias
arrangement, so they could not hold docs/DESIGN.md's stacked weights and two biases
in torch's (out, in) layout.

Dropout is not a module here: ``apply`` takes explicit masks
(``{"input": [B, T or 1, E] or None, "hidden": [B, 1, H] or None}``, and ``"recurrent"``
[G*H, H] for weight-drop on ``w_hh``; values 0 or ``1/(1-p)``), so tests can
feed the same masks to every framework and the
training step can draw them from ``(seed, step)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmodels import scan
from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.params import (
    Params,
    canonical_order,
    check_params,
    layer_name,
    layer_params,
    layer_slice,
    num_layers,
    output_weight,
)

Masks = dict[str, jax.Array | None]

# torch does not use TF32 for float32 matmuls by default; neither do we, so the
# frameworks agree on a GPU as they do on the CPU (where this changes nothing).
PRECISION = jax.lax.Precision.HIGHEST


def _linear(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
    """``x W^T + b`` with W in torch's (out, in) layout.

    Written as a contraction over W's second axis rather than ``x @ W.T``: for a
    single row (generation) XLA's CPU backend copies the transposed W on every
    call, which for the output layer costs more than the product itself
    (docs/PERFORMANCE.md); the contraction reads W where it lies.
    """
    return jax.lax.dot_general(x, weight, (((x.ndim - 1,), (1,)), ((), ())), precision=PRECISION) + bias


State = tuple[jax.Array, ...]  # (h,), or (h, c) for the LSTM


def elman_step(state: State, a: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> State:
    """``h' = tanh(b + a)``, grouped as torch's RNN kernel groups it: ``tanh((h W_hh^T + b_hh) + a)``."""
    (h,) = state
    return (jnp.tanh(_linear(h, w_hh, b_hh) + a),)


def relu_step(state: State, a: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> State:
    """``h' = relu(b + a)``, grouped as ``elman_step``."""
    (h,) = state
    return (jax.nn.relu(_linear(h, w_hh, b_hh) + a),)


def mingru_step(state: State, a: jax.Array, w_hh: None, b_hh: None) -> State:
    """The minimal GRU: ``z = sigmoid(a_z)``, ``h' = (1 - z) h + z a_h`` (no recurrent weights)."""
    (h,) = state
    a_z, h_tilde = jnp.split(a, 2, axis=-1)
    z = jax.nn.sigmoid(a_z)
    return ((1 - z) * h + z * h_tilde,)


def lstm_step(state: State, a: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> State:
    """torch's LSTM: gates i, f, g, o from ``a + b``; ``c' = f c + i g``, ``h' = o tanh(c')``."""
    h, c = state
    i, f, g, o = jnp.split(a + _linear(h, w_hh, b_hh), 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def gru_step(state: State, a: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> State:
    """torch's GRU: ``r, z = sigmoid(a_r + b_r), sigmoid(a_z + b_z)``; ``n = tanh(a_n + r b_n)``;
    ``h' = (1 - z) n + z h``."""
    (h,) = state
    a_r, a_z, a_n = jnp.split(a, 3, axis=-1)
    b_r, b_z, b_n = jnp.split(_linear(h, w_hh, b_hh), 3, axis=-1)
    r, z = jax.nn.sigmoid(a_r + b_r), jax.nn.sigmoid(a_z + b_z)
    n = jnp.tanh(a_n + r * b_n)
    return ((1 - z) * n + z * h,)


# one step of each cell, given the input projection a = x W_ih^T + b_ih
STEPS = {"rnn": elman_step, "lstm": lstm_step, "gru": gru_step, "rnn_relu": relu_step, "mingru": mingru_step}


def zero_state(cell: str, batch: int, hidden: int, dtype) -> State:
    zeros = jnp.zeros((batch, hidden), dtype)
    return (zeros, zeros) if get_cell(cell).has_cell_state else (zeros,)


def carried_recurrence(cell: str, w_hh: jax.Array, b_hh: jax.Array, projected: jax.Array, state: State,
                       keep: jax.Array | None, every_step: bool = True, unroll: int = 1
                       ) -> tuple[jax.Array | None, State]:
    """Every h_t [T, B, H] (None unless ``every_step``) and the final state of ``cell`` over time-major input
    projections [T, B, G*H], from ``state``; the state is multiplied by ``keep`` [T, B, 1] (0 where a poem
    starts) before each step. ``projected[t]`` is ``x_t W_ih^T + b_ih``, computed for all steps at once outside
    the scan; the scan's body is the cell's step, ``unroll`` steps per loop iteration. A cell linear in its
    state runs as a parallel scan instead (``jaxmodels.scan``)."""
    if scan.runs_parallel(cell):
        return scan.parallel_recurrence(cell, projected, state, keep, every_step)
    step = STEPS[cell]

    def body(carry, inputs):
        a, keep_t = inputs
        if keep_t is not None:
            carry = tuple(s * keep_t for s in carry)
        carry = step(carry, a, w_hh, b_hh)
        return carry, carry[0] if every_step else None

    final, hs = jax.lax.scan(body, state, (projected, keep), unroll=unroll)
    return hs, final


def recurrent_weight(weights: dict[str, jax.Array], masks: Masks | None, layer: int = 0) -> jax.Array | None:
    """One layer's ``rnn.w_hh`` (``weights``: that layer's, under layer 0's names) as the step reads it: times
    the layer's weight-drop mask (DropConnect, one for the whole step) if there is one; None for a cell without
    recurrent weights."""
    w_hh = weights.get("rnn.w_hh")
    recurrent_mask = masks.get("recurrent") if masks else None
    return w_hh if recurrent_mask is None else w_hh * recurrent_mask[:, layer_slice(layer, w_hh.shape[1])]


def input_projection(params: dict[str, jax.Array], tokens: jax.Array, input_mask: jax.Array | None,
                     onehot: bool) -> jax.Array:
    """x_t W_ih^T + b_ih for time-major ``tokens`` [T, B]: [T, B, G*H]."""
    w_ih, b_ih = params["rnn.w_ih"], params["rnn.b_ih"]
    if onehot:
        if input_mask is not None:
            raise ValueError("the one-hot model takes no input dropout mask (docs/DESIGN.md: embedding model only)")
        # x_t W_ih^T for a one-hot x_t of token k is column k of W_ih (any cell): the matmul's only
        # non-zero term is 1.0 * W_ih[:, k], which is exact, and adding zeros is exact, so
        # the lookup gives the one-hot product to the bit without the [T*B, V] matrix.
        # gathered along W_ih's column axis: indexing ``w_ih.T`` instead copies the transposed [V, G*H] matrix
        # every call, and its gradient scatters into that copy (docs/PERFORMANCE.md)
        return jnp.moveaxis(jnp.take(w_ih, tokens, axis=1), 0, -1) + b_ih
    inputs = params["embedding"][tokens]  # [T, B, E]
    if input_mask is not None:
        inputs = inputs * jnp.swapaxes(input_mask, 0, 1)  # [B, T or 1, E] -> [T or 1, B, E]
    return _linear(inputs, w_ih, b_ih)


def apply(params: dict[str, jax.Array], x: jax.Array, state: State | None = None, reset: jax.Array | None = None,
          masks: Masks | None = None, cell: str = "rnn", last_only: bool = False, unroll: int = 1,
          return_hidden: bool = False, readout: bool = True) -> tuple[jax.Array | None, ...]:
    """Logits [B, T, V] at every position of ``x`` [B, T] (or [B, V] at the last, ``last_only``: a batch of
    windows) and the state after the last position, from ``state`` (None: zero), with canonical arrays; with
    ``return_hidden`` also the last layer's output h_t [B, T, H] before the output dropout (what TAR reads).
    Without ``readout``, None in place of the logits: the caller applies the output layer itself
    (``jaxmodels.output.fused_chunk_loss``).

    ``reset`` [B, T] bool: a poem starts there, and every layer's state is zeroed before that token is read.
    Layer l >= 1 reads layer l - 1's output times the between-layers mask. A pure function (jit, grad and
    ``jax.test_util.check_grads`` apply to it); the model is one-hot where ``params`` hold no embedding table.
    """
    tokens = jnp.asarray(x).T  # time-major [T, B]: lax.scan walks the leading axis
    projected = input_projection(params, tokens, masks.get("input") if masks else None, "embedding" not in params)
    w_out = output_weight(params)
    H, L = w_out.shape[1], num_layers(params)
    if state is None:
        state = zero_state(cell, x.shape[0], L * H, projected.dtype)
    keep = None if reset is None else (1 - jnp.asarray(reset, projected.dtype)).T[:, :, None]
    between = masks.get("between") if masks else None
    finals, hs = [], None
    for layer in range(L):
        weights = layer_params(params, layer)
        if layer:
            below = hs if between is None else hs * jnp.swapaxes(between[..., layer_slice(layer - 1, H)], 0, 1)
            projected = _linear(below, weights["rnn.w_ih"], weights["rnn.b_ih"])
        own = tuple(s[:, layer_slice(layer, H)] for s in state)
        every_step = layer < L - 1 or not last_only or return_hidden  # the layer above, the head or TAR reads it
        hs, final = carried_recurrence(cell, recurrent_weight(weights, masks, layer), weights.get("rnn.b_hh"),
                                       projected, own, keep, every_step=every_step, unroll=unroll)
        finals.append(final)
    final = finals[0] if L == 1 else tuple(jnp.concatenate(parts, axis=1) for parts in zip(*finals))
    logits = None
    if readout:
        top = finals[-1][0][:, None] if last_only else jnp.swapaxes(hs, 0, 1)  # [B, 1 or T, H]
        logits = _linear(dropped_output(top, masks), w_out, params["out.bias"])
        logits = logits[:, 0] if last_only else logits
    return (logits, final, jnp.swapaxes(hs, 0, 1)) if return_hidden else (logits, final)


def dropped_output(top: jax.Array, masks: Masks | None) -> jax.Array:
    """The last layer's output [B, 1 or T, H] as the output layer reads it: times the hidden dropout mask [B, 1, H]
    (one per row, over every position the head reads) if any."""
    hidden_mask = masks.get("hidden") if masks else None
    return top if hidden_mask is None else top * hidden_mask


def weighted_cross_entropy(logits: jax.Array, y: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean cross-entropy (nats) over the targets whose weight is 1 (logits [..., V], y and weights [...]);
    padding (weight 0) adds nothing."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(losses * weights) / jnp.sum(weights)


def chunk_loss(logits: jax.Array, hidden: jax.Array | None, y: jax.Array, weights: jax.Array,
               reset: jax.Array | None = None, masks: Masks | None = None, last_only: bool = False,
               ar: float = 0.0, tar: float = 0.0) -> jax.Array:
    """The weighted mean cross-entropy of a chunk (padding, weight 0, adds nothing), plus AR and TAR on the last
    layer's output ``hidden`` [B, T, H] (``apply(..., return_hidden=True)``; None without penalties), as
    ``scratch.sequence.activation_penalties`` defines them."""
    return add_penalties(weighted_cross_entropy(logits, y, weights), hidden, weights, reset, masks, last_only, ar, tar)


def add_penalties(loss: jax.Array, hidden: jax.Array | None, weights: jax.Array, reset: jax.Array | None,
                  masks: Masks | None, last_only: bool, ar: float, tar: float) -> jax.Array:
    """``loss`` plus AR (on the dropped output) and TAR (on the output's change between positions) of the last
    layer's output ``hidden`` [B, T, H], each weighted as the chunk's positions are; ``loss`` itself when both
    are off."""
    if not (ar or tar):
        return loss
    B, T, H = hidden.shape
    w = weights.reshape(B, -1).astype(hidden.dtype)  # [B, T], or [B, 1] at a window's last position
    if ar:
        top = dropped_output(hidden[:, -w.shape[1]:], masks)  # AR reads the dropped output, as the head does
        loss = loss + ar * jnp.sum(w[..., None] * top * top) / (H * jnp.sum(w))
    if tar and T > 1:
        v = jnp.pad(w, ((0, 0), (T - 1, 0))) if last_only else w  # the weight of the change into each position
        v = v.at[:, 0].set(0)  # none into the first position
        if reset is not None:
            v = v * (1 - jnp.asarray(reset, v.dtype))  # none across a poem's start
        change = hidden[:, 1:] - hidden[:, :-1]
        total = jnp.sum(v)
        loss = loss + tar * jnp.sum(v[:, 1:, None] * change * change) / (H * jnp.where(total > 0, total, 1.0))
    return loss


class CellWeights(nnx.Module):
    """A cell's parameters, torch layout: W_ih [G*H, in], b_ih [G*H], and (a cell with recurrent weights)
    W_hh [G*H, H], b_hh [G*H]."""

    def __init__(self, w_ih: jax.Array, b_ih: jax.Array, w_hh: jax.Array | None = None,
                 b_hh: jax.Array | None = None):
        self.w_ih = nnx.Param(w_ih)
        self.b_ih = nnx.Param(b_ih)
        if w_hh is not None:
            self.w_hh = nnx.Param(w_hh)
            self.b_hh = nnx.Param(b_hh)

    def arrays(self) -> dict[str, jax.Array]:
        names = ("w_ih", "w_hh", "b_ih", "b_hh")
        return {f"rnn.{n}": getattr(self, n)[...] for n in names if hasattr(self, n)}


class Readout(nnx.Module):
    """The output layer on h_T: weight [V, H], bias [V]; a tied model's holds no weight (the embedding is), only
    the projection ``proj`` [E, H] where E differs from H."""

    def __init__(self, weight: jax.Array | None, bias: jax.Array, proj: jax.Array | None = None):
        if weight is not None:
            self.weight = nnx.Param(weight)
        if proj is not None:
            self.proj = nnx.Param(proj)
        self.bias = nnx.Param(bias)

    def arrays(self) -> dict[str, jax.Array]:
        names = ("proj", "weight", "bias")
        return {f"out.{n}": getattr(self, n)[...] for n in names if hasattr(self, n)}


class WordRNN(nnx.Module):
    """Either model, any cell: optional ``embedding`` [V, E], ``rnn`` (``CellWeights``, layer 0), ``stack`` (one
    ``CellWeights`` per further layer), ``out`` (a ``Readout``).

    Attribute paths are the canonical names, so ``nnx.state(module)`` flattened
    with dots is the canonical dict.
    """

    def __init__(self, params: dict[str, jax.Array], onehot: bool, cell: str = "rnn"):
        self.onehot = onehot
        self.cell = cell
        if not onehot:
            self.embedding = nnx.Param(params["embedding"])
        names = ("rnn.w_ih", "rnn.b_ih", "rnn.w_hh", "rnn.b_hh")
        layers = [CellWeights(*(layer_params(params, layer).get(name) for name in names))
                  for layer in range(num_layers(params))]
        self.rnn = layers[0]
        self.stack = nnx.List(layers[1:])
        self.out = Readout(params.get("out.weight"), params["out.bias"], params.get("out.proj"))

    def arrays(self) -> dict[str, jax.Array]:
        """The current parameter values under their canonical names (traceable)."""
        arrays = {**self.rnn.arrays(), **self.out.arrays()}
        for layer, weights in enumerate(self.stack, start=1):
            arrays.update({layer_name(name, layer): value for name, value in weights.arrays().items()})
        if not self.onehot:
            arrays["embedding"] = self.embedding[...]
        return arrays

    def __call__(self, x: jax.Array, state: State | None = None, reset: jax.Array | None = None,
                 masks: Masks | None = None, last_only: bool = False, unroll: int = 1, return_hidden: bool = False,
                 readout: bool = True) -> tuple[jax.Array | None, ...]:
        """Logits (None without ``readout``) and the state after the last position, and with ``return_hidden``
        the last layer's output (``apply``)."""
        return apply(self.arrays(), x, state, reset, masks, self.cell, last_only, unroll, return_hidden, readout)


def build_nnx_model(config: Config, params: Params, dtype=jnp.float32) -> WordRNN:
    """The NNX module ``config`` describes (its model and cell), holding the canonical weights ``params`` as ``dtype``.

    ``module(x, state, reset, masks, last_only)`` maps int token ids [B, T] (any T >= 1) to logits and the state
    after the last position (``apply``).
    """
    check_params(params, config)
    arrays = {name: jnp.asarray(np.asarray(value), dtype=dtype) for name, value in params.items()}
    if config.model == "onehot":
        arrays.pop("embedding", None)
    return WordRNN(arrays, onehot=config.model == "onehot", cell=config.cell)


def to_canonical(module: WordRNN) -> Params:
    """The module's weights as canonical float32 NumPy arrays (copies), in the canonical order."""
    arrays = module.arrays()
    return {name: np.array(arrays[name], dtype=np.float32) for name in canonical_order(arrays)}

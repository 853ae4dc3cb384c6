"""The output layer and its cross-entropy in one pass over blocks of rows, without a [N, V] array: JAX's form of
``torchmodels.output`` (where it runs and its block size: ``wordrnn.core.fused_output``).

``logits = h W^T + b`` then ``optax.softmax_cross_entropy_with_integer_labels`` on N = B*T rows make XLA hold
the logits [N, V], their softmax and, in the backward, the gradient of the logits, each a pass over 143 MB at
V 16,000 and 64 streams. Here a ``lax.scan`` walks the rows in blocks: per block the logits, their logsumexp, the
loss and the gradient of the logits right away (softmax minus one-hot, times the row's share of the weights),
from which the block's rows of dh are written and dW, db accumulated, while the block is in the cache. A
``jax.custom_vjp`` keeps those gradients from the forward pass; the backward only scales them by its incoming
gradient. The rows are padded to whole blocks with rows of weight 0, which add nothing.

The loss is ``wordrnn``'s weighted mean, ``sum_i w_i CE_i / sum_i w_i`` (``jaxmodels.model.weighted_cross_entropy``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxmodels.model import PRECISION, Masks, add_penalties, dropped_output
from wordrnn.core.fused_output import block_rows
from wordrnn.core.params import output_weight


def linear_cross_entropy(h: jax.Array, weight: jax.Array, bias: jax.Array, y: jax.Array, w: jax.Array,
                         rows: int | None = None) -> jax.Array:
    """``sum_i w_i CE(h_i W^T + b, y_i) / sum_i w_i`` of rows h [N, H], weight [V, H], bias [V], int targets
    y [N] and row weights w [N], computed ``rows`` rows at a time (None: ``block_rows``). Differentiable in h,
    weight and bias (once)."""
    return _linear_cross_entropy(h, weight, bias, y, w, rows or block_rows(weight.shape[0], weight.dtype.itemsize))


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def _linear_cross_entropy(h, weight, bias, y, w, rows):
    return _blocks(h, weight, bias, y, w, rows)[0]


def _forward(h, weight, bias, y, w, rows):
    loss, *grads = _blocks(h, weight, bias, y, w, rows)
    return loss, tuple(grads)


def _backward(rows, grads, g):
    return *(d * g for d in grads), None, None


_linear_cross_entropy.defvjp(_forward, _backward)


def _blocks(h: jax.Array, weight: jax.Array, bias: jax.Array, y: jax.Array, w: jax.Array, rows: int
            ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The loss and its gradients in h, weight and bias, one block of ``rows`` rows at a time."""
    n, hidden = h.shape
    rows = min(rows, n)
    blocks = -(-n // rows)
    pad = blocks * rows - n
    share = (w / jnp.sum(w)).astype(h.dtype)  # d loss / d CE_i

    def cut(a: jax.Array) -> jax.Array:  # [N, ...] -> [blocks, rows, ...], the padding rows of weight 0
        return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)).reshape(blocks, rows, *a.shape[1:])

    def block(carry, inputs):
        loss, dweight, dbias = carry
        hb, yb, sb = inputs
        z = jnp.matmul(hb, weight.T, precision=PRECISION) + bias
        z = z - jnp.max(z, axis=1, keepdims=True)  # shifted: exp cannot overflow
        e = jnp.exp(z)
        total = jnp.sum(e, axis=1)
        target = jnp.take_along_axis(z, yb[:, None], axis=1)[:, 0]
        loss = loss + jnp.sum((jnp.log(total) - target) * sb)
        dz = (e * (sb / total)[:, None]).at[jnp.arange(rows), yb].add(-sb)  # share * (softmax - one-hot)
        return ((loss, dweight + jnp.matmul(dz.T, hb, precision=PRECISION), dbias + jnp.sum(dz, axis=0)),
                jnp.matmul(dz, weight, precision=PRECISION))

    zero = (jnp.zeros((), h.dtype), jnp.zeros_like(weight), jnp.zeros_like(bias))
    (loss, dweight, dbias), dh = jax.lax.scan(block, zero, (cut(h), cut(y), cut(share)))
    return loss, dh.reshape(blocks * rows, hidden)[:n], dweight, dbias


def fused_chunk_loss(params: dict[str, jax.Array], hidden: jax.Array, y: jax.Array, weights: jax.Array,
                     reset: jax.Array | None = None, masks: Masks | None = None, last_only: bool = False,
                     ar: float = 0.0, tar: float = 0.0) -> jax.Array:
    """``jaxmodels.model.chunk_loss`` from the last layer's output ``hidden`` [B, T, H] (``apply(...,
    return_hidden=True, readout=False)``) rather than from logits: the output layer of the canonical arrays
    ``params`` and the cross-entropy run together, a block of rows at a time, with no [B*T, V] array."""
    top = dropped_output(hidden[:, -1:] if last_only else hidden, masks)
    loss = linear_cross_entropy(top.reshape(-1, top.shape[-1]), output_weight(params), params["out.bias"],
                                y.reshape(-1), weights.reshape(-1))
    return add_penalties(loss, hidden, weights, reset, masks, last_only, ar, tar)

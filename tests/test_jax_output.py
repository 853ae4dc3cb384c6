"""The output layer and its cross-entropy a block of rows at a time in JAX (``jaxmodels.output``): the loss and
every gradient equal the logits path's (``weighted_cross_entropy``) within docs/DESIGN.md's tolerances, for any
block size, for rows of weight zero and through a tied embedding (the training step: test_fused_output_step.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_fused_output_step import H, V, model_config

from jaxmodels.model import apply, build_nnx_model, chunk_loss, weighted_cross_entropy
from jaxmodels.output import fused_chunk_loss, linear_cross_entropy
from wordrnn.core.params import init_params
from wordrnn.core.tolerances import GRADIENTS, LOGITS, TINY

N = 37
DTYPES = {"float64": np.float64, "float32": np.float32}


def relative(a, b) -> float:
    """max |a - b| relative to b's largest entry (docs/DESIGN.md's gradient tolerance)."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / (np.abs(np.asarray(b)).max() + TINY))


def rows_data(dtype, n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    h, weight, bias = (jnp.asarray(rng.standard_normal(shape), dtype) for shape in ((n, H), (V, H), (V,)))
    y = jnp.asarray(rng.integers(0, V, n), jnp.int32)
    w = rng.random(n) + 0.5
    w[::4] = 0  # rows that are no target: no loss and no gradient
    return h, weight, bias, y, jnp.asarray(w, dtype)


def reference(h, weight, bias, y, w):
    return weighted_cross_entropy(h @ weight.T + bias, y, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 5, 16, N, 4 * N], ids=["1", "5", "16-not-dividing", "N", "more-than-N"])
def test_the_loss_and_each_gradient_equal_cross_entropys(dtype: str, rows: int) -> None:
    with jax.enable_x64(dtype == "float64"):
        h, weight, bias, y, w = rows_data(DTYPES[dtype])
        scale = 1.7  # the backward scales by the incoming gradient
        want, want_grads = jax.value_and_grad(lambda *a: scale * reference(*a, y, w), argnums=(0, 1, 2))(h, weight,
                                                                                                         bias)
        got, got_grads = jax.value_and_grad(lambda *a: scale * linear_cross_entropy(*a, y, w, rows),
                                            argnums=(0, 1, 2))(h, weight, bias)
        assert abs(float(got - want)) <= scale * LOGITS[DTYPES[dtype]]
        for name, ours, theirs in zip(("h", "weight", "bias"), got_grads, want_grads, strict=True):
            assert relative(ours, theirs) <= GRADIENTS[DTYPES[dtype]], name
        assert float(jnp.abs(got_grads[0][::4]).max()) == 0


@pytest.mark.parametrize("last_only", [False, True], ids=["every-position", "last-only"])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_fused_chunk_loss_equals_chunk_loss_for_every_parameter(tie: bool, last_only: bool) -> None:
    """Through the model: the output dropout, AR and TAR, and the tied embedding's gradient (the output weight
    is computed from the table inside the differentiated function, so the gradient reaches it)."""
    config = model_config(tie)
    B, T = 4, 7
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in init_params(config, dtype=np.float64).items()}
        x = jnp.asarray(rng.integers(0, V, (B, T)))
        y = jnp.asarray(rng.integers(0, V, (B,) if last_only else (B, T)))
        weights = (rng.random(y.shape) > 0.3).astype(np.float64)
        weights[0] = 1.0  # some target in the chunk
        weights = jnp.asarray(weights)
        reset = jnp.asarray(rng.random((B, T)) < 0.2)
        masks = {"hidden": jnp.asarray((rng.random((B, 1, H)) > 0.5) * 2.0)}
        settings = dict(reset=reset, masks=masks, last_only=last_only, ar=0.3, tar=0.2)

        def logits_path(p):
            logits, _, hidden = apply(p, x, None, reset, masks, config.cell, last_only, return_hidden=True)
            return chunk_loss(logits, hidden, y, weights, **settings)

        def fused_path(p):
            none, _, hidden = apply(p, x, None, reset, masks, config.cell, last_only, return_hidden=True,
                                    readout=False)
            assert none is None
            return fused_chunk_loss(p, hidden, y, weights, **settings)

        want, want_grads = jax.value_and_grad(logits_path)(params)
        got, got_grads = jax.value_and_grad(fused_path)(params)
    assert ("out.weight" in params) != tie
    assert abs(float(got - want)) <= LOGITS[np.float64]
    for name in params:
        assert relative(got_grads[name], want_grads[name]) <= GRADIENTS[np.float64], name


def test_the_nnx_module_without_readout_gives_the_hidden_states_the_head_would_read() -> None:
    config = model_config(False)
    module = build_nnx_model(config, init_params(config))
    x = jnp.asarray(np.random.default_rng(5).integers(0, V, (2, 4)))
    logits, state, hidden = module(x, return_hidden=True)
    none, state2, hidden2 = module(x, return_hidden=True, readout=False)
    assert none is None and np.array_equal(hidden, hidden2)
    assert all(np.array_equal(a, b) for a, b in zip(state, state2, strict=True))
    assert logits.shape == (2, 4, V)

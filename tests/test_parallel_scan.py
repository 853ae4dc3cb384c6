"""mingru's recurrence as a parallel scan (``jaxmodels.scan``): the same logits, final state and gradients as the
sequential ``lax.scan``, with poems starting at any position and a carried state, in float32 and float64; and
which form runs where."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmodels import scan
from jaxmodels.model import apply, weighted_cross_entropy
from wordrnn.core import tolerances
from wordrnn.core.config import Config
from wordrnn.core.params import init_params

B, T, H = 4, 13, 8


def chunk(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens, targets, weights and resets of a [B, T] chunk: a poem starting at the first position, at the last,
    at two neighbouring positions, and one stream with none."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 30, (B, T))
    y = rng.integers(0, 30, (B, T))
    weights = (rng.random((B, T)) > 0.1).astype(np.float32)
    reset = np.zeros((B, T), bool)
    reset[0, 0] = reset[1, T - 1] = reset[2, 5] = reset[2, 6] = reset[0, 9] = True
    return x, y, weights, reset


def loss_and_grads(form: str, model: str, dtype, last_only: bool = False, masks: dict | None = None):
    """The loss (cross-entropy plus the final state's sum, so the state's gradient is checked too), the logits,
    the final state and the gradients of the parameters and of the incoming state, with the recurrence in
    ``form``."""
    config = Config(model=model, cell="mingru", context="poem", vocab_size=30, hidden_size=H, embed_dim=6,
                    bptt=T, batch_size=B).validate()
    params = {k: jnp.asarray(v, dtype) for k, v in init_params(config, dtype=np.float64).items()}
    if model == "onehot":
        params.pop("embedding", None)
    x, y, weights, reset = chunk()
    state = (jnp.asarray(np.random.default_rng(1).standard_normal((B, H)), dtype),)
    if last_only:
        y, weights = y[:, -1], weights[:, -1]

    def loss(p, s):
        logits, final = apply(p, jnp.asarray(x), s, jnp.asarray(reset), masks, "mingru", last_only)
        value = weighted_cross_entropy(logits, jnp.asarray(y), jnp.asarray(weights, dtype)) + final[0].sum()
        return value, (logits, final)

    with scan.use_form(form):
        (_, (logits, final)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, state)
    return np.asarray(logits), np.asarray(final[0]), grads


@pytest.mark.parametrize(("dtype", "model", "last_only"), [
    (np.float32, "embedding", False), (np.float64, "embedding", False), (np.float32, "onehot", True)],
    ids=["float32", "float64", "float32-onehot-last-only"])
def test_the_parallel_scan_gives_the_sequential_logits_state_and_gradients(dtype, model: str, last_only: bool):
    with jax.enable_x64(dtype == np.float64):
        got = loss_and_grads("parallel", model, dtype, last_only)
        want = loss_and_grads("sequential", model, dtype, last_only)
    logits_tol, grad_tol = tolerances.LOGITS[dtype], tolerances.GRADIENTS[dtype]
    assert np.abs(got[0] - want[0]).max() <= logits_tol
    assert np.abs(got[1] - want[1]).max() <= logits_tol
    (params_got, state_got), (params_want, state_want) = got[2], want[2]
    for name in params_want:
        scale = np.abs(np.asarray(params_want[name])).max()
        assert np.abs(np.asarray(params_got[name]) - np.asarray(params_want[name])).max() <= grad_tol * scale, name
    scale = np.abs(np.asarray(state_want[0])).max()
    assert scale > 0  # the incoming state reaches the loss (stream 3 carries it to the end)
    assert np.abs(np.asarray(state_got[0]) - np.asarray(state_want[0])).max() <= grad_tol * scale


def test_the_parallel_scan_takes_dropout_masks_as_the_sequential_does():
    rng = np.random.default_rng(2)
    masks = {"input": jnp.asarray((rng.random((B, 1, 6)) > 0.3) / 0.7, jnp.float32),
             "hidden": jnp.asarray((rng.random((B, 1, H)) > 0.3) / 0.7, jnp.float32)}
    got = loss_and_grads("parallel", "embedding", np.float32, masks=masks)
    want = loss_and_grads("sequential", "embedding", np.float32, masks=masks)
    assert np.abs(got[0] - want[0]).max() <= tolerances.LOGITS[np.float32]


def test_no_gradient_crosses_a_reset_in_the_parallel_scan():
    """Stream 0's poem starts at position 0: nothing of its incoming state reaches the loss; stream 3, with no
    reset, carries it to the end."""
    _, _, (_, state_grads) = loss_and_grads("parallel", "embedding", np.float32)
    assert np.all(np.asarray(state_grads[0])[0] == 0)
    assert np.abs(np.asarray(state_grads[0])[3]).max() > 0


def recurrence_primitives(form: str) -> set[str]:
    config = Config(model="embedding", cell="mingru", vocab_size=30, hidden_size=H, embed_dim=6).validate()
    params = {k: jnp.asarray(v) for k, v in init_params(config).items()}
    x = jnp.zeros((B, T), jnp.int32)
    with scan.use_form(form):
        jaxpr = jax.make_jaxpr(lambda p: apply(p, x, cell="mingru"))(params)
    return {eqn.primitive.name for eqn in jaxpr.jaxpr.eqns}


def test_the_forms_trace_what_they_say(monkeypatch):
    """``parallel`` traces no sequential loop, ``sequential`` one ``scan``; ``auto`` is the parallel scan on an
    accelerator and the sequential one on the CPU; a cell with recurrent weights is never a parallel scan."""
    assert "scan" not in recurrence_primitives("parallel")
    assert "scan" in recurrence_primitives("sequential")
    for platform, parallel in (("cpu", False), ("gpu", True), ("tpu", True)):
        monkeypatch.setattr(jax, "default_backend", lambda platform=platform: platform)
        assert scan.runs_parallel("mingru") == parallel
        assert not scan.runs_parallel("lstm")
    with pytest.raises(ValueError, match="one of auto, parallel, sequential"):
        scan.set_form("log-space")

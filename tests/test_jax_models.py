"""The Flax models and their backend: parity with the NumPy reference, canonical weights, optimizer math."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import window_reference as ref
from cell_equations import design_logits
from conftest import window_logits, window_step
from flax import nnx
from jax.test_util import check_grads

from jaxmodels.backend import (
    JaxBackend,
    clip_by_global_norm_torch,
    make_optimizer,
    train_step,
)
from jaxmodels.model import apply, build_nnx_model, to_canonical, weighted_cross_entropy
from wordrnn.core import tolerances
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.dropout import step_masks
from wordrnn.core.errors import UsageError
from wordrnn.core.params import init_params

MODELS = ("onehot", "embedding")
TRAIN = dict(lr=0.05, clip=0.5)  # one training configuration, so the tests below share compilations


@pytest.fixture(scope="module")
def backend() -> JaxBackend:
    return JaxBackend()


def tiny_config(model: str, **overrides) -> Config:
    values = dict(model=model, vocab_size=23, hidden_size=8, embed_dim=6, seq_len=4, batch_size=5, seed=3)
    values.update(overrides)
    return Config(**values)


def batch(config: Config, n: int, seq_len: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, config.vocab_size, (n, seq_len or config.seq_len))
    return x, rng.integers(0, config.vocab_size, n)


def masks_for(config: Config, n: int, seq_len: int, p: float = 0.3, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)

    def draw(shape):
        return ((rng.random(shape) >= p) / (1 - p)).astype(np.float32)

    masks = {"input": None, "hidden": draw((n, 1, config.hidden_size))}
    if config.model == "embedding":
        masks["input"] = draw((n, seq_len, config.embed_dim))
    return masks


def window(params, x, masks=None, cell="rnn"):
    """``apply``'s logits [B, V] of windows ``x``: the chunk from a zero state, its last position."""
    return apply(params, x, masks=masks, cell=cell, last_only=True)[0]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seq_len", [4, 1])
def test_logits_match_numpy_reference(model, seq_len):
    config = tiny_config(model)
    params = init_params(config)
    x, _ = batch(config, 7, seq_len)
    got = np.asarray(build_nnx_model(config, params)(jnp.asarray(x), last_only=True)[0])
    want = ref.logits(params, x)
    assert got.shape == (7, config.vocab_size)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_logits_with_dropout_masks_match_numpy_reference(model):
    config = tiny_config(model)
    params = init_params(config)
    x, _ = batch(config, 6)
    masks = masks_for(config, 6, config.seq_len)
    got = np.asarray(window({k: jnp.asarray(v) for k, v in params.items()}, x,
                           {k: None if v is None else jnp.asarray(v) for k, v in masks.items()}))
    want, _ = ref.forward(params, x, masks)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.abs(got - ref.logits(params, x)).max() > 1e-3  # the masks did something


def test_onehot_input_mask_is_refused():
    config = tiny_config("onehot")
    params = {k: jnp.asarray(v) for k, v in init_params(config).items()}
    x, _ = batch(config, 2)
    with pytest.raises(ValueError, match="one-hot"):
        window(params, x, {"input": jnp.ones((2, 4, 6)), "hidden": None})


def test_onehot_gather_equals_onehot_matmul_bit_for_bit():
    """An embedding model whose table is the identity feeds true one-hot vectors through a matmul."""
    config = tiny_config("onehot")
    params = {k: jnp.asarray(v) for k, v in init_params(config).items()}
    x, _ = batch(config, 9)
    as_matmul = {**params, "embedding": jnp.eye(config.vocab_size, dtype=jnp.float32)}
    np.testing.assert_array_equal(np.asarray(window(params, x)), np.asarray(window(as_matmul, x)))


@pytest.mark.parametrize("model", MODELS)
def test_canonical_round_trip_is_exact(model, backend):
    config = tiny_config(model)
    params = init_params(config)
    back = to_canonical(build_nnx_model(config, params))
    assert list(back) == list(params)
    for name in params:
        assert back[name].dtype == np.float32
        np.testing.assert_array_equal(back[name], params[name])
    again = backend.canonical(backend.init(params, config))
    for name in params:
        np.testing.assert_array_equal(again[name], params[name])


@pytest.mark.parametrize("model", MODELS)
def test_gradients_match_numpy_reference(model):
    config = tiny_config(model)
    params = init_params(config)
    x, y = batch(config, 6)
    masks = masks_for(config, 6, config.seq_len)
    want_loss, want = ref.loss_and_grads(params, x, y, masks)
    jmasks = {k: None if v is None else jnp.asarray(v) for k, v in masks.items()}

    def loss(p):
        return weighted_cross_entropy(window(p, x, jmasks), jnp.asarray(y), jnp.ones(6))

    got_loss, got = jax.jit(jax.value_and_grad(loss))({k: jnp.asarray(v) for k, v in params.items()})
    assert abs(float(got_loss) - want_loss) < 1e-5
    for name in params:
        scale = np.abs(want[name]).max()
        assert np.abs(np.asarray(got[name]) - want[name]).max() <= tolerances.GRADIENTS[np.float32] * scale, name


@pytest.mark.parametrize("model", MODELS)
def test_float64_gradients_match_reference_and_finite_differences(model):
    config = tiny_config(model, vocab_size=11, hidden_size=5, embed_dim=4, seq_len=3)
    params = init_params(config, dtype=np.float64)
    x, y = batch(config, 4)
    want_loss, want = ref.loss_and_grads(params, x, y)
    with jax.enable_x64(True):
        jparams = {k: jnp.asarray(v) for k, v in params.items()}
        assert jparams["rnn.w_ih"].dtype == jnp.float64

        @jax.jit
        def loss(p):
            return weighted_cross_entropy(window(p, x), jnp.asarray(y), jnp.ones(4, jnp.float64))

        got_loss, got = jax.value_and_grad(loss)(jparams)
        check_grads(loss, (jparams,), order=1, modes=("rev",), eps=1e-6)
    assert abs(float(got_loss) - want_loss) < 1e-12
    for name in params:
        scale = np.abs(want[name]).max()
        assert np.abs(np.asarray(got[name]) - want[name]).max() <= tolerances.GRADIENTS[np.float64] * scale, name


def test_weighted_cross_entropy_ignores_padding():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    y = jnp.asarray([0, 4, 2, 1, 0, 0])
    full = weighted_cross_entropy(logits[:4], y[:4], jnp.ones(4))
    padded = weighted_cross_entropy(logits, y, jnp.asarray([1, 1, 1, 1, 0, 0], jnp.float32))
    assert abs(float(full) - float(padded)) < 1e-7
    assert abs(float(full) - float(weighted_cross_entropy(logits, y, jnp.ones(6)))) > 1e-3


@pytest.mark.parametrize(("scale", "max_norm"), [(1.0, 0.5), (1.0, 100.0), (1e-6, 1e-6)])
def test_clip_is_torch_formula(scale, max_norm):
    grads = {"a": jnp.asarray([[3.0, -4.0], [1.0, 2.0]]) * scale, "b": jnp.asarray([12.0, 0.5]) * scale}
    norm = scale * np.sqrt(9 + 16 + 1 + 4 + 144 + 0.25)
    factor = min(1.0, max_norm / (norm + 1e-6))
    tx = clip_by_global_norm_torch(max_norm)
    clipped, _ = tx.update(grads, tx.init(grads))
    for name in grads:
        np.testing.assert_allclose(np.asarray(clipped[name]), np.asarray(grads[name]) * factor, rtol=1e-6)
    if scale < 1:  # where the epsilon matters, optax's own clip (no epsilon) gives other numbers
        theirs, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
        assert abs(float(theirs["b"][0]) / float(clipped["b"][0]) - 1) > 0.05


def test_adam_with_clip_and_weight_decay_is_torch_adam():
    """Three steps of the optimizer chain against torch's Adam written out in NumPy (float64)."""
    config = Config(optimizer="adam", lr=0.01, clip=1.0, weight_decay=0.1)
    tx = make_optimizer(config)
    rng = np.random.default_rng(0)
    p = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in p.items()}
        state = tx.init(params)
        m = {k: np.zeros_like(v) for k, v in p.items()}
        v2 = {k: np.zeros_like(v) for k, v in p.items()}
        for t in range(1, 4):
            g = {k: rng.normal(size=v.shape) * 3 for k, v in p.items()}
            updates, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
            params = {k: params[k] + updates[k] for k in params}
            total = np.sqrt(sum(np.sum(x**2) for x in g.values()))
            coef = min(1.0, config.clip / (total + 1e-6))
            for k in p:
                grad = g[k] * coef + config.weight_decay * p[k]
                m[k] = 0.9 * m[k] + 0.1 * grad
                v2[k] = 0.999 * v2[k] + 0.001 * grad**2
                denom = np.sqrt(v2[k]) / np.sqrt(1 - 0.999**t) + 1e-8
                p[k] = p[k] - config.lr / (1 - 0.9**t) * m[k] / denom
            for k in p:
                np.testing.assert_allclose(np.asarray(params[k]), p[k], rtol=1e-12, atol=1e-12)


def test_sgd_is_plain_gradient_step():
    tx = make_optimizer(Config(optimizer="sgd", lr=0.5, clip=0.0))
    params = {"w": jnp.asarray([1.0, 2.0])}
    updates, _ = tx.update({"w": jnp.asarray([0.2, -0.4])}, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), [-0.1, 0.2], rtol=1e-6)


def test_train_step_is_a_pure_function_of_plain_arrays():
    """The module-level step, called without the backend: the loss of the masked model, and new weights."""
    config = tiny_config("embedding", dropout=0.25, **TRAIN)
    params = init_params(config)
    x, y = batch(config, 5)
    masks = step_masks(config, 0, x)
    graphdef, state = nnx.split(build_nnx_model(config, params), nnx.Param)
    tx = make_optimizer(config)
    jmasks = {k: None if v is None else jnp.asarray(v) for k, v in masks.items()}
    zeros = (jnp.zeros((5, config.hidden_size)),)
    new, opt_state, loss, _ = jax.jit(train_step, static_argnums=(0, 1), static_argnames="last_only")(
        graphdef, tx, state, tx.init(state), jnp.asarray(x), jnp.asarray(y), jnp.ones(5), None, zeros, jmasks,
        last_only=True)
    want, _ = ref.forward(params, x, masks)
    want_loss = float(weighted_cross_entropy(jnp.asarray(want), jnp.asarray(y), jnp.ones(5)))
    assert abs(float(loss) - want_loss) < 1e-5
    assert abs(float(loss) - ref.loss(params, x, y)) > 1e-3  # the masks were applied
    moved = to_canonical(nnx.merge(graphdef, new))
    assert all(np.abs(moved[k] - params[k]).max() > 0.5 * config.lr for k in params)


def test_backend_steps_with_the_masks_of_the_one_specification(backend):
    """The backend's step equals the pure step fed ``wordrnn.core.dropout.step_masks`` of the same step."""
    config = tiny_config("embedding", dropout=0.25, **TRAIN)
    params = init_params(config)
    x, y = batch(config, 5)
    _, loss = window_step(backend, backend.init(params, config), x, y, 7)
    masks = step_masks(config, 7, x)
    want, _ = ref.forward(params, x, masks)
    want_loss = float(weighted_cross_entropy(jnp.asarray(want), jnp.asarray(y), jnp.ones(5)))
    assert abs(float(loss) - want_loss) < 1e-5


@pytest.mark.parametrize("model", MODELS)
def test_loss_falls_on_a_tiny_problem(model, backend):
    config = tiny_config(model, **TRAIN)
    state = backend.init(init_params(config), config)
    x, y = batch(config, 20)
    losses = []
    for step in range(40):
        rows = slice(step % 4 * 5, step % 4 * 5 + 5)
        state, loss = window_step(backend, state, x[rows], y[rows], step)
        losses.append(float(loss))
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])


@pytest.mark.parametrize("model", MODELS)
def test_train_step_is_the_reference_adam_step(model, backend):
    """One backend step (clip + Adam) from the same weights and batch as the NumPy reference gradients."""
    config = tiny_config(model, **TRAIN)
    params = init_params(config)
    x, y = batch(config, 5)
    state, loss = window_step(backend, backend.init(params, config), x, y, 0)
    want_loss, grads = ref.loss_and_grads(params, x, y)
    assert abs(float(loss) - want_loss) < 1e-5
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values()))
    coef = min(1.0, config.clip / (norm + 1e-6))
    got = backend.canonical(state)
    moments = backend.optimizer_arrays(state)
    assert int(moments["adam.step"]) == 1
    for name, g in grads.items():
        g = g * coef
        # after one step Adam moves every weight by lr * g / (|g| + eps'): about lr * sign(g)
        want = params[name] - config.lr * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-3 * config.lr)
        np.testing.assert_allclose(moments[f"adam.m.{name}"], 0.1 * g, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_short_batch_is_padded_and_weighted(model, backend):
    """A batch smaller than batch_size gives the mean loss of its real windows."""
    config = tiny_config(model, **TRAIN)
    params = init_params(config)
    x, y = batch(config, 3)
    _, loss = window_step(backend, backend.init(params, config), x, y, 0)
    assert backend.padded_batch(3, config) == 5
    assert abs(float(loss) - ref.loss(params, x, y)) < 1e-5


@pytest.mark.parametrize("model, cell", [("onehot", "rnn"), ("embedding", "rnn"), ("embedding", "lstm"),
                                         ("onehot", "gru")])
def test_optimizer_state_round_trip_resumes_exactly(model, cell, backend):
    config = tiny_config(model, dropout=0.2, weight_decay=0.01, cell=cell)
    x, y = batch(config, 30)
    chunks = [(x[i:i + 5], y[i:i + 5]) for i in range(0, 30, 5)]

    state = backend.init(init_params(config), config)
    straight = []
    for step, (xb, yb) in enumerate(chunks):
        state, loss = window_step(backend, state, xb, yb, step)
        straight.append(float(loss))

    state = backend.init(init_params(config), config)
    resumed = []
    for step, (xb, yb) in enumerate(chunks[:3]):
        state, loss = window_step(backend, state, xb, yb, step)
        resumed.append(float(loss))
    weights, arrays = backend.canonical(state), backend.optimizer_arrays(state)
    assert arrays["adam.step"].dtype == np.int64 and int(arrays["adam.step"]) == 3
    state = backend.load_optimizer_arrays(backend.init(weights, config), arrays)
    for step, (xb, yb) in enumerate(chunks[3:], start=3):
        state, loss = window_step(backend, state, xb, yb, step)
        resumed.append(float(loss))
    assert resumed == straight


def test_loaded_optimizer_state_keeps_the_pytree_of_a_fresh_one(backend):
    """A resumed run reuses the compiled step: the restored state has the fresh state's containers."""
    config = tiny_config("embedding", cell="gru")
    state = backend.init(init_params(config), config)
    loaded = backend.load_optimizer_arrays(state, backend.optimizer_arrays(state))
    assert jax.tree.structure(loaded.opt_state) == jax.tree.structure(state.opt_state)


def test_sgd_has_no_optimizer_arrays(backend):
    config = tiny_config("onehot", optimizer="sgd")
    state = backend.init(init_params(config), config)
    assert backend.optimizer_arrays(state) == {}
    assert backend.load_optimizer_arrays(state, {}) is state


def test_logits_of_any_batch_and_window_length(backend):
    config = tiny_config("embedding", **TRAIN)
    params = init_params(config)
    state = backend.init(params, config)
    for n, t in [(1, 1), (3, 2), (17, 4)]:
        x, _ = batch(config, n, t)
        got = window_logits(backend, state, x)
        assert got.dtype == np.float32 and got.shape == (n, config.vocab_size)
        np.testing.assert_allclose(got, ref.logits(params, x), rtol=0, atol=1e-5)


# -- every cell ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("model", MODELS)
def test_every_cell_matches_the_reference_loop(cell, model):
    """float64 logits of each cell, windows of 1 and seq_len tokens, with masks, against the equations."""
    config = tiny_config(model, cell=cell)
    params = init_params(config, dtype=np.float64)
    with jax.enable_x64(True):
        jparams = {k: jnp.asarray(v) for k, v in params.items()}
        for steps in (1, config.seq_len):
            x, _ = batch(config, 6, steps, seed=steps)
            masks = masks_for(config, 6, steps)
            jmasks = {k: None if v is None else jnp.asarray(v, jnp.float64) for k, v in masks.items()}
            got = np.asarray(window(jparams, x, jmasks, cell=cell))
            want = design_logits(params, x, {k: None if v is None else v.astype(np.float64)
                                             for k, v in masks.items()}, cell)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    module = build_nnx_model(config, params)
    assert module.cell == cell
    assert {k: v.shape for k, v in module.rnn.arrays().items()} == CELLS[cell].param_shapes(config.input_size, 8)


@pytest.mark.parametrize("cell", [c for c in CELLS if c != "rnn"])
@pytest.mark.parametrize("model", MODELS)
def test_every_cell_passes_finite_differences(cell, model):
    config = tiny_config(model, vocab_size=11, hidden_size=5, embed_dim=4, seq_len=3, cell=cell)
    params = init_params(config, dtype=np.float64)
    x, y = batch(config, 4)
    with jax.enable_x64(True):
        jparams = {k: jnp.asarray(v) for k, v in params.items()}

        @jax.jit
        def loss(p):
            return weighted_cross_entropy(window(p, x, cell=cell), jnp.asarray(y), jnp.ones(4, jnp.float64))

        check_grads(loss, (jparams,), order=1, modes=("rev",), eps=1e-6)


def test_weights_of_another_cell_are_refused():
    """``build_nnx_model`` checks the weights against the configuration's cell (``check_params``, the one home)."""
    config = tiny_config("embedding", cell="lstm")
    with pytest.raises(UsageError, match="do not fit --cell gru"):
        build_nnx_model(replace(config, cell="gru"), init_params(config))

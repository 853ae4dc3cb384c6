"""scratch.optim: clipping, SGD and Adam against the formulas written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scratch.optim import SGD, Adam, AdamW, clip_by_global_norm


def tiny(dtype=np.float64) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Two small parameters and three steps of gradients."""
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((2, 3)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in range(3)]
    return params, grads


def test_clip_scales_everything_by_one_factor_when_the_norm_is_too_large() -> None:
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}  # global norm 5
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == 5.0
    factor = 1.0 / (5.0 + 1e-6)
    np.testing.assert_array_equal(clipped["a"], np.array([3.0, 0.0]) * factor)
    np.testing.assert_array_equal(clipped["b"], np.array([[0.0], [4.0]]) * factor)
    assert clipped["a"] is grads["a"]  # in place, like torch's clip_grad_norm_


def test_clip_leaves_small_gradients_alone_and_keeps_the_dtype() -> None:
    grads = {"a": np.array([0.3, 0.4], np.float32)}
    _, norm = clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], np.array([0.3, 0.4], np.float32))
    clip_by_global_norm(grads, 0.1)
    assert grads["a"].dtype == np.float32
    assert np.linalg.norm(grads["a"]) == pytest.approx(0.1, rel=1e-5)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_sgd_is_p_minus_lr_times_g_plus_wd_p(wd: float) -> None:
    params, grads = tiny()
    expected = {k: v.copy() for k, v in params.items()}
    before = {k: g.copy() for k, g in grads[0].items()}
    sgd = SGD(params, lr=0.3, weight_decay=wd)
    sgd.update(params, grads[0])
    for k in params:
        expected[k] = expected[k] - 0.3 * (grads[0][k] + wd * expected[k])
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-15, atol=1e-15)
        np.testing.assert_array_equal(grads[0][k], before[k])  # gradients are not consumed
    assert sgd.state_arrays() == {}


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_follows_the_torch_formula(wd: float) -> None:
    params, grads = tiny()
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    ref = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    adam = Adam(params, lr=lr, weight_decay=wd)
    for t, g in enumerate(grads, start=1):
        adam.update(params, g)
        for k in ref:
            gk = g[k] + wd * ref[k]
            m[k] = b1 * m[k] + (1 - b1) * gk
            v[k] = b2 * v[k] + (1 - b2) * gk**2
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            ref[k] = ref[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
            np.testing.assert_allclose(params[k], ref[k], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(adam.m[k], m[k], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(adam.v[k], v[k], rtol=1e-12, atol=1e-15)
    assert adam.step == 3


@pytest.mark.parametrize("name, ours_class, weight_decay", [("Adam", Adam, 0.01), ("AdamW", AdamW, 0.1)])
def test_matches_torch_with_clipping_and_weight_decay(name: str, ours_class: type, weight_decay: float) -> None:
    torch = pytest.importorskip("torch")
    params, grads = tiny(np.float32)
    weights = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in params.values()]
    theirs = getattr(torch.optim, name)(weights, lr=0.05, weight_decay=weight_decay)
    ours = ours_class(params, lr=0.05, weight_decay=weight_decay)
    for g in grads:
        for w, gk in zip(weights, g.values()):
            w.grad = torch.from_numpy(gk.copy())
        torch.nn.utils.clip_grad_norm_(weights, 1.5)
        theirs.step()
        clip_by_global_norm(g, 1.5)
        ours.update(params, g)
    for w, p in zip(weights, params.values()):
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, w.detach().numpy(), rtol=0, atol=1e-6)


def test_adamw_decays_the_parameters_apart_from_the_gradient() -> None:
    params, grads = tiny()
    lr, wd = 0.01, 0.1
    start = {k: v.copy() for k, v in params.items()}
    plain, decoupled = Adam({k: v.copy() for k, v in params.items()}, lr=lr), AdamW(params, lr=lr, weight_decay=wd)
    shrunk = {k: v * (1 - lr * wd) for k, v in start.items()}  # p <- p (1 - lr wd), then Adam on the same g
    plain.update(shrunk, grads[0])
    decoupled.update(params, grads[0])
    for k in params:
        np.testing.assert_allclose(params[k], shrunk[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(decoupled.m[k], plain.m[k])  # the moments never see the decay
    assert sorted(decoupled.state_arrays()) == ["adamw.m.a", "adamw.m.b", "adamw.step", "adamw.v.a", "adamw.v.b"]


def test_adam_state_round_trips_under_canonical_names() -> None:
    params, grads = tiny(np.float32)
    first = Adam(params, lr=0.01)
    first.update(params, grads[0])
    arrays = first.state_arrays()
    assert sorted(arrays) == ["adam.m.a", "adam.m.b", "adam.step", "adam.v.a", "adam.v.b"]
    assert arrays["adam.step"].dtype == np.int64 and int(arrays["adam.step"]) == 1
    copy = {k: v.copy() for k, v in params.items()}
    second = Adam(copy, lr=0.01)
    second.load_state_arrays(arrays)
    first.update(params, grads[1])
    second.update(copy, grads[1])
    for k in params:
        np.testing.assert_array_equal(params[k], copy[k])

"""Logits and gradients of NumPy, PyTorch and Flax from the same weights and batch (docs/DESIGN.md tolerances).

Float32: logits within 1e-5, every parameter's gradient within 1e-5 of the
largest entry of that gradient; float64 (torch double, jax x64): 1e-10. Also
with fixed dropout masks fed to all three, for windows shorter than
``seq_len`` and a batch of one, and for torch's gather form of the one-hot model.
"""

from __future__ import annotations

import numpy as np
import pytest

from data.dataset import load_dataset
from wordrnn.core import tolerances
from wordrnn.core.config import Config
from wordrnn.testing import parity as pc

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


def failures(checks: list[pc.Check]) -> list[str]:
    return [str(c) for c in checks if not c.passed]


@DTYPES
def test_logits_and_gradients_agree(problem, dtype):
    checks = pc.pass_checks(problem.config, problem.params, problem.x, problem.y, None, dtype)
    assert [c.name.split()[0] for c in checks].count("grad") == len(problem.params)
    assert failures(checks) == []


@DTYPES
def test_fixed_dropout_masks_agree(problem, dtype):
    config, masks = problem.config, problem.masks
    assert masks["hidden"] is not None and (masks["input"] is not None) == (config.model == "embedding")
    checks = pc.pass_checks(config, problem.params, problem.x, problem.y, masks, dtype, label="masks")
    assert failures(checks) == []

    # each mask changes the answer by far more than the tolerance, so ignoring one could not pass
    def logits(chosen: pc.Masks) -> np.ndarray:
        return pc.forward_backward("numpy", config, problem.params, problem.x, problem.y, chosen, dtype).logits

    masked = logits(masks)
    for dropped in [k for k, v in masks.items() if v is not None]:
        assert pc.max_abs_diff(logits(dict(masks, **{dropped: None})), masked) > 1e3 * tolerances.LOGITS[dtype]


# Each new window shape costs a JAX compilation (a second or more of CPU). By default, float64 (the
# tighter tolerance) on two shapes: the whole batch at T = 1 (no recurrent term), and one window of
# T = 2 (one recurrent step; generation from a two-word prompt). The slow set sweeps every T from 1 to
# seq_len, with the whole batch and with one window, in float32 too.
@pytest.mark.parametrize("dtype, sweep", [
    (np.float64, False),
    pytest.param(np.float64, True, marks=pytest.mark.slow),
    pytest.param(np.float32, True, marks=pytest.mark.slow),
], ids=["f64", "f64-every-T", "f32-every-T"])
def test_short_windows_and_a_batch_of_one(problem, dtype, sweep):
    seq_len, batch = problem.config.seq_len, problem.config.batch_size
    shapes = [(batch, 1), (1, 2)]
    if sweep:
        shapes = [(rows, t) for t in range(1, seq_len + 1) for rows in (batch, 1)]
    for rows, steps in shapes:
        x, y = problem.x[:rows, seq_len - steps:], problem.y[:rows]
        checks = pc.pass_checks(problem.config, problem.params, x, y, None, dtype, label=f"B{rows} T{steps}")
        assert failures(checks) == []


@pytest.mark.parametrize("model", ["onehot"])
@DTYPES
def test_torch_onehot_gather_form_agrees(problem, dtype):
    frameworks = ("numpy", "torch", "torch-gather", "jax")
    checks = pc.pass_checks(problem.config, problem.params, problem.x, problem.y, None, dtype, frameworks)
    assert failures(checks) == []


def test_a_wrong_implementation_is_caught(problem):
    """A recurrent weight (W_ih for a cell without one) with its rows reversed (for the LSTM and GRU: gate blocks
    swapped) given to one framework fails the logits and gradient checks."""
    name = "rnn.w_hh" if "rnn.w_hh" in problem.params else "rnn.w_ih"
    wrong = dict(problem.params, **{name: problem.params[name][::-1].copy()})
    passes = {fw: pc.forward_backward(fw, problem.config, params, problem.x, problem.y, None, np.float64)
              for fw, params in (("numpy", problem.params), ("torch", wrong))}
    checks = {c.name: c for c in pc.compare_passes(problem.config, passes, np.float64)}
    assert not checks["logits f64"].passed
    assert not checks[f"grad {name} f64"].passed


@pytest.mark.slow
@DTYPES
def test_benchmark_sizes_on_real_windows(real_corpus, model, dtype):
    """The benchmark configuration's sizes and vocabulary, on the first batch of real training windows."""
    config = Config(model=model, data=str(real_corpus))
    dataset = load_dataset(**config.dataset_args())
    config.vocab_size = len(dataset.vocab)
    x, y = dataset.train_x[:config.batch_size], dataset.train_y[:config.batch_size]
    checks = pc.pass_checks(config, pc.random_params(config), x, y, None, dtype)
    assert failures(checks) == []

"""The trajectory check's error model (docs/DESIGN.md): weights over the tolerance pass only where the
trajectories show Adam amplifying a gradient present on one side only (a ReLU at its kink), and a real bug fails.

The benchmark-sized one-hot ``rnn_relu`` problem of ``python -m wordrnn.bench.parity`` is the case found: after 15
(window) or 16 (poem) steps in agreement, a pre-activation within 2e-7 of zero is on in NumPy and off in JAX, so
one entry of ``rnn.w_ih`` that no earlier batch reached has a gradient in one and none in the other, and Adam,
which scales each entry's step by its own history, moves it by about lr on one side only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from scratch import cells
from wordrnn.bench.parity import markdown_table
from wordrnn.core import tolerances
from wordrnn.testing import parity as pc

BENCH = {"vocab_size": 1823, "hidden_size": 128, "embed_dim": 100, "seq_len": 5, "batch_size": 64}


def weights_check(checks: list[pc.Check]) -> pc.Check:
    return next(c for c in checks if c.name.endswith(": weights"))


def test_a_relu_at_its_kink_is_explained_not_refused():
    problem = pc.random_problem("onehot", **BENCH, cell="rnn_relu")
    config, batches = pc.trajectory_problem(replace(problem.config, lr=1e-3, weight_decay=0.0), problem.params)
    weights = weights_check(pc.trajectory_checks(config, problem.params, batches, ("numpy", "jax")))
    assert weights.diffs["numpy-jax"] > tolerances.TRAJECTORY  # the case: over the tolerance
    assert weights.passed, str(weights)
    why = weights.explained["numpy-jax"]
    assert "part at step 15" in why and "rnn.w_ih[41, 245]" in why, why


@pytest.mark.slow
def test_a_relu_at_its_kink_in_a_carried_state_is_explained():
    problem = pc.random_poem_problem("onehot", **BENCH, cell="rnn_relu", bptt=20)
    checks = pc.poem_trajectory_checks(replace(problem.config, lr=1e-3), problem.params, 20,
                                       frameworks=("numpy", "jax"))
    weights = weights_check(checks)
    assert weights.diffs["numpy-jax"] > tolerances.TRAJECTORY
    assert weights.passed and "part at step 16" in weights.explained["numpy-jax"], str(weights)


# --- a real bug is not explained ---

SMALL_POEM = {"vocab_size": 50, "hidden_size": 16, "embed_dim": 12, "seq_len": 5, "batch_size": 7}


def poem_weights(frameworks: tuple[str, ...] = ("numpy", "torch")) -> pc.Check:
    problem = pc.random_poem_problem("onehot", **SMALL_POEM, cell="rnn_relu", bptt=6)
    config = replace(problem.config, lr=1e-2)
    return weights_check(pc.poem_trajectory_checks(config, problem.params, 12, frameworks=frameworks))


def test_the_small_problem_passes_as_it_is():
    assert poem_weights().passed


def flipped_relu_backward(p, saved, d_state):
    """``cells.rnn_relu_backward`` with the sign of the recurrent side's gradient flipped (so W_hh's and b_hh's)."""
    h_prev, h = saved
    (dh,) = d_state
    dz = dh * (h > 0)
    return dz, -dz, (dz @ p["rnn.w_hh"],)  # the bug: dz in the cell's equations


def test_a_sign_flipped_in_a_cells_gradient_fails(monkeypatch):
    monkeypatch.setitem(cells.STEPS, "rnn_relu", cells.CellSteps(cells.rnn_relu_forward, flipped_relu_backward))
    weights = poem_weights()
    assert not weights.passed and not weights.explained, str(weights)


class StateDropped:
    """A backend whose ``train_step`` never passes the state back: every chunk starts from zero."""

    def __init__(self, backend):
        self.backend = backend

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def train_step(self, state, chunk, carry, step):
        return self.backend.train_step(state, chunk, None, step)


def test_a_state_not_passed_back_between_chunks_fails(monkeypatch):
    real = pc.backend_for
    monkeypatch.setattr(pc, "backend_for", lambda fw, device="cpu": StateDropped(real(fw, device))
                        if fw == "numpy" else real(fw, device))
    weights = poem_weights()
    assert not weights.passed and not weights.explained, str(weights)


# --- the rule on recorded trajectories: what it reads and what it refuses ---

def recorded(gradients: list[np.ndarray], losses: list[float], final: np.ndarray) -> pc.Trajectory:
    """A trajectory of one parameter whose Adam first moments come from ``gradients`` (beta1 0.9)."""
    moments, m = [], np.zeros_like(gradients[0])
    for g in gradients:
        m = 0.9 * m + 0.1 * g
        moments.append({"w": m.copy()})
    return pc.Trajectory(np.array(losses), {"w": final}, moments)


def test_the_rule_needs_a_step_in_agreement_a_one_sided_gradient_and_the_losses_in_agreement():
    config = pc.make_config("onehot", 50, 16, 12, 5, 7)
    common = [np.array([1.0, -0.5, 0.0]), np.array([0.8, -0.4, 0.0])]
    kink_a, kink_b = np.array([0.7, -0.3, 1e-3]), np.array([0.7, -0.3, 0.0])  # entry 2: on one side only
    a = recorded([*common, kink_a], [3.0, 2.9, 2.8], np.array([0.0, 0.0, 0.0]))
    b = recorded([*common, kink_b], [3.0, 2.9, 2.8], np.array([0.0, 0.0, 2e-3]))
    assert "part at step 2, where w[2]" in pc.explain_weights(config, a, b)
    # a sign flipped: the two part at the first step
    flipped = recorded([-common[0], -common[1], -kink_a], [3.0, 2.9, 2.8], np.array([0.0, 0.0, 2e-3]))
    assert pc.explain_weights(config, a, flipped) is None
    # both sides have the gradient (no zero on one side): not a kink
    both = recorded([*common, np.array([0.7, -0.3, 2e-3])], [3.0, 2.9, 2.8], np.array([0.0, 0.0, 2e-3]))
    assert pc.explain_weights(config, a, both) is None
    # the loss parts with them: the forward differs, not the kink
    lossy = recorded([*common, kink_b], [3.0, 2.9, 2.81], np.array([0.0, 0.0, 2e-3]))
    assert pc.explain_weights(config, a, lossy) is None
    # no optimizer moments (SGD): nothing to read the cause from
    assert pc.explain_weights(config, pc.Trajectory(a.losses, a.params), pc.Trajectory(b.losses, b.params)) is None


def test_an_explained_pair_passes_and_says_why():
    check = pc.Check("onehot", "weights", tolerances.TRAJECTORY, {"a-b": 1e-6, "a-c": 1e-3})
    assert not check.passed
    check.explained["a-c"] = "a ReLU at its kink"
    assert check.passed and "a-c explained: a ReLU at its kink" in str(check)
    assert "pass, explained below" in markdown_table([check])
    check.diffs["a-b"] = 1e-3  # another pair over the tolerance, unexplained
    assert not check.passed

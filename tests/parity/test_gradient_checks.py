"""Each implementation's gradients against finite differences, in float64.

The NumPy reference's hand-written BPTT against central differences
(``scratch.gradcheck``, docs/DESIGN.md's 1e-6 per parameter), and the autodiff
frameworks with their own checkers: ``torch.autograd.gradcheck`` on the torch
model and ``jax.test_util.check_grads`` on ``jaxmodels.model.apply``. (That
torch and Flax agree with the NumPy gradients entry by entry, to 1e-10, is
``test_forward_backward.py``.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.test_util import check_grads

from scratch.gradcheck import check_gradients
from torchmodels.model import CANONICAL, build_module
from wordrnn.core.tolerances import FINITE_DIFFERENCE
from wordrnn.testing import parity as pc

MASKS = pytest.mark.parametrize("with_masks", [False, True], ids=["no-masks", "fixed-masks"])


def masks_of(problem: pc.Problem, with_masks: bool) -> pc.Masks | None:
    return problem.masks if with_masks else None


@MASKS
def test_numpy_bptt_matches_central_differences(problem, with_masks):
    params = {k: v.copy() for k, v in problem.params.items()}
    errors = check_gradients(params, problem.x, problem.y, masks_of(problem, with_masks), cell=problem.config.cell)
    assert set(errors) == set(problem.params)
    assert max(errors.values()) <= FINITE_DIFFERENCE, errors


@MASKS
def test_torch_autograd_gradcheck(problem, with_masks):
    module = build_module(problem.config, problem.params, dtype=torch.float64)
    names = list(problem.params)
    values = tuple(torch.from_numpy(problem.params[n].copy()).requires_grad_() for n in names)
    masks = pc.torch_masks(masks_of(problem, with_masks), np.float64)
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)

    def loss(*tensors):
        state = {CANONICAL[n]: t for n, t in zip(names, tensors)}
        logits, _ = torch.func.functional_call(module, state, (x, None, None, masks, True))
        return F.cross_entropy(logits, y)

    # fast mode: finite differences along random directions, not entry by entry (the NumPy check's job)
    assert torch.autograd.gradcheck(loss, values, fast_mode=True)


# With masks only: that path runs every operation of the unmasked one. The embedding model's apply
# runs every operation of the one-hot model's but the column lookup of W_ih, whose gradient the
# float64 comparison with NumPy covers; checking the one-hot model here too is in the slow set.
@pytest.mark.parametrize("model", ["embedding", pytest.param("onehot", marks=pytest.mark.slow)])
def test_jax_check_grads_on_apply(problem):
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in problem.params.items()}
        masks = pc.jax_masks(problem.masks, np.float64)
        x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)
        assert params["rnn.w_ih"].dtype == jnp.float64

        @jax.jit
        def loss(p):
            return pc.jax_loss(p, x, y, jnp.ones(len(y)), None, None, masks, problem.config.cell, True)[0]

        # a small step: the relu cell is not differentiable at 0, and a step of 1e-4 can cross a unit's kink
        check_grads(loss, (params,), order=1, modes=("rev",), eps=1e-6)


def test_the_finite_difference_check_catches_a_wrong_gradient(problem):
    """The reference check fails when the gradient under test is off (here: W_hh's rows reversed; W_ih's for a
    cell without W_hh)."""
    from scratch.sequence import loss_and_grads

    name = "rnn.w_hh" if "rnn.w_hh" in problem.params else "rnn.w_ih"

    def wrong(params, x, y, masks=None):
        loss, grads, _ = loss_and_grads(params, x, y, cell=problem.config.cell, masks=masks, last_only=True)
        grads[name] = grads[name][::-1].copy()  # the rows (gate units) in reverse order
        return loss, grads

    params = {k: v.copy() for k, v in problem.params.items()}
    errors = check_gradients(params, problem.x, problem.y, cell=problem.config.cell, loss_and_grads=wrong)
    assert errors[name] > 1e3 * FINITE_DIFFERENCE

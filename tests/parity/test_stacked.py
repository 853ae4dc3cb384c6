"""Stacked layers and the activation penalties (AR, TAR): the NumPy reference's hand-written gradient against
finite differences, and the three frameworks against each other, for every cell, in both contexts.

A 3-layer model with every dropout mask on (input, whole words, between the layers, weight-drop on every
layer's ``w_hh``, the output), AR and TAR on; the poem context's chunk has a poem starting inside it and
a random state carried in.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scratch import sequence
from scratch.gradcheck import check_gradients
from wordrnn.core import cells
from wordrnn.core.dropout import draw_masks
from wordrnn.core.tolerances import FINITE_DIFFERENCE
from wordrnn.testing import parity as pc

SIZES = {"vocab_size": 23, "hidden_size": 6, "embed_dim": 5, "seq_len": 4, "batch_size": 3}
LEVERS = {"layers": 3, "ar": 2.0, "tar": 1.0}
CONTEXTS = ("window", "poem")
CELLS = tuple(cells.CELLS)


def cases(default: set[tuple[str, ...]]) -> list:
    """Every (model, cell, context), those not in ``default`` (model, cell) in the slow set: the embedding model's
    stack is the one-hot model's above layer 0, so the fast set holds every cell of the one and one of the other."""
    return [pytest.param(model, cell, context, marks=() if (model, cell) in default else pytest.mark.slow,
                         id=f"{model}-{cell}-{context}")
            for model in ("embedding", "onehot") for cell in CELLS for context in CONTEXTS]


FAST = {("embedding", cell) for cell in CELLS} | {("onehot", "gru")}


def stacked_problem(model: str, cell: str, context: str, **levers) -> tuple[pc.Config, pc.Params, list, tuple, dict]:
    """Config, float64 weights, the chunks, the state in and the masks of one stacked problem."""
    levers = {**LEVERS, **levers}
    if context == "window":
        problem = pc.random_problem(model, **SIZES, cell=cell, **levers)
        chunks, state = [pc.window_chunk(problem.x, problem.y)], None
        return problem.config, problem.params, chunks, state, problem.masks
    problem = pc.random_poem_problem(model, **SIZES, cell=cell, bptt=10, chunks=1, **levers)
    return problem.config, problem.params, problem.chunks, problem.state, problem.masks


@pytest.mark.parametrize("model, cell, context", cases(FAST))
def test_numpy_stacked_gradient_with_penalties_matches_central_differences(model, cell, context):
    config, params, chunks, state, masks = stacked_problem(model, cell, context)
    (chunk,) = chunks
    assert config.layers == 3 and masks["between"] is not None and masks["hidden"] is not None
    if context == "poem":
        assert chunk.reset[:, 1:].any(), "a poem starts inside the chunk"
    args = dict(weights=chunk.weights, cell=cell, state=state, reset=chunk.reset, last_only=chunk.last_only,
                ar=config.ar, tar=config.tar)

    def loss_and_grads(p, x, y, m):
        return sequence.loss_and_grads(p, x, y, masks=m, **args)[:2]

    def loss(p, x, y, m):
        return sequence.loss(p, x, y, masks=m, **args)

    own = {k: v.copy() for k, v in params.items()}
    errors = check_gradients(own, chunk.x, chunk.y, masks, loss_and_grads=loss_and_grads, loss=loss, entries=25)
    assert {"rnn.w_ih_l1", "rnn.w_ih_l2", "rnn.b_ih_l2"} <= set(errors)
    assert max(errors.values()) <= FINITE_DIFFERENCE, errors


@pytest.mark.parametrize("context", CONTEXTS)
def test_the_penalties_are_in_the_loss_and_its_gradient(context):
    """AR and TAR change the loss and every recurrent gradient (a penalty dropped from the objective, or from its
    gradient alone, fails here or in the finite-difference check above)."""
    config, params, chunks, state, masks = stacked_problem("embedding", "lstm", context)
    (chunk,) = chunks
    common = dict(weights=chunk.weights, cell="lstm", state=state, reset=chunk.reset, masks=masks,
                  last_only=chunk.last_only)
    plain, g_plain, _ = sequence.loss_and_grads(params, chunk.x, chunk.y, **common)
    for ar, tar in ((2.0, 0.0), (0.0, 1.0)):
        penalized, g, _ = sequence.loss_and_grads(params, chunk.x, chunk.y, ar=ar, tar=tar, **common)
        assert penalized > plain
        assert not np.allclose(g["rnn.w_hh_l2"], g_plain["rnn.w_hh_l2"])
        assert np.array_equal(g["out.bias"], g_plain["out.bias"])  # the penalties read the RNN, not the head


@pytest.mark.parametrize("model, cell, context", cases(FAST))
@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)],
                         ids=["float32", "float64"])
def test_frameworks_agree_on_a_stacked_model_with_every_lever(model, cell, context, dtype):
    """Logits, loss, the state out and every gradient of NumPy, PyTorch and Flax at DESIGN's tolerances."""
    config, params, chunks, state, masks = stacked_problem(model, cell, context)
    passes = {fw: pc.PASSES[fw](config, params, chunks, state, masks, dtype) for fw in pc.FRAMEWORKS}
    checks = pc.compare_passes(config, passes, dtype, f"{context}, 3 layers, AR and TAR")
    assert checks and all(check.passed for check in checks), "\n".join(map(str, checks))
    if context == "poem":
        assert passes["numpy"].state[0].shape == (SIZES["batch_size"], 3 * SIZES["hidden_size"])


def test_a_one_layer_model_draws_the_masks_it_drew_before_layers_existed():
    """The between-layers mask is drawn last, so a one-layer run's masks (and every earlier run's) are unchanged,
    and a stacked run's first masks are the one-layer run's."""
    one = pc.make_config("embedding", **SIZES, cell="gru", weight_drop=0.3, dropout=0.3)
    three = dataclasses.replace(one, layers=3)
    x = np.random.default_rng(0).integers(0, SIZES["vocab_size"], size=(3, 4))
    m1 = draw_masks(one, 3, 4, np.random.default_rng(5), x=x)
    m3 = draw_masks(three, 3, 4, np.random.default_rng(5), x=x)
    assert m1["between"] is None and m3["between"].shape == (3, 4, 2 * SIZES["hidden_size"])
    assert np.array_equal(m1["input"], m3["input"]) and np.array_equal(m1["hidden"], m3["hidden"])
    assert m3["recurrent"].shape == (3 * SIZES["hidden_size"], 3 * SIZES["hidden_size"])
    # layer 0's weight-drop columns come first, but the [G*H, L*H] draw is one array: only its shape is shared
    assert m1["recurrent"].shape == (3 * SIZES["hidden_size"], SIZES["hidden_size"])


@pytest.mark.slow
@pytest.mark.parametrize("model, cell, context", cases(set()))
def test_twenty_steps_of_a_stacked_model_with_every_lever(model, cell, context):
    """20 Adam steps of a 3-layer model with dropout (every mask), AR and TAR: the same losses and weights."""
    levers = dict(LEVERS, dropout=0.2, weight_drop=0.2 if cell != "mingru" else 0.0)
    if context == "window":
        config = pc.make_config(model, **SIZES, cell=cell, **levers)
        params = pc.random_params(config)
        train_config, batches = pc.trajectory_problem(config, params, 20)
        checks = pc.trajectory_checks(train_config, params, batches)
    else:
        config = pc.make_config(model, **SIZES, cell=cell, context="poem", bptt=5, **levers)
        checks = pc.poem_trajectory_checks(config, pc.random_params(config), 20)
    assert all(check.passed for check in checks), "\n".join(map(str, checks))

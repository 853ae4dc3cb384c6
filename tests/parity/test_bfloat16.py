"""``--precision bfloat16`` against the float32 NumPy reference from the same weights (docs/DESIGN.md's bfloat16
row): PyTorch and JAX, both contexts.

Each check holds two ways: within the bfloat16 tolerance (``tolerances.BFLOAT16_*``), and farther from the
reference than float32 ever is, so a precision the backend ignored (float32 computed where bfloat16 was asked
for) fails as surely as a wrong bfloat16 computation does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from data.streams import epoch_chunks
from scratch import sequence
from wordrnn.core import tolerances
from wordrnn.core.cells import get_cell
from wordrnn.testing import parity as pc

FRAMEWORKS = ("torch", "jax")
# bfloat16 keeps 8 significant bits (a relative rounding of up to 2^-9 per value): its logits stray from float32's
# by several times that; float32's own stray is about 1e-7. Anything closer than this was not computed in bfloat16.
BFLOAT16_FLOOR = 2.0**-12
STEPS = 20
# JAX compiles a training step per configuration: its poem trajectories take over 20 s on a loaded box
STEP_FRAMEWORKS = ["torch", pytest.param("jax", marks=pytest.mark.slow)]


def float32_params(problem: pc.Problem) -> dict[str, np.ndarray]:
    return {name: np.asarray(value, np.float32) for name, value in problem.params.items()}


def relative_to_largest(got: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(got - reference)) / np.max(np.abs(reference)))


def assert_bfloat16_distance(distance: float, tolerance: float, what: str) -> None:
    assert BFLOAT16_FLOOR < distance <= tolerance, (what, distance)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_window_logits_are_bfloat16_near_the_float32_reference(problem, framework):
    params = float32_params(problem)
    reference, _, _ = sequence.forward(params, problem.x, problem.config.cell, last_only=True)
    backend = pc.backend_for(framework)
    state = backend.init(params, replace(problem.config, precision="bfloat16"))
    logits, _ = backend.logits(state, problem.x, None, last_only=True)
    assert logits.dtype == np.float32
    assert_bfloat16_distance(relative_to_largest(logits, reference), tolerances.BFLOAT16_LOGITS, "logits")


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_poem_logits_and_state_carried_from_chunk_to_chunk(framework, cell, small):
    """Every position's logits of two consecutive chunks, the second read from the state the first left (as
    float32, between chunks), against NumPy's one pass over both from the same start state. Eight streams: the
    rows JAX's evaluation pads a batch to (a power of two), so its carried state has no padding rows."""
    problem = pc.random_poem_problem("embedding", **{**small, "batch_size": 8}, cell=cell)
    config = replace(problem.config, precision="bfloat16")
    params = {name: np.asarray(value, np.float32) for name, value in problem.params.items()}
    start = tuple(np.asarray(s, np.float32) for s in problem.state)
    x = np.concatenate([c.x for c in problem.chunks], axis=1)
    reference, final, _ = sequence.forward(params, x, cell, state=start)
    backend = pc.backend_for(framework)
    state = backend.init(params, config)
    carry = framework_state(framework, start)
    pieces = []
    for chunk in problem.chunks:
        logits, carry = backend.logits(state, chunk.x, carry)
        pieces.append(logits)
    assert_bfloat16_distance(relative_to_largest(np.concatenate(pieces, axis=1), reference),
                             tolerances.BFLOAT16_LOGITS, "logits")
    for got, want in zip(carry, final, strict=True):
        assert np.asarray(got).dtype == np.float32
        assert relative_to_largest(np.asarray(got), want) <= tolerances.BFLOAT16_LOGITS
    assert len(carry) == len(get_cell(cell).states)


def framework_state(framework: str, state: tuple[np.ndarray, ...]) -> tuple:
    """A start state as ``framework``'s backend carries it."""
    if framework == "torch":
        import torch

        return tuple(torch.from_numpy(s) for s in state)
    import jax.numpy as jnp

    return tuple(jnp.asarray(s) for s in state)


def bfloat16_trajectory_distance(framework: str, config, params, chunks) -> float:
    """The largest gap, over ``STEPS`` Adam steps on ``chunks``, between the loss ``framework`` reports in bfloat16
    and the float32 NumPy reference's from the same weights."""
    reference = pc.trajectory("numpy", config, params, chunks)
    mixed = pc.trajectory(framework, replace(config, precision="bfloat16"), params, chunks)
    return float(np.max(np.abs(mixed.losses - reference.losses)))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_twenty_window_steps_stay_within_the_bfloat16_loss_tolerance(framework, cell, small):
    problem = pc.random_problem("embedding", **small, cell=cell)
    config, batches = pc.trajectory_problem(replace(problem.config, lr=1e-2), problem.params, STEPS)
    distance = bfloat16_trajectory_distance(framework, config, float32_params(problem), pc.as_chunks(batches))
    assert tolerances.TRAJECTORY < distance <= tolerances.BFLOAT16_LOSS, distance


@pytest.mark.parametrize("framework", STEP_FRAMEWORKS)
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_twenty_poem_steps_carry_the_state_within_the_bfloat16_loss_tolerance(framework, cell, small):
    """Chunks of streams with poems starting inside them, the state carried from step to step."""
    config = pc.make_config("embedding", **small, cell=cell, context="poem", bptt=6)
    config = replace(config, lr=1e-2)
    params = {name: np.asarray(value, np.float32) for name, value in pc.random_params(config).items()}
    rng = np.random.default_rng([0, 13])
    poems = pc.random_poems(config.vocab_size, 12 * config.batch_size, rng)
    chunks = epoch_chunks(poems, config.batch_size, config.bptt, 0, 1)[:STEPS]
    assert len(chunks) == STEPS and sum(c.reset[:, 1:].sum() for c in chunks) > STEPS
    distance = bfloat16_trajectory_distance(framework, config, params, chunks)
    assert tolerances.TRAJECTORY < distance <= tolerances.BFLOAT16_LOSS, distance

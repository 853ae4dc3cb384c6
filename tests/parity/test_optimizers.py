"""Every optimizer of ``wordrnn.core.optimizers``, in every framework: one registry, one trajectory, and a
run that resumes exactly under another framework from the optimizer state a checkpoint holds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import window_step

from jaxmodels.backend import JAX_OPTIMIZERS
from scratch.optim import OPTIMIZERS as NUMPY_OPTIMIZERS
from torchmodels.backend import TORCH_OPTIMIZERS
from wordrnn.core import tolerances
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.optimizers import OPTIMIZERS
from wordrnn.run.folder import check_optimizer_arrays
from wordrnn.testing import parity as pc

LR, WEIGHT_DECAY = 1e-2, 1e-2
# The resumed runs use the trajectories' problem, so each framework compiles (JAX) one step per optimizer.
STEPS, RESUME_AT = 20, 10
WRITER_READER = [("numpy", "torch"), ("torch", "jax"), ("jax", "numpy")]


def test_every_framework_has_one_entry_per_registry_optimizer():
    for entries in (NUMPY_OPTIMIZERS, TORCH_OPTIMIZERS, JAX_OPTIMIZERS):
        assert sorted(entries) == sorted(OPTIMIZERS)


@pytest.mark.parametrize("framework", pc.FRAMEWORKS)
def test_an_unknown_optimizer_is_refused_by_every_backend_never_run_as_sgd(framework):
    config = replace(pc.make_config("onehot", 6, 3, 2, 2, 2), optimizer="rmsprop")  # as if validate were skipped
    params = pc.random_params(replace(config, optimizer="sgd"))
    with pytest.raises(UsageError, match="unknown --optimizer 'rmsprop'; choose one of adam"):
        pc.backend_for(framework).init(pc._cast(params, np.float32), config)


def problem(optimizer: str, steps: int, small: dict[str, int]) -> tuple[Config, dict, list]:
    base = pc.random_problem("embedding", **small)
    config = replace(base.config, optimizer=optimizer, lr=LR, weight_decay=WEIGHT_DECAY)
    config, batches = pc.trajectory_problem(config, base.params, steps)
    return config, base.params, batches


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_trajectories_agree_for_every_optimizer(optimizer, small):
    config, params, batches = problem(optimizer, STEPS, small)
    checks = pc.trajectory_checks(config, params, batches)
    assert [str(c) for c in checks if not c.passed] == []


def train(backend, state, batches, start: int) -> tuple[object, list[float]]:
    losses = []
    for step, (x, y) in enumerate(batches, start=start):
        state, loss = window_step(backend, state, x, y, step)
        losses.append(float(loss))
    return state, losses


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("writer, reader", WRITER_READER, ids=[f"{a}-to-{b}" for a, b in WRITER_READER])
def test_a_run_resumes_under_another_framework(optimizer, writer, reader, small):
    config, params, batches = problem(optimizer, STEPS, small)
    straight = pc.trajectory(reader, config, params, batches)

    first = pc.backend_for(writer, "cpu")  # the backends (and compiled steps) the trajectories used
    state, _ = train(first, first.init(pc._cast(params, np.float32), config), batches[:RESUME_AT], 0)
    weights = first.canonical(state)
    arrays = check_optimizer_arrays(first.optimizer_arrays(state), config)  # what a checkpoint gives back
    assert sorted(arrays) == sorted(OPTIMIZERS[optimizer].state_names(list(weights)))
    second = pc.backend_for(reader, "cpu")
    resumed, losses = train(second, second.load_optimizer_arrays(second.init(weights, config), arrays),
                            batches[RESUME_AT:], RESUME_AT)
    final = second.canonical(resumed)

    assert pc.max_abs_diff(np.array(losses), straight.losses[RESUME_AT:]) <= tolerances.TRAJECTORY
    assert max(pc.max_abs_diff(final[k], straight.params[k]) for k in final) <= tolerances.TRAJECTORY
    # the state mattered: the same weights with a fresh optimizer go elsewhere (NT-ASGD's state is its average,
    # which leaves the steps alone: tests/parity/test_awd.py resumes it mid-average)
    if arrays and OPTIMIZERS[optimizer].average is None:
        fresh, _ = train(second, second.init(weights, config), batches[RESUME_AT:], RESUME_AT)
        moved = max(pc.max_abs_diff(second.canonical(fresh)[k], final[k]) for k in final)
        assert moved > 10 * tolerances.TRAJECTORY

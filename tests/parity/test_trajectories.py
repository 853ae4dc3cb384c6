"""Twenty Adam steps with clipping, same weights, same batches, through each framework's training backend.

The losses of every step and the weights after the last agree within 1e-4
(docs/DESIGN.md). The clip is chosen so that it bites on some steps and not on
others, and one variant adds weight decay; both settings change the
trajectory by far more than the tolerance, so a framework that ignored or
misapplied either would fail.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from wordrnn.core import tolerances
from wordrnn.testing import parity as pc

# Larger than the benchmark's 1e-3 (``python -m wordrnn.bench.parity`` uses that) so the weights move further.
LR = 1e-2
WEIGHT_DECAY = 1e-2
STEPS = 20


def setup(problem: pc.Problem, weight_decay: float) -> tuple:
    config = replace(problem.config, lr=LR, weight_decay=weight_decay)
    return pc.trajectory_problem(config, problem.params, STEPS)


# Weight decay is the same code for every parameter, so one model with it is enough by default
# (each variant costs a compiled JAX step, seconds of CPU); the one-hot model with it is in the slow set.
@pytest.mark.parametrize("model, weight_decay", [
    ("onehot", 0.0),
    ("embedding", 0.0),
    ("embedding", WEIGHT_DECAY),
    pytest.param("onehot", WEIGHT_DECAY, marks=pytest.mark.slow),
], ids=["onehot-clip", "embedding-clip", "embedding-clip+wd", "onehot-clip+wd"])
def test_adam_trajectories_agree(problem, weight_decay):
    config, batches = setup(problem, weight_decay)
    clipped = pc.gradient_norms(config, problem.params, batches) > config.clip
    assert 0 < clipped.sum() < STEPS, clipped  # clipping is exercised, and so is not clipping
    frameworks = pc.FRAMEWORKS + (("torch-gather",) if config.model == "onehot" else ())
    checks = pc.trajectory_checks(config, problem.params, batches, frameworks)
    assert [str(c) for c in checks if not c.passed] == []


def test_clipping_and_weight_decay_change_the_trajectory(problem):
    config, batches = setup(problem, 0.0)
    base = pc.trajectory("numpy", config, problem.params, batches)
    for variant in (replace(config, clip=0.0), replace(config, weight_decay=WEIGHT_DECAY)):
        other = pc.trajectory("numpy", variant, problem.params, batches)
        moved = max(pc.max_abs_diff(base.params[k], other.params[k]) for k in base.params)
        assert moved > 10 * tolerances.TRAJECTORY, (variant.clip, variant.weight_decay, moved)


# Every regularizer at once: each backend draws the step's masks from (seed, step, tokens) itself
# (wordrnn.core.dropout), so equal trajectories mean every framework applies every mask the same way.
LEVERS = {"dropout_in": 0.3, "dropout_out": 0.2, "embed_dropout": 0.2, "weight_drop": 0.3}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_adam_trajectories_agree_with_every_lever(small, cell):
    problem = pc.random_problem("embedding", **small, cell=cell)
    config, batches = setup(problem, 0.0)
    config = replace(config, **LEVERS).validate()
    checks = pc.trajectory_checks(config, problem.params, batches)
    assert [str(c) for c in checks if not c.passed] == []
    plain = pc.trajectory("numpy", replace(config, dropout_in=0.0, dropout_out=0.0, embed_dropout=0.0,
                                           weight_drop=0.0), problem.params, batches)
    levers = pc.trajectory("numpy", config, problem.params, batches)
    assert max(pc.max_abs_diff(plain.params[k], levers.params[k]) for k in plain.params) > 10 * tolerances.TRAJECTORY


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_poem_trajectories_agree_with_every_lever(small, cell):
    problem = pc.random_poem_problem("embedding", **small, cell=cell)
    config = replace(problem.config, lr=LR, **LEVERS).validate()
    checks = pc.poem_trajectory_checks(config, problem.params, steps=8)
    assert [str(c) for c in checks if not c.passed] == []

"""The poem context in every framework: logits at every position, the final state and the gradients through
carried chunks with a poem starting inside one (float32 and float64, with locked dropout masks), and Adam steps
over carried chunks through each backend."""

from __future__ import annotations

import numpy as np
import pytest

from wordrnn.testing import parity as pc


@pytest.fixture
def poem_problem(model: str, cell: str, small: dict[str, int]) -> pc.PoemProblem:
    return pc.random_poem_problem(model, **small, cell=cell)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_poem_passes_agree(poem_problem: pc.PoemProblem, dtype: type) -> None:
    checks = pc.poem_pass_checks(poem_problem, poem_problem.masks, dtype)
    assert any("final state" in c.name for c in checks)
    failed = [str(c) for c in checks if not c.passed]
    assert not failed, failed


def test_the_problem_carries_a_state_and_a_reset_inside_a_chunk(small: dict[str, int]) -> None:
    problem = pc.random_poem_problem("embedding", **small, cell="lstm")
    assert len(problem.chunks) == 2 and any(c.reset[:, 1:].any() for c in problem.chunks)
    assert all(np.abs(s).max() > 0 for s in problem.state) and len(problem.state) == 2


@pytest.mark.slow
def test_poem_trajectories_agree(poem_problem: pc.PoemProblem) -> None:
    checks = pc.poem_trajectory_checks(poem_problem.config, poem_problem.params)
    failed = [str(c) for c in checks if not c.passed]
    assert not failed, failed

"""Fixtures of the parity tests: one small random problem per model and cell, computed on one thread.

The sizes are small so that the whole folder runs in well under a minute;
``python -m wordrnn.bench.parity`` runs the same comparisons at the benchmark sizes.
"""

from __future__ import annotations

import pytest
import torch
from threadpoolctl import threadpool_limits

from wordrnn.core import cells
from wordrnn.testing import parity as pc

SMALL = {"vocab_size": 50, "hidden_size": 16, "embed_dim": 12, "seq_len": 5, "batch_size": 7}
MODELS = ("onehot", "embedding")
CELLS = tuple(cells.CELLS)


@pytest.fixture(scope="package", autouse=True)
def one_compute_thread():
    """BLAS and torch on one thread while these tests run, as ``wordrnn.core.threads.limit_threads(1)`` would.

    On a busy shared box, thread pools that spin-wait for a free core make these
    small problems many times slower (20 NumPy steps at the benchmark sizes:
    9 s with OpenBLAS's default threads, 0.3 s with one). Restored afterwards.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(params=MODELS)
def model(request) -> str:
    return request.param


@pytest.fixture(params=CELLS)
def cell(request) -> str:
    return request.param


@pytest.fixture
def small() -> dict[str, int]:
    """The sizes of every problem here (also what the command-line test passes as flags)."""
    return dict(SMALL)


@pytest.fixture
def problem(model: str, cell: str, small: dict[str, int]) -> pc.Problem:
    return pc.random_problem(model, **small, cell=cell)

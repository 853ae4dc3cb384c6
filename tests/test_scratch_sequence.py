"""scratch.sequence and scratch.cells: the plain reference of both contexts, checked by finite differences,
against a window read as a whole chunk, and for the two promises of the carried state (resets, pieces)."""

from __future__ import annotations

import numpy as np
import pytest

from scratch import sequence
from scratch.cells import STEPS
from scratch.gradcheck import check_gradients
from wordrnn.core.cells import CELLS as REGISTRY
from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.params import init_params
from wordrnn.core.tolerances import FINITE_DIFFERENCE

MODELS = ["onehot", "embedding"]
CELLS = list(STEPS)
V, H, E, B, T = 11, 6, 5, 3, 7


def params_for(kind: str, cell: str, seed: int = 0) -> dict[str, np.ndarray]:
    return init_params(Config(model=kind, cell=cell, vocab_size=V, hidden_size=H, embed_dim=E, seed=seed),
                       dtype=np.float64)


def random_state(cell: str, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return tuple(0.5 * rng.standard_normal((B, H)) for _ in get_cell(cell).states)


def test_the_plain_reference_has_every_cell_of_the_registry() -> None:
    assert CELLS == list(REGISTRY)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", MODELS)
def test_a_window_is_the_chunk_from_a_zero_state_scored_last(cell: str, kind: str) -> None:
    """The window's loss and gradients are those of the chunk read from a zero state with every position but the
    last weighed 0: ``last_only`` only skips the output layer at the positions that carry no weight."""
    params = params_for(kind, cell)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, B)
    window_loss, window, _ = sequence.loss_and_grads(params, x, y, cell=cell, last_only=True)
    targets = np.zeros((B, T), np.int64)
    targets[:, -1] = y
    weights = np.zeros((B, T))
    weights[:, -1] = 1
    chunk_loss, chunk, _ = sequence.loss_and_grads(params, x, targets, weights, cell, reset=np.eye(1, T, dtype=bool)
                                                   .repeat(B, 0))
    assert abs(window_loss - chunk_loss) <= 1e-12
    for name in params:
        assert np.abs(window[name] - chunk[name]).max() <= 1e-12 * max(1.0, np.abs(window[name]).max()), name


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", MODELS)
def test_poem_gradients_match_finite_differences(cell: str, kind: str) -> None:
    """A chunk with a carried (non-zero) state, a poem starting mid-chunk, padding and locked dropout masks."""
    params = params_for(kind, cell)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    weights = np.ones((B, T))
    weights[0, -2:] = 0  # padding
    reset = np.zeros((B, T), bool)
    reset[1, 3] = reset[2, 0] = True  # a poem starts mid-chunk, another at the chunk's start
    state = random_state(cell, rng)
    masks = {"input": (rng.random((B, 1, E)) > 0.3) / 0.7 if kind == "embedding" else None,
             "hidden": (rng.random((B, 1, H)) > 0.3) / 0.7}

    def loss_and_grads(p, x, y, m):
        return sequence.loss_and_grads(p, x, y, weights, cell, state, reset, m)[:2]

    errors = check_gradients(params, x, y, masks, cell=cell, loss_and_grads=loss_and_grads,
                             loss=lambda *a: loss_and_grads(*a)[0])
    assert max(errors.values()) <= FINITE_DIFFERENCE, errors


@pytest.mark.parametrize("cell", CELLS)
def test_a_poem_starting_mid_chunk_reads_as_if_alone(cell: str) -> None:
    params = params_for("embedding", cell)
    rng = np.random.default_rng(3)
    x = rng.integers(0, V, (1, T))
    reset = np.zeros((1, T), bool)
    reset[0, 4] = True
    carried = tuple(s[:1] for s in random_state(cell, rng))
    logits, _, _ = sequence.forward(params, x, cell, carried, reset)
    alone, _, _ = sequence.forward(params, x[:, 4:], cell)
    np.testing.assert_allclose(logits[:, 4:], alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_pieces_with_the_state_passed_back_equal_the_whole(cell: str) -> None:
    params = params_for("onehot", cell)
    rng = np.random.default_rng(4)
    x = rng.integers(0, V, (B, T))
    whole, final, _ = sequence.forward(params, x, cell)
    first, state, _ = sequence.forward(params, x[:, :3], cell)
    second, state, _ = sequence.forward(params, x[:, 3:], cell, state)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=0, atol=1e-12)
    for a, b in zip(state, final, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)

"""scratch.sequence on windows, and scratch.gradcheck: forward, hand-written BPTT of every cell, dtypes, short
windows."""

from __future__ import annotations

import numpy as np
import pytest
import window_reference as model
from cell_equations import design_logits

from scratch import gradcheck, sequence
from scratch.backend import NumpyBackend
from scratch.gradcheck import check_gradients, make_problem
from wordrnn.core.cells import CELLS as REGISTRY
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.params import init_params, param_shapes
from wordrnn.core.tolerances import FINITE_DIFFERENCE as TOLERANCE

MODELS = ["onehot", "embedding"]
CELLS = list(REGISTRY)
V, H, E = 13, 8, 6


def params_for(kind: str, dtype=np.float64, seed: int = 0, cell: str = "rnn") -> model.Params:
    config = Config(model=kind, cell=cell, vocab_size=V, hidden_size=H, embed_dim=E, seed=seed)
    return init_params(config, dtype=dtype)


def batch(b: int, t: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(b, t)), rng.integers(0, V, size=b)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("t", [1, 2, 5])
def test_forward_matches_the_equations(cell: str, kind: str, t: int) -> None:
    """Against the reference loop of ``tests/cell_equations.py`` (docs/DESIGN.md's equations), one-hot and all."""
    params = params_for(kind, cell=cell)
    x, _ = batch(4, t)
    np.testing.assert_allclose(model.logits(params, x, cell), design_logits(params, x, cell=cell), rtol=0, atol=1e-12)
    masks = make_problem(kind, V, H, E, batch_size=4, seq_len=t, dropout=0.5, seed=2, cell=cell)[3]
    np.testing.assert_allclose(model.forward(params, x, masks, cell)[0], design_logits(params, x, masks, cell),
                               rtol=0, atol=1e-12)


def test_the_onehot_gather_is_bit_identical_to_the_onehot_product() -> None:
    params = params_for("onehot", np.float32)
    x, _ = batch(6, 3)
    gathered = params["rnn.w_ih"].T[x]
    onehots = np.eye(V, dtype=np.float32)[x]  # [B, T, V]
    assert np.array_equal(gathered, onehots @ params["rnn.w_ih"].T)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("dropout", [0.0, 0.4], ids=["no-masks", "fixed-masks"])
def test_bptt_matches_central_differences(cell: str, kind: str, dropout: float) -> None:
    params, x, y, masks = make_problem(kind, V, H, E, batch_size=4, seq_len=5, dropout=dropout, seed=3, cell=cell)
    if dropout:
        assert masks["hidden"].min() == 0 and masks["hidden"].max() == pytest.approx(1 / 0.6)
        assert (masks["input"] is None) == (kind == "onehot")
    errors = check_gradients(params, x, y, masks, cell=cell)
    assert set(errors) == set(params)
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("b,t", [(1, 1), (1, 4), (3, 1)])
def test_bptt_on_short_windows_and_single_examples(cell: str, kind: str, b: int, t: int) -> None:
    params, x, y, masks = make_problem(kind, V, H, E, batch_size=b, seq_len=t, dropout=0.3, seed=4, cell=cell)
    errors = check_gradients(params, x, y, masks, cell=cell)
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("broken", ["rnn.w_ih", "rnn.w_hh", "rnn.b_hh", "out.bias", "embedding"])
def test_the_gradient_check_catches_a_wrong_gradient(cell: str, broken: str) -> None:
    params, x, y, _ = make_problem("embedding", V, H, E, batch_size=4, seq_len=3, dropout=0.0, seed=5, cell=cell)
    if broken not in params:
        pytest.skip(f"the {cell} cell has no {broken}")

    def wrong(params, x, y, masks=None):
        loss, grads = model.loss_and_grads(params, x, y, masks, cell)
        grads[broken] = grads[broken] * 1.001  # a 0.1% error must not pass as 1e-6
        return loss, grads

    errors = check_gradients(params, x, y, cell=cell, loss_and_grads=wrong)
    assert errors[broken] > 100 * TOLERANCE
    assert max(v for k, v in errors.items() if k != broken) <= TOLERANCE


def test_large_parameters_are_sampled_and_still_checked() -> None:
    params, x, y, _ = make_problem("onehot", 400, H, E, batch_size=8, seq_len=3, dropout=0.0, seed=6)
    errors = check_gradients(params, x, y, entries=40)
    assert max(errors.values()) <= TOLERANCE, errors


def parameter_count(cell: str) -> int:
    """Parameters of the one-hot and the embedding model of ``cell`` together (the gradient check's rows per pass)."""
    return sum(len(param_shapes(Config(model=m, cell=cell, vocab_size=V))) for m in MODELS)


def test_gradcheck_command_passes_and_reports_every_parameter_of_every_cell(capsys) -> None:
    assert gradcheck.main(["--vocab-size", "9", "--hidden-size", "5", "--embed-dim", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[1:-1]]  # cell, model, masks, parameter, error
    for cell in CELLS:  # 2 models x (no masks, masks) per cell
        assert sum(row[0] == cell and row[3] == "out.weight" for row in rows) == 4, cell
        assert sum(row[0] == cell and row[3] == "embedding" for row in rows) == 2, cell
    assert len(rows) == sum(2 * parameter_count(cell) for cell in CELLS)
    assert lines[-1].startswith("ok: worst relative error")


def test_gradcheck_command_checks_one_cell_when_asked(capsys) -> None:
    assert gradcheck.main(["--cell", CELLS[-1], "--vocab-size", "7", "--hidden-size", "3", "--embed-dim", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:-1]
    assert len(rows) == 2 * parameter_count(CELLS[-1]) and all(row.startswith(f"{CELLS[-1]} ") for row in rows)


@pytest.mark.parametrize("args,fragment", [(["--dropout", "1.5"], "error: --dropout"),
                                           (["--cell", "nosuch"], "invalid choice: 'nosuch'")])
def test_gradcheck_command_refuses_bad_flags(capsys, args: list[str], fragment: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gradcheck.main(args)
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", MODELS)
def test_float32_stays_float32_and_agrees_with_float64(cell: str, kind: str) -> None:
    p64 = params_for(kind, np.float64, cell=cell)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    x, y = batch(5, 4)
    masks = {"input": None, "hidden": np.where(np.random.default_rng(0).random((5, H)) < 0.7, 1 / 0.7, 0.0)}
    if kind == "embedding":
        masks["input"] = np.where(np.random.default_rng(1).random((5, 4, E)) < 0.7, 1 / 0.7, 0.0)
    logits32, _ = model.forward(p32, x, masks, cell)  # float64 masks must not widen float32 arithmetic
    logits64, _ = model.forward(p64, x, masks, cell)
    assert logits32.dtype == np.float32
    assert np.abs(logits32 - logits64).max() <= 1e-5
    loss32, g32 = model.loss_and_grads(p32, x, y, masks, cell)
    loss64, g64 = model.loss_and_grads(p64, x, y, masks, cell)
    assert abs(loss32 - loss64) <= 1e-5
    for name in p64:
        assert g32[name].dtype == np.float32, name
        assert g32[name].shape == p64[name].shape
        assert np.abs(g32[name] - g64[name]).max() <= 1e-5 * np.abs(g64[name]).max(), name


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", MODELS)
def test_only_the_rows_of_tokens_in_the_batch_get_input_gradients(cell: str, kind: str) -> None:
    params = params_for(kind, cell=cell)
    x = np.array([[1, 4, 4], [4, 7, 1]])
    _, grads = model.loss_and_grads(params, x, np.array([2, 3]), cell=cell)
    table = grads["embedding"] if kind == "embedding" else grads["rnn.w_ih"].T
    used = np.abs(table).sum(axis=1) > 0
    assert used.tolist() == [i in (1, 4, 7) for i in range(V)]


def test_repeated_tokens_sum_their_gradients_like_add_at() -> None:
    rng = np.random.default_rng(7)
    ids = np.array([5, 2, 5, 5, 0, 2, 9])
    rows = rng.standard_normal((len(ids), 3)).astype(np.float32)
    expected = np.zeros((10, 3), np.float32)
    np.add.at(expected, ids, rows)
    got = np.zeros((10, 3), np.float32)
    uniq, sums = sequence.sum_rows_by_id(ids, rows)
    got[uniq] = sums
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_the_loss_is_the_mean_cross_entropy() -> None:
    params = params_for("embedding")
    x, y = batch(6, 3)
    z = design_logits(params, x)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(6), y].mean()
    assert model.loss(params, x, y) == pytest.approx(expected, abs=1e-12)
    assert model.loss_and_grads(params, x, y)[0] == pytest.approx(expected, abs=1e-12)


def test_bad_inputs_are_refused() -> None:
    params = params_for("onehot")
    with pytest.raises(ValueError, match="one-hot model has no input dropout"):
        model.forward(params, np.zeros((2, 3), np.int64), {"input": np.ones((2, 3, E)), "hidden": None})
    with pytest.raises(ValueError, match="batch, time"):
        model.forward(params, np.zeros((2, 0), np.int64))
    with pytest.raises(ValueError, match="unknown cell 'nosuch'"):
        model.forward(params, np.zeros((2, 3), np.int64), cell="nosuch")


@pytest.mark.parametrize("cell", [c for c in CELLS
                                  if REGISTRY[c].param_shapes(E, H) != REGISTRY["rnn"].param_shapes(E, H)])
def test_weights_of_another_cell_are_refused(cell: str) -> None:
    """The backend checks the weights against the cell its configuration names (``check_params``, the one home)."""
    config = Config(model="onehot", cell=cell, vocab_size=V, hidden_size=H, embed_dim=E)
    with pytest.raises(UsageError, match=f"do not fit --cell {cell}"):
        NumpyBackend().init(params_for("onehot"), config)


def test_gradcheck_command_fails_when_a_parameter_is_off(monkeypatch, capsys) -> None:
    monkeypatch.setattr(gradcheck, "check_gradients",
                        lambda params, *args, **kwargs: {name: 1e-3 for name in params})
    assert gradcheck.main([]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and out.strip().splitlines()[-1].startswith("FAILED")

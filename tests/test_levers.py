"""The regularizers of AWD-LSTM as options: separate input and output dropout rates, embedding dropout (whole
words), weight-drop on ``rnn.w_hh``. Their masks come from one specification (``wordrnn.core.dropout``); the
NumPy reference's gradient for each is checked against finite differences, and every backend's step applies the
masks of that specification."""

from __future__ import annotations

import numpy as np
import pytest
import window_reference as model
from conftest import assert_usage_error, run_module, window_step

from scratch import sequence
from scratch.backend import NumpyBackend
from scratch.gradcheck import check_gradients
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.dropout import draw_masks, step_masks
from wordrnn.core.errors import UsageError
from wordrnn.core.params import init_params
from wordrnn.core.tolerances import FINITE_DIFFERENCE

V, H, E, B, T = 11, 6, 5, 4, 5
LEVERS = {"dropout_in": 0.3, "dropout_out": 0.2, "embed_dropout": 0.25, "weight_drop": 0.4}


def config_with(**settings) -> Config:
    base = {"model": "embedding", "vocab_size": V, "hidden_size": H, "embed_dim": E, "seq_len": T, "seed": 5}
    return Config(**{**base, **settings}).validate()


def tokens(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(B, T))


def test_input_and_output_rates_default_to_dropout_and_each_can_be_set_alone() -> None:
    config = config_with(dropout=0.3)
    assert (config.rate("input"), config.rate("hidden"), config.rate("embed"), config.rate("recurrent")) == \
        (0.3, 0.3, 0.0, 0.0)
    config = config_with(dropout=0.3, dropout_in=0.0, dropout_out=0.6)
    assert (config.rate("input"), config.rate("hidden")) == (0.0, 0.6)
    masks = step_masks(config, 3, tokens())
    assert masks["input"] is None and masks["hidden"] is not None
    assert set(np.unique(masks["hidden"])) == {0.0, np.float32(1 / 0.4)}


def test_without_the_new_levers_a_step_draws_the_masks_it_drew_before_them() -> None:
    """Runs written before the levers resume with the same masks: input then hidden from (seed, step)."""
    config = config_with(dropout=0.3)
    rng = np.random.default_rng([config.seed, 9])
    keep = 0.7
    want_in = ((rng.random((B, T, E)) < keep) / keep).astype(np.float32)
    want_hidden = ((rng.random((B, H)) < keep) / keep).astype(np.float32)
    masks = step_masks(config, 9, tokens())
    np.testing.assert_array_equal(masks["input"], want_in)
    np.testing.assert_array_equal(masks["hidden"], want_hidden[:, None])  # the same numbers, one row per window
    assert masks["recurrent"] is None


@pytest.mark.parametrize("context", ["window", "poem"])
def test_embedding_dropout_drops_a_word_everywhere_it_occurs_in_the_step(context: str) -> None:
    config = config_with(embed_dropout=0.5, context=context)
    x = tokens()
    masks = step_masks(config, 2, x)
    m_in = masks["input"]
    assert m_in.shape == (B, T, E) and masks["hidden"] is None
    dropped = {int(w) for w, m in zip(x.reshape(-1), m_in.reshape(B * T, E)) if not m.any()}
    kept = {int(w) for w in x.reshape(-1)} - dropped
    assert dropped and kept  # both happen at this rate and seed
    for w, m in zip(x.reshape(-1), m_in.reshape(B * T, E)):
        np.testing.assert_array_equal(m, 0.0 if int(w) in dropped else 2.0)  # one row mask, the whole step


def test_locked_input_dropout_and_whole_words_combine_into_one_mask() -> None:
    config = config_with(dropout_in=0.5, embed_dropout=0.5, context="poem")
    x = tokens()
    masks = step_masks(config, 4, x)
    alone = step_masks(config_with(dropout_in=0.5, context="poem"), 4, x)["input"]  # drawn first: the same
    assert alone.shape == (B, 1, E)
    words = masks["input"] / np.broadcast_to(alone, (B, T, E)).clip(min=1e-9)
    assert set(np.unique(np.round(words[np.broadcast_to(alone, (B, T, E)) > 0], 5))) <= {0.0, 2.0}


def test_weight_drop_draws_one_mask_over_the_recurrent_weights_per_step() -> None:
    config = config_with(cell="lstm", weight_drop=0.4)
    a, b = step_masks(config, 1, tokens()), step_masks(config, 2, tokens())
    assert a["recurrent"].shape == (4 * H, H) and a["input"] is None and a["hidden"] is None
    assert not np.array_equal(a["recurrent"], b["recurrent"])
    np.testing.assert_array_equal(a["recurrent"], step_masks(config, 1, tokens(7))["recurrent"])  # tokens aside
    assert abs((a["recurrent"] == 0).mean() - 0.4) < 0.1


@pytest.mark.parametrize("cell", [c for c in CELLS if CELLS[c].recurrent_weights])
@pytest.mark.parametrize("lever", list(LEVERS))
def test_bptt_of_each_lever_alone_matches_central_differences(cell: str, lever: str) -> None:
    """Each lever's masks alone, through the window kernel (or the plain steps for a cell without one)."""
    config = config_with(cell=cell, **{lever: LEVERS[lever]})
    params = init_params(config, dtype=np.float64)
    x = tokens()
    y = np.random.default_rng(2).integers(0, V, size=B)
    masks = step_masks(config, 0, x, dtype=np.float64)
    assert any(m is not None for m in masks.values())
    errors = check_gradients(params, x, y, masks, cell=cell)
    assert max(errors.values()) <= FINITE_DIFFERENCE, errors


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_poem_bptt_with_every_lever_matches_central_differences(cell: str) -> None:
    """Locked masks, whole words and weight-drop at once, a reset inside the chunk and a state carried in."""
    config = config_with(cell=cell, context="poem", **LEVERS)
    params = init_params(config, dtype=np.float64)
    rng = np.random.default_rng(3)
    x, y = tokens(), rng.integers(0, V, size=(B, T))
    reset = np.zeros((B, T), bool)
    reset[1, 2] = True
    state = tuple(0.5 * rng.standard_normal((B, H)) for _ in CELLS[cell].states)
    weights = np.ones((B, T))
    masks = draw_masks(config, B, T, rng, dtype=np.float64, x=x)
    assert masks["input"].shape == (B, T, E) and masks["recurrent"] is not None

    def grads(p, x, y, m):
        loss, g, _ = sequence.loss_and_grads(p, x, y, weights, cell, state, reset, m)
        return loss, g

    def loss(p, x, y, m):
        return sequence.loss_and_grads(p, x, y, weights, cell, state, reset, m)[0]

    errors = check_gradients(params, x, y, masks, cell=cell, loss_and_grads=grads, loss=loss)
    assert max(errors.values()) <= FINITE_DIFFERENCE, errors


def test_weight_drop_changes_the_recurrent_gradient_only_where_the_mask_keeps_a_weight() -> None:
    config = config_with(cell="gru", weight_drop=0.5)
    params = init_params(config, dtype=np.float64)
    x, y = tokens(), np.random.default_rng(2).integers(0, V, size=B)
    masks = step_masks(config, 0, x, dtype=np.float64)
    _, g = model.loss_and_grads(params, x, y, masks, "gru")
    dropped = masks["recurrent"] == 0
    assert dropped.any() and not g["rnn.w_hh"][dropped].any() and g["rnn.w_hh"][~dropped].any()


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_the_numpy_backend_steps_with_the_masks_of_the_specification(cell: str) -> None:
    config = config_with(cell=cell, optimizer="sgd", lr=1.0, clip=0.0, batch_size=B, **LEVERS)
    params = init_params(config)
    x, y = tokens(), np.random.default_rng(2).integers(0, V, size=B)
    backend = NumpyBackend(np.float64)
    state = backend.init(params, config)
    own = {k: v.copy() for k, v in state.params.items()}
    _, loss = window_step(backend, state, x, y, 11)
    expected, grads = model.loss_and_grads(own, x, y, step_masks(config, 11, x), cell)
    assert loss == expected
    assert expected != model.loss(own, x, y, cell=cell)  # the masks were applied
    for name, p in own.items():
        np.testing.assert_array_equal(state.params[name], p - grads[name])


@pytest.mark.parametrize("settings, fragment", [
    ({"dropout_in": 1.0}, "--dropout-in must lie in [0, 1)"),
    ({"dropout_out": -0.1}, "--dropout-out must lie in [0, 1)"),
    ({"embed_dropout": 1.5}, "--embed-dropout must lie in [0, 1)"),
    ({"weight_drop": 1.0}, "--weight-drop must lie in [0, 1)"),
    ({"model": "onehot", "embed_dropout": 0.1}, "one-hot model has none"),
    ({"model": "onehot", "dropout_in": 0.1}, "one-hot model has none"),
    ({"cell": "mingru", "weight_drop": 0.1}, "mingru cell has none"),
])
def test_a_rate_that_makes_no_sense_is_refused(settings: dict, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment.replace("[", r"\[").replace(")", r"\)")):
        config_with(**settings)


def test_a_trainer_refuses_a_bad_rate_in_one_line(tmp_path, tiny_corpus) -> None:
    result = run_module("scratch.train", "--data", str(tiny_corpus), "--weight-drop", "1", "--out",
                        str(tmp_path / "run"))
    assert_usage_error(result, "--weight-drop must lie in [0, 1)")
    assert not (tmp_path / "run").exists()


def test_a_trainer_records_every_lever_in_the_run(tmp_path, tiny_corpus) -> None:
    out = tmp_path / "run"
    result = run_module("scratch.train", "--data", str(tiny_corpus), "--cell", "lstm", "--context", "poem",
                        "--bptt", "6", "--batch-size", "2", "--epochs", "1", "--min-freq", "1", "--quiet",
                        "--dropout-in", "0.2", "--dropout-out", "0.3", "--embed-dropout", "0.1",
                        "--weight-drop", "0.4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = Config.from_dict(__import__("json").loads((out / "config.json").read_text()))
    assert (saved.dropout_in, saved.dropout_out, saved.embed_dropout, saved.weight_drop) == (0.2, 0.3, 0.1, 0.4)

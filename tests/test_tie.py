"""Tying the output layer to the embedding table (``--tie``): out.weight = embedding (times out.proj [E, H] where E
differs from H). The NumPy reference's gradient through the shared table is checked against finite differences,
the frameworks agree on a tied model's logits and training, and the export stores the output weight it makes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import window_reference as model
from conftest import assert_usage_error, run_module
from safetensors.numpy import load_file

from scratch import sequence
from scratch.gradcheck import check_gradients
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.params import init_params, output_weight, param_shapes, untie
from wordrnn.core.tolerances import FINITE_DIFFERENCE
from wordrnn.testing import parity as pc

V, B, T = 11, 4, 5


def tied(E: int, H: int, **settings) -> Config:
    return Config(model="embedding", vocab_size=V, hidden_size=H, embed_dim=E, seq_len=T, tie=True,
                  **settings).validate()


def test_a_tied_model_stores_no_output_weight_and_a_projection_only_where_e_differs_from_h() -> None:
    assert "out.weight" not in param_shapes(tied(6, 6)) and "out.proj" not in param_shapes(tied(6, 6))
    assert param_shapes(tied(5, 7))["out.proj"] == (5, 7) and param_shapes(tied(5, 7))["out.bias"] == (V,)
    untied = param_shapes(replace(tied(5, 7), tie=False))
    assert untied["out.weight"] == (V, 7) and "out.proj" not in untied


def test_the_untied_draws_are_unchanged_and_the_tied_embedding_is_drawn_at_the_output_scale() -> None:
    config = replace(tied(5, 7), tie=False)
    params = init_params(config)
    assert np.abs(params["embedding"]).max() > 1.0  # N(0, 1), as before tying existed
    t = init_params(tied(5, 7))
    assert np.abs(t["embedding"]).max() <= 0.1


def test_untie_makes_the_output_weight_from_the_table() -> None:
    params = init_params(tied(5, 7), dtype=np.float64)
    flat = untie(params)
    np.testing.assert_allclose(flat["out.weight"], params["embedding"] @ params["out.proj"], atol=1e-15)
    assert "out.proj" not in flat and untie(flat) is flat
    square = init_params(tied(6, 6))
    assert output_weight(square) is square["embedding"]


@pytest.mark.parametrize("E, H", [(5, 7), (6, 6)], ids=["projected", "square"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "mingru"])
def test_bptt_through_the_shared_table_matches_central_differences(cell: str, E: int, H: int) -> None:
    config = tied(E, H, cell=cell)
    params = init_params(config, dtype=np.float64)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, V, size=(B, T)), rng.integers(0, V, size=B)
    errors = check_gradients(params, x, y, cell=cell)
    assert set(errors) == set(params) and max(errors.values()) <= FINITE_DIFFERENCE, errors


def test_poem_bptt_of_a_tied_model_matches_central_differences() -> None:
    config = tied(5, 7, cell="gru", context="poem")
    params = init_params(config, dtype=np.float64)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, V, size=(B, T)), rng.integers(0, V, size=(B, T))
    weights = np.ones((B, T))

    def grads(p, x, y, m):
        loss, g, _ = sequence.loss_and_grads(p, x, y, weights, "gru")
        return loss, g

    errors = check_gradients(params, x, y, cell="gru", loss_and_grads=grads,
                             loss=lambda p, x, y, m: sequence.loss_and_grads(p, x, y, weights, "gru")[0])
    assert max(errors.values()) <= FINITE_DIFFERENCE, errors


def test_a_tied_model_computes_what_its_untied_twin_computes() -> None:
    params = init_params(tied(5, 7, cell="lstm"), dtype=np.float64)
    x = np.random.default_rng(3).integers(0, V, size=(B, T))
    np.testing.assert_allclose(model.logits(params, x, "lstm"), model.logits(untie(params), x, "lstm"), atol=1e-13)


@pytest.mark.parametrize("E, H", [(12, 16), (16, 16)], ids=["projected", "square"])
def test_the_frameworks_agree_on_a_tied_model(E: int, H: int) -> None:
    """Logits and gradients (float32 and float64, with every dropout mask) and 20 Adam steps, all frameworks."""
    small = {"vocab_size": 50, "seq_len": 5, "batch_size": 7, "embed_dim": E, "hidden_size": H}
    problem = pc.random_problem("embedding", **small, cell="lstm")
    config = replace(problem.config, tie=True).validate()
    problem = replace(problem, config=config, params=pc.random_params(config, 0))
    assert "out.proj" in problem.params or E == H
    for dtype in (np.float32, np.float64):
        checks = pc.pass_checks(config, problem.params, problem.x, problem.y, problem.masks, dtype)
        failed = [str(c) for c in checks if not c.passed]
        assert not failed, failed
    config, batches = pc.trajectory_problem(replace(config, lr=1e-2), problem.params, 20)
    failed = [str(c) for c in pc.trajectory_checks(config, problem.params, batches) if not c.passed]
    assert not failed, failed


def test_tie_is_refused_for_the_onehot_model() -> None:
    with pytest.raises(UsageError, match="one-hot model has none"):
        Config(model="onehot", vocab_size=V, tie=True).validate()


def test_a_tied_run_trains_exports_and_generates(tmp_path, tiny_corpus) -> None:
    out = tmp_path / "run"
    result = run_module("torchmodels.train", "--data", str(tiny_corpus), "--tie", "--cell", "lstm", "--epochs", "1",
                        "--min-freq", "1", "--embed-dim", "6", "--hidden-size", "8", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = load_file(out / "weights.safetensors")
    assert "out.weight" not in saved and saved["out.proj"].shape == (6, 8)
    result = run_module("export.onnx", "--run", str(out), "--out", str(tmp_path / "m.onnx"))
    assert result.returncode == 0, result.stderr
    result = run_module("export.generate", "--model", str(tmp_path / "m.onnx"), "--prompt", "the sea",
                        "--strategy", "greedy", "--words", "8")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    refused = run_module("scratch.train", "--data", str(tiny_corpus), "--init-from", str(out), "--no-tie",
                         "--epochs", "1", "--min-freq", "1", "--out", str(tmp_path / "other"))
    assert_usage_error(refused, "tie")

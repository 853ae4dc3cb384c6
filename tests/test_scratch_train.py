"""scratch.backend, scratch.train and scratch.generate: learning, dropout, exact resume, the commands."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import window_reference as model
from conftest import assert_usage_error, run_module, window_step, write_tiny_corpus
from safetensors.numpy import load_file

from data.batches import batch_indices
from scratch import generate, train
from scratch.backend import NumpyBackend
from wordrnn.core.cells import CELLS as REGISTRY
from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.dropout import step_masks
from wordrnn.core.params import init_params
from wordrnn.run.folder import save_params

V, H, E, B, T = 17, 12, 6, 8, 4
CELLS = list(REGISTRY)


def stream_problem(kind: str, **settings) -> tuple[Config, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A config, initial weights, and the windows of a repeating token stream (easy to learn)."""
    config = Config(model=kind, vocab_size=V, hidden_size=H, embed_dim=E, seq_len=T, batch_size=B, **settings)
    stream = np.tile(np.random.default_rng(2).permutation(V), 6)
    x = np.stack([stream[i:i + T] for i in range(48)]).astype(np.int64)
    y = stream[T:T + 48].astype(np.int64)
    return config, init_params(config), x, y


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", ["onehot", "embedding"])
def test_loss_falls_over_a_hundred_adam_steps(kind: str, cell: str) -> None:
    config, params, x, y = stream_problem(kind, cell=cell, lr=1e-2, dropout=0.1)
    backend = NumpyBackend()
    state = backend.init(params, config)
    for step in range(100):
        idx = next(batch_indices(len(x), B, 0, step))
        state, loss = window_step(backend, state, x[idx], y[idx], step)
        assert isinstance(loss, float) and math.isfinite(loss)
    assert all(p.dtype == np.float32 for p in state.params.values())
    before, after = model.loss(params, x, y, cell=cell), model.loss(backend.canonical(state), x, y, cell=cell)
    assert after < 0.25 * before, (before, after)  # the gated cells start slower than the Elman cell
    assert params["rnn.w_ih"] is not state.params["rnn.w_ih"]  # init copies: the caller's arrays stay put


def test_dropout_masks_are_the_shared_specification() -> None:
    backend = NumpyBackend(np.float64)
    config = Config(model="embedding", vocab_size=V, hidden_size=H, embed_dim=E, dropout=0.25, seed=3)
    x = np.zeros((5, 4), np.int64)
    masks, spec = backend.dropout_masks(config, 7, x), step_masks(config, 7, x)
    for key in ("input", "hidden"):
        np.testing.assert_array_equal(masks[key], spec[key])
    onehot = Config(model="onehot", vocab_size=V, hidden_size=H, dropout=0.25)
    assert backend.dropout_masks(onehot, 7, x)["input"] is None
    assert backend.dropout_masks(Config(model="onehot", vocab_size=V), 7, x) is None


@pytest.mark.parametrize("cell", CELLS)
def test_a_training_step_uses_the_masks_of_its_step(cell: str) -> None:
    config, params, x, y = stream_problem("embedding", cell=cell, optimizer="sgd", lr=1.0, clip=0.0, dropout=0.5)
    backend = NumpyBackend(np.float64)
    state = backend.init(params, config)
    own = {k: v.copy() for k, v in state.params.items()}
    _, loss = window_step(backend, state, x[:B], y[:B], 11)
    expected, grads = model.loss_and_grads(own, x[:B], y[:B], step_masks(config, 11, x[:B]), cell)
    assert loss == expected
    for name, p in own.items():
        np.testing.assert_array_equal(state.params[name], p - grads[name])


def test_sgd_backend_step_clips_then_decays_then_steps() -> None:
    config, params, x, y = stream_problem("embedding", optimizer="sgd", lr=0.1, clip=0.05, weight_decay=0.1)
    backend = NumpyBackend(np.float64)
    state = backend.init(params, config)
    _, grads = model.loss_and_grads({k: v.astype(np.float64) for k, v in params.items()}, x[:B], y[:B])
    norm = np.sqrt(sum((g**2).sum() for g in grads.values()))
    assert norm > 0.05  # the clip is active
    window_step(backend, state, x[:B], y[:B], 0)
    for name, p in params.items():
        p = p.astype(np.float64)
        expected = p - 0.1 * (grads[name] * 0.05 / (norm + 1e-6) + 0.1 * p)
        np.testing.assert_allclose(state.params[name], expected, rtol=1e-10, atol=1e-12)


def train_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(corpus), "--out", str(out), "--seq-len", "3", "--hidden-size", "10",
            "--embed-dim", "6", "--batch-size", "8", "--min-freq", "1", "--lr", "0.01", "--quiet", *extra]


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


def read_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("cell", CELLS)
def test_resume_equals_an_uninterrupted_run(tmp_path: Path, cell: str) -> None:
    corpus = write_tiny_corpus(tmp_path)
    whole, split = tmp_path / "whole", tmp_path / "split"
    settings = ("--model", "embedding", "--cell", cell, "--dropout", "0.2", "--weight-decay", "0.01")
    assert train.main(train_args(corpus, whole, *settings, "--epochs", "2")) == 0
    assert train.main(train_args(corpus, split, *settings, "--epochs", "1")) == 0
    assert train.main(train_args(corpus, split, *settings, "--epochs", "2", "--resume")) == 0
    assert len(read_rows(whole)) == 2
    assert comparable(read_rows(whole)) == comparable(read_rows(split))
    for name in ("weights.safetensors", "checkpoint.safetensors"):
        a, b = load_file(whole / name), load_file(split / name)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    assert load_file(whole / "checkpoint.safetensors")["adam.step"].item() > 0
    assert json.loads((whole / "config.json").read_text())["cell"] == cell


def test_an_unknown_cell_is_one_usage_error() -> None:
    assert_usage_error(run_module("scratch.train", "--cell", "nosuch", "--epochs", "1"), "--cell", "nosuch")


def test_float64_training_writes_a_float32_run_folder(tmp_path: Path) -> None:
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / "run64"
    assert train.main(train_args(corpus, out, "--model", "onehot", "--epochs", "1", "--dtype", "float64")) == 0
    weights = load_file(out / "weights.safetensors")
    assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}
    assert json.loads((out / "config.json").read_text())["extra"]["dtype"] == "float64"
    assert math.isfinite(read_rows(out)[0]["val_loss"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scratch_run")
    corpus = write_tiny_corpus(folder)
    out = folder / "run"
    assert train.main(train_args(corpus, out, "--model", "embedding", "--epochs", "1")) == 0
    return out


def generate_output(capsys, *args: str) -> str:
    assert generate.main(list(args)) == 0
    return capsys.readouterr().out


def test_generation_is_deterministic_for_a_seed(tiny_run: Path, capsys) -> None:
    common = ("--run", str(tiny_run), "--prompt", "the sea", "--words", "25")
    first = generate_output(capsys, *common, "--seed", "4")
    assert first == generate_output(capsys, *common, "--seed", "4")
    assert first.startswith("the sea")
    assert first != generate_output(capsys, *common, "--seed", "5")
    greedy = generate_output(capsys, *common, "--strategy", "greedy", "--seed", "1")
    assert greedy == generate_output(capsys, *common, "--strategy", "greedy", "--seed", "2")


@pytest.mark.parametrize("cell", CELLS)
def test_generation_runs_the_cell_the_run_folder_records(tmp_path: Path, capsys, cell: str) -> None:
    corpus = write_tiny_corpus(tmp_path)
    out = tmp_path / cell
    assert train.main(train_args(corpus, out, "--cell", cell, "--model", "onehot", "--epochs", "1")) == 0
    capsys.readouterr()
    common = ("--run", str(out), "--prompt", "the sea", "--words", "8", "--strategy", "greedy")
    text = generate_output(capsys, *common)
    assert text.startswith("the sea") and text == generate_output(capsys, *common)
    weights = load_file(out / "weights.safetensors")
    assert {k: v.shape for k, v in weights.items() if k.startswith("rnn.")} == get_cell(cell).param_shapes(
        len(json.loads((out / "vocab.json").read_text())["tokens"]), 10)  # one-hot input, --hidden-size 10


def expect_usage_error(capsys, args: list[str], fragment: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        generate.main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert fragment in lines[0], lines[0]
    assert captured.out == ""


def test_generate_refuses_a_missing_or_incomplete_run(tiny_run: Path, tmp_path: Path, capsys) -> None:
    expect_usage_error(capsys, ["--run", str(tmp_path / "nothing")], "not a run folder")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_run, partial)
    (partial / "weights.safetensors").unlink()
    expect_usage_error(capsys, ["--run", str(partial)], "weights.safetensors missing")


def test_generate_refuses_weights_that_do_not_fit_the_vocabulary(tiny_run: Path, tmp_path: Path, capsys) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_run, mixed)
    weights = load_file(mixed / "weights.safetensors")
    weights["out.weight"] = np.zeros((weights["out.weight"].shape[0] + 1, weights["out.weight"].shape[1]),
                                     np.float32)
    save_params(mixed / "weights.safetensors", weights)
    expect_usage_error(capsys, ["--run", str(mixed)], "out.weight")


@pytest.mark.parametrize("args,fragment", [
    (["--prompt", "  \n "], "prompt is empty"),
    (["--prompt", "qwzx xyzzy"], "<unk>"),
    (["--words", "0"], "--words"),
    (["--temperature", "0"], "--temperature"),
])
def test_generate_refuses_bad_prompts_and_settings(tiny_run: Path, capsys, args: list[str], fragment: str) -> None:
    expect_usage_error(capsys, ["--run", str(tiny_run), *args], fragment)


def test_an_unknown_word_in_a_prompt_is_noted_not_fatal(tiny_run: Path, capsys) -> None:
    assert generate.main(["--run", str(tiny_run), "--prompt", "the xyzzy", "--words", "3"]) == 0
    captured = capsys.readouterr()
    assert "xyzzy" in captured.err and "<unk>" in captured.err
    assert captured.out.startswith("the <unk>")


def test_the_commands_have_help(capsys) -> None:
    for main in (train.main, generate.main):
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
    assert "--dtype" in capsys.readouterr().out


def test_one_epoch_on_the_real_corpus_beats_the_uniform_guess(real_corpus: Path, tmp_path: Path, capsys) -> None:
    """End to end through ``python -m scratch.train``, with one BLAS thread: on a busy 2-core machine
    OpenBLAS's default of one thread per core spends most of an epoch waiting for descheduled threads."""
    out = tmp_path / "real"
    result = run_module("scratch.train", "--data", str(real_corpus), "--out", str(out), "--epochs", "1", "--quiet",
                        env={"OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "--- prompt" in (out / "samples.txt").read_text()  # the samples written at the end
    row = read_rows(out)[0]
    vocab = json.loads((out / "vocab.json").read_text())["tokens"]
    assert len(vocab) > 1000
    assert row["val_loss"] < 0.75 * math.log(len(vocab)), row
    text = generate_output(capsys, "--run", str(out), "--prompt", "the sea", "--strategy", "greedy",
                           "--words", "10")
    assert text.startswith("the sea")

"""torchmodels.backend and torchmodels.train: optimizer semantics, dropout, resume, the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import window_reference as reference
from conftest import assert_usage_error, run_module, window_logits, window_step
from safetensors.numpy import load_file

from data.batches import batch_indices
from scratch.backend import NumpyBackend
from torchmodels import train as torch_train
from torchmodels.backend import TorchBackend
from torchmodels.devices import resolve_device
from wordrnn import frameworks
from wordrnn.core import tolerances
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.dropout import step_masks
from wordrnn.core.errors import UsageError
from wordrnn.core.params import init_params
from wordrnn.core.sampling import SamplerSettings
from wordrnn.run.folder import load_run
from wordrnn.run.generation import generate_text

V, H, E, B, T = 19, 8, 6, 16, 4


def problem(model: str, **settings) -> tuple[Config, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A config, initial weights, and 64 windows of a small repetitive token stream (learnable)."""
    config = Config(model=model, vocab_size=V, hidden_size=H, embed_dim=E, seq_len=T, batch_size=B, **settings)
    rng = np.random.default_rng(1)
    stream = np.tile(rng.permutation(V), 8)
    x = np.stack([stream[i:i + T] for i in range(64)]).astype(np.int64)
    y = stream[T:T + 64].astype(np.int64)
    return config, init_params(config), x, y


def batches(n_steps: int, n: int = 64) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    epoch = 1
    while len(out) < n_steps:
        out.extend(batch_indices(n, B, 0, epoch))
        epoch += 1
    return out[:n_steps]


def train(backend, config, params, x, y, steps: int, start: int = 0, state=None):
    state = backend.init(params, config) if state is None else state
    losses = []
    for step, idx in enumerate(batches(start + steps)[start:], start=start):
        state, loss = window_step(backend, state, x[idx], y[idx], step)
        losses.append(float(loss))
    return state, losses


@pytest.mark.parametrize("model, cell", [("onehot", "rnn"), ("embedding", "rnn"), ("embedding", "lstm"),
                                         ("onehot", "gru")])
def test_loss_falls_on_a_tiny_corpus(model: str, cell: str) -> None:
    config, params, x, y = problem(model, lr=1e-2, cell=cell)
    backend = TorchBackend()
    state, losses = train(backend, config, params, x, y, 60)
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:4])
    if cell == "rnn":  # the NumPy reference of the other cells is checked in tests/parity
        initial = reference.loss(params, x, y)
        final = reference.loss(backend.canonical(state), x, y)
        assert final < 0.5 * initial


@pytest.mark.parametrize("model,optimizer,gather", [
    ("onehot", "adam", False), ("onehot", "adam", True), ("embedding", "adam", False), ("embedding", "sgd", False),
])
def test_twenty_steps_match_the_numpy_backend(model: str, optimizer: str, gather: bool) -> None:
    """Clipping (active), weight decay and the optimizer as docs/DESIGN.md defines them (torch's semantics)."""
    lr = 1e-2 if optimizer == "adam" else 0.5
    config, params, x, y = problem(model, optimizer=optimizer, lr=lr, clip=0.5, weight_decay=0.01)
    _, torch_losses = train(TorchBackend(onehot_gather=gather), config, params, x, y, 20)
    numpy_state, numpy_losses = train(NumpyBackend(), config, params, x, y, 20)
    assert torch_losses[-1] < torch_losses[0]
    assert np.abs(np.array(torch_losses) - np.array(numpy_losses)).max() <= tolerances.TRAJECTORY


def test_one_sgd_step_clips_then_decays() -> None:
    config, params, x, y = problem("embedding", optimizer="sgd", lr=0.1, clip=0.05, weight_decay=0.1)
    backend = TorchBackend()
    state = backend.init(params, config)
    state, _ = window_step(backend, state, x[:B], y[:B], 0)
    _, grads = reference.loss_and_grads({k: v.astype(np.float64) for k, v in params.items()}, x[:B], y[:B])
    norm = np.sqrt(sum((g**2).sum() for g in grads.values()))
    assert norm > 10 * config.clip  # the clip is active
    coef = config.clip / (norm + 1e-6)
    after = backend.canonical(state)
    for name, p in params.items():
        expected = p - config.lr * (coef * grads[name] + config.weight_decay * p)
        assert np.abs(after[name] - expected).max() <= 1e-6, name


@pytest.mark.parametrize("cell", list(CELLS))
def test_optimizer_arrays_resume_exactly(cell: str) -> None:
    config, params, x, y = problem("embedding", dropout=0.3, cell=cell)
    backend = TorchBackend()
    straight, straight_losses = train(backend, config, params, x, y, 6)

    first, first_losses = train(backend, config, params, x, y, 3)
    arrays = backend.optimizer_arrays(first)
    assert int(arrays["adam.step"]) == 3
    resumed = backend.load_optimizer_arrays(backend.init(backend.canonical(first), config), arrays)
    resumed, later_losses = train(backend, config, None, x, y, 3, start=3, state=resumed)

    assert first_losses + later_losses == straight_losses
    final, expected = backend.canonical(resumed), backend.canonical(straight)
    assert all(np.array_equal(final[k], expected[k]) for k in expected)


def test_optimizer_arrays_use_the_canonical_names_of_the_numpy_backend() -> None:
    config, params, x, y = problem("onehot")
    torch_state, _ = train(TorchBackend(), config, params, x, y, 2)
    numpy_state, _ = train(NumpyBackend(), config, params, x, y, 2)
    ours, theirs = TorchBackend().optimizer_arrays(torch_state), NumpyBackend().optimizer_arrays(numpy_state)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape, key
    assert np.abs(ours["adam.v.out.weight"] - theirs["adam.v.out.weight"]).max() <= 1e-9

    fresh = TorchBackend().optimizer_arrays(TorchBackend().init(params, config))
    assert int(fresh["adam.step"]) == 0 and not fresh["adam.m.rnn.w_ih"].any()


def test_dropout_masks_come_from_seed_and_step_only() -> None:
    config, params, _, _ = problem("embedding", dropout=0.25, seed=7)
    backend = TorchBackend()
    one, other = backend.init(params, config), backend.init(params, config)
    a = backend.dropout_masks(one, 5, np.zeros((32, T), np.int64))
    backend.dropout_masks(one, 6, np.zeros((32, T), np.int64))
    b = backend.dropout_masks(other, 5, np.zeros((32, T), np.int64))  # fresh state, same (seed, step)
    assert a["input"].shape == (32, T, E) and a["hidden"].shape == (32, 1, H)
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["hidden"], b["hidden"])
    c = backend.dropout_masks(one, 6, np.zeros((32, T), np.int64))
    assert not torch.equal(a["hidden"], c["hidden"])
    spec = step_masks(config, 5, np.zeros((32, T), np.int64))  # the one specification every framework follows
    assert np.array_equal(a["input"].numpy(), spec["input"]) and np.array_equal(a["hidden"].numpy(), spec["hidden"])
    values = torch.cat([a["input"].flatten(), a["hidden"].flatten()])
    assert torch.equal(values.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert abs((values == 0).float().mean().item() - 0.25) < 0.05

    onehot_config, onehot_params, _, _ = problem("onehot", dropout=0.25)
    masks = backend.dropout_masks(backend.init(onehot_params, onehot_config), 0, np.zeros((4, T), np.int64))
    assert masks["input"] is None and masks["hidden"].shape == (4, 1, H)
    assert backend.dropout_masks(backend.init(params, problem("embedding")[0]), 0, np.zeros((4, T), np.int64)) is None


def test_logits_are_float32_numpy_in_evaluation_mode() -> None:
    config, params, x, _ = problem("embedding", dropout=0.5)
    backend = TorchBackend()
    out = window_logits(backend, backend.init(params, config), x[:3])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, V)
    assert np.abs(out - reference.logits(params, x[:3])).max() <= tolerances.LOGITS[np.float32]  # no dropout


def test_absent_device_is_a_usage_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UsageError, match="available: cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UsageError, match="sees no CUDA device|available: cpu"):
        frameworks.resolve_device("cuda")  # bench.speed's --device cuda asks the same function
    assert frameworks.resolve_device("auto") == "cpu"


def test_the_one_backend_factory_pins_a_device_kind() -> None:
    assert frameworks.make_backend("torch", "cpu").device == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        frameworks.make_backend("torch", "tpu")


# ---- the command line -------------------------------------------------------------------------------

TINY = ["--seq-len", "3", "--hidden-size", "8", "--embed-dim", "6", "--batch-size", "8", "--min-freq", "1",
        "--val-fraction", "0.34", "--quiet"]


def cli(corpus: Path, out: Path, *flags: str) -> int:
    return torch_train.main(["--data", str(corpus), "--out", str(out), *TINY, *flags])


def test_cli_device_cuda_without_cuda_exits_2(tiny_corpus: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_module("torchmodels.train", "--data", str(tiny_corpus), "--out", str(tmp_path / "r"),
                        "--device", "cuda", "--epochs", "1", "--quiet")
    assert_usage_error(result, "--device cuda", "available: cpu")
    assert not (tmp_path / "r").exists()


def test_cli_help_names_the_torch_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        torch_train.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--device", "--compile", "--onehot-gather", "--seq-len", "--resume"):
        assert flag in text


@pytest.mark.parametrize("model", ["embedding", "onehot"])
def test_cli_resume_equals_an_uninterrupted_run(model: str, tiny_corpus: Path, tmp_path: Path) -> None:
    flags = ["--model", model, "--dropout", "0.3", "--lr", "0.01"]
    assert cli(tiny_corpus, tmp_path / "straight", *flags, "--epochs", "3") == 0
    assert cli(tiny_corpus, tmp_path / "split", *flags, "--epochs", "1") == 0
    assert cli(tiny_corpus, tmp_path / "split", *flags, "--epochs", "3", "--resume") == 0

    def numbers(run: str) -> list[dict]:
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]

    straight = numbers("straight")
    assert [row["epoch"] for row in straight] == [1, 2, 3]
    assert numbers("split") == straight
    for name in ("weights.safetensors", "checkpoint.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "split" / name)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["framework"] == "torch" and config["extra"]["device"] == "cpu"


def test_cli_run_folder_is_read_by_the_numpy_reference(tiny_corpus: Path, tmp_path: Path) -> None:
    assert cli(tiny_corpus, tmp_path / "run", "--model", "onehot", "--onehot-gather", "--epochs", "2") == 0
    run = load_run(tmp_path / "run")
    assert run.framework == "torch" and run.config.extra["onehot_gather"] is True
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = min(rows, key=lambda r: r["val_loss"])
    # The NumPy reference, reading only the run folder, reproduces the best epoch's validation loss.
    from data.dataset import load_dataset

    data = load_dataset(**run.config.dataset_args(), vocab=run.vocab)
    z = reference.logits(run.params, data.val_x).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(data.val_y)), data.val_y]
    assert abs(nll.mean() - best["val_loss"]) <= 1e-5
    assert (tmp_path / "run" / "samples.txt").read_text().strip()


def test_scratch_generate_reads_a_torch_run_and_writes_the_same_greedy_text(tiny_corpus: Path,
                                                                           tmp_path: Path) -> None:
    assert cli(tiny_corpus, tmp_path / "run", "--model", "embedding", "--epochs", "2", "--lr", "0.02") == 0
    result = run_module("scratch.generate", "--run", str(tmp_path / "run"), "--prompt", "the sea",
                        "--words", "12", "--strategy", "greedy")
    assert result.returncode == 0, result.stderr
    run = load_run(tmp_path / "run")
    backend = TorchBackend()
    state = backend.init(run.params, run.config)
    expected = generate_text(lambda x: window_logits(backend, state, x), run.vocab, run.config.seq_len, "the sea", 12,
                             SamplerSettings("greedy"))
    assert result.stdout.strip() == expected.strip() and len(expected.split()) > 2


def test_cli_existing_run_without_resume_is_refused(tiny_corpus: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tiny_corpus, tmp_path / "run", "--epochs", "1") == 0
    with pytest.raises(SystemExit) as exit_info:
        cli(tiny_corpus, tmp_path / "run", "--epochs", "1")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_real_corpus_onehot_forms_train_alike(real_corpus: Path) -> None:
    """On the real vocabulary (V in the thousands) both one-hot forms take the same steps."""
    from data.dataset import load_dataset

    config = Config(model="onehot", data=str(real_corpus))
    data = load_dataset(**config.dataset_args())
    config.vocab_size = len(data.vocab)
    params = init_params(config)
    losses = []
    for gather in (False, True):
        backend = TorchBackend(onehot_gather=gather)
        state = backend.init(params, config)
        run = []
        for step, idx in zip(range(5), batch_indices(len(data.train_x), config.batch_size, 0, 1)):
            state, loss = window_step(backend, state, data.train_x[idx], data.train_y[idx], step)
            run.append(float(loss))
        losses.append(run)
    assert np.abs(np.array(losses[0]) - np.array(losses[1])).max() <= 1e-6
    assert abs(losses[0][0] - np.log(config.vocab_size)) < 0.5  # a fresh model is nearly uniform


@pytest.mark.slow
def test_compiled_backend_takes_the_same_steps() -> None:
    config, params, x, y = problem("embedding", dropout=0.2)
    _, eager = train(TorchBackend(), config, params, x, y, 8)
    _, compiled = train(TorchBackend(compile=True), config, params, x, y, 8)
    assert np.abs(np.array(eager) - np.array(compiled)).max() <= 1e-5

"""``python -m jaxmodels.train``: flags, clear errors, run folders, exact resume."""

from __future__ import annotations

import json

import numpy as np
from conftest import assert_usage_error, run_module

from jaxmodels.train import main
from wordrnn.run.folder import CHECKPOINT, WEIGHTS, load_arrays, load_run, read_metrics


def train(corpus, out, *extra: str) -> int:
    args = ["--data", str(corpus), "--out", str(out), "--min-freq", "1", "--batch-size", "8", "--seq-len", "3",
            "--hidden-size", "16", "--embed-dim", "8", "--quiet", *extra]
    return main(args)


def test_help_lists_the_jax_flags():
    result = run_module("jaxmodels.train", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--accelerator", "--devices", "--coordinator-address", "--num-processes", "--process-id",
                 "--seq-len", "--resume"):
        assert flag in result.stdout


def test_absent_accelerator_is_a_clear_error(tiny_corpus, tmp_path):
    result = run_module("jaxmodels.train", "--accelerator", "tpu", "--data", str(tiny_corpus),
                        "--out", str(tmp_path / "run"))
    assert_usage_error(result, "--accelerator tpu", "platforms present: cpu")
    assert not (tmp_path / "run").exists()


def test_too_many_devices_is_a_clear_error(tiny_corpus, tmp_path):
    """The command makes --devices N CPU devices itself, except where XLA_FLAGS already fixes their count."""
    result = run_module("jaxmodels.train", "--devices", "9", "--data", str(tiny_corpus),
                        "--out", str(tmp_path / "run"), env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    assert_usage_error(result, "--devices 9", "only 1 cpu device",
                       "set XLA_FLAGS=--xla_force_host_platform_device_count=9 before it starts")


def test_process_flags_need_a_coordinator(tiny_corpus, tmp_path):
    result = run_module("jaxmodels.train", "--num-processes", "2", "--data", str(tiny_corpus),
                        "--out", str(tmp_path / "run"))
    assert_usage_error(result, "--coordinator-address")


def test_resume_equals_uninterrupted(tiny_corpus, tmp_path):
    """Two epochs, then a resumed third, give the same numbers as three epochs in one go (dropout on).

    The embedding model: it has both dropout masks. (The one-hot model's optimizer round trip is
    checked in test_jax_models.)
    """
    common = ("--model", "embedding", "--dropout", "0.3", "--weight-decay", "0.01", "--lr", "0.01")
    assert train(tiny_corpus, tmp_path / "straight", "--epochs", "3", *common) == 0
    assert train(tiny_corpus, tmp_path / "resumed", "--epochs", "2", *common) == 0
    assert train(tiny_corpus, tmp_path / "resumed", "--epochs", "3", "--resume", *common) == 0

    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    for a, b in zip(straight, resumed, strict=True):
        assert (a["train_loss"], a["val_loss"]) == (b["train_loss"], b["val_loss"])
    assert straight[2]["train_loss"] < straight[0]["train_loss"]
    for name in (WEIGHTS, CHECKPOINT):
        a, _ = load_arrays(tmp_path / "straight" / name)
        b, _ = load_arrays(tmp_path / "resumed" / name)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    checkpoint, _ = load_arrays(tmp_path / "resumed" / CHECKPOINT)
    assert checkpoint["adam.step"].item() > 0 and "adam.m.rnn.w_ih" in checkpoint


def test_run_folder_is_readable_by_any_part(tiny_corpus, tmp_path):
    assert train(tiny_corpus, tmp_path / "run", "--epochs", "1", "--model", "onehot") == 0
    run = load_run(tmp_path / "run")
    assert run.framework == "jax" and run.config.model == "onehot"
    assert run.config.extra == {"accelerator": "cpu", "devices": 1}
    assert set(run.params) == {"rnn.w_ih", "rnn.w_hh", "rnn.b_ih", "rnn.b_hh", "out.weight", "out.bias"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "flax" in config["versions"]

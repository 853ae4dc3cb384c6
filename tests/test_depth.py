"""Stacked layers and the activation penalties from the command line: every trainer takes them, a one-layer run
is what it was, and each bad input ends in one `error:` line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_corpus
from safetensors.numpy import load_file
from test_reliability import run_main, trainer
from test_reliability3 import contents, refuses

from scratch import train as scratch_train
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.memory import check_memory, estimate_training_memory
from wordrnn.run.folder import CONFIG, WEIGHTS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def stacked(corpus, tmp_path_factory) -> Path:
    """A one-epoch 2-layer poem run with every lever of the stack on."""
    run = tmp_path_factory.mktemp("runs") / "two"
    assert scratch_train.main(trainer(corpus, run, "--epochs", "1", "--context", "poem", "--layers", "2",
                                      "--dropout-between", "0.2", "--ar", "2", "--tar", "1")) == 0
    return run


def test_a_stacked_run_records_its_layers_and_holds_their_weights(stacked):
    config = json.loads((stacked / CONFIG).read_text())
    assert config["layers"] == 2 and config["ar"] == 2 and config["format_version"] == 4
    weights = load_file(stacked / WEIGHTS)
    assert {"rnn.w_ih_l1", "rnn.w_hh_l1", "rnn.b_ih_l1", "rnn.b_hh_l1"} <= set(weights)
    assert weights["rnn.w_ih_l1"].shape == (config["hidden_size"], config["hidden_size"])


def test_a_one_layer_run_writes_the_format_it_wrote_before(corpus, tmp_path):
    assert scratch_train.main(trainer(corpus, tmp_path / "one", "--epochs", "1")) == 0
    config = json.loads((tmp_path / "one" / CONFIG).read_text())
    assert config["format_version"] < 4 and not any("_l" in name for name in load_file(tmp_path / "one" / WEIGHTS))


@pytest.mark.parametrize("flags, fragments", [
    (("--layers", "0"), ("--layers must be a positive whole number, got 0",)),
    (("--layers", "-2"), ("--layers must be a positive whole number, got -2",)),
    (("--ar", "-1"), ("--ar must be 0 (off) or a positive weight, got -1",)),
    (("--tar", "nan"), ("--tar must be 0 (off) or a positive weight, got nan",)),
    (("--dropout-between", "0.3"), ("--dropout-between 0.3 drops what one layer hands the next",
                                     "add --layers 2 or more, or leave it out")),
    (("--layers", "2", "--dropout-between", "1.5"), ("--dropout-between must lie in [0, 1), got 1.5",)),
])
def test_bad_depth_flags_are_refused_in_one_line(corpus, tmp_path, capsys, flags, fragments):
    refuses(scratch_train.main, trainer(corpus, tmp_path / "run", *flags), capsys, *fragments)
    assert not (tmp_path / "run").exists()


def test_resume_with_another_layer_count_is_refused_naming_both(stacked, corpus, tmp_path, capsys):
    run = Path(shutil.copytree(stacked, tmp_path / "two"))
    before = contents(run)
    refuses(scratch_train.main, trainer(corpus, run, "--resume", "--epochs", "2", "--context", "poem", "--layers",
                                        "3"), capsys, "--layers 3 (saved: 2)")
    assert contents(run) == before


def test_init_from_takes_the_source_runs_layers_and_refuses_another_count(stacked, corpus, tmp_path, capsys):
    refuses(scratch_train.main, trainer(corpus, tmp_path / "three", "--context", "poem", "--init-from", str(stacked),
                                        "--layers", "3"), capsys, "--layers 3 (the source run's: 2)")
    code, _, err = run_main(scratch_train.main, trainer(corpus, tmp_path / "same", "--epochs", "1", "--context",
                                                        "poem", "--init-from", str(stacked)), capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "same" / CONFIG).read_text())["layers"] == 2


def test_the_memory_estimate_counts_every_layer_and_a_refusal_names_them():
    one = Config(vocab_size=2000, layers=1, hidden_size=512)
    four = Config(vocab_size=2000, layers=4, hidden_size=512)
    a, b = estimate_training_memory(one), estimate_training_memory(four)
    extra = 3 * (512 * 512 + 512 * 512 + 2 * 512)  # three more Elman layers: w_ih, w_hh, b_ih, b_hh
    assert b.parameters - a.parameters == extra and b.activations > a.activations
    with pytest.raises(UsageError, match=r"fewer --layers \(now 4\)"):
        check_memory(four, available=a.total)
    assert np.isfinite(b.total)

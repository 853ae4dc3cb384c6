"""Faults a user or a fault tester meets: each gives one clear line and the documented exit code
(2: bad input, ``error:`` line; 1: the work failed, ``error:`` line; 130: Ctrl-C), and nothing is lost.

Commands run in this process through their ``main`` where that is enough (an uncaught exception fails
the test just as a traceback would), and as subprocesses where the exit code of the real command, a
kill or a full disk is the point.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY_POEMS, assert_usage_error, run_module, write_tiny_corpus

from data.corpus import read_corpus
from scratch import train as scratch_train
from wordrnn.core.config import Config
from wordrnn.core.errors import DiskFull, UsageError
from wordrnn.run import folder
from wordrnn.run.folder import (
    CHECKPOINT,
    CONFIG,
    VOCAB,
    WEIGHTS,
    atomic_write_bytes,
    check_optimizer_arrays,
    load_arrays,
    load_run,
)
from wordrnn.run.loop import Diverged, train

TINY = ("--seq-len", "3", "--min-freq", "1", "--hidden-size", "8", "--embed-dim", "4", "--batch-size", "16",
        "--quiet")


def trainer(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(corpus), *TINY, "--out", str(out), *extra]


def run_main(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """A command's ``main`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main(argv) or 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Warning" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory) -> Path:
    """A one-epoch one-hot run (1 epoch, so --resume --epochs 2 can continue it)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert scratch_train.main(trainer(corpus, out, "--epochs", "1", "--model", "onehot")) == 0
    return out


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


# ---------------------------------------------------------------- seeds

@pytest.mark.parametrize("module, args", [
    ("data", ()),
    ("scratch.train", ("--epochs", "1")),
    ("wordrnn.bench.compare", ("--impls", "numpy")),
    ("scratch.gradcheck", ()),
])
def test_a_negative_seed_is_refused_before_any_work(module, args, corpus):
    result = run_module(module, "--data", str(corpus), *args, "--seed", "-1") if module != "scratch.gradcheck" \
        else run_module(module, "--seed", "-1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--seed: must be a whole number from 0 to 2**63 - 1, the range NumPy, PyTorch and JAX all accept, got -1" \
        in result.stderr


def test_a_negative_seed_is_refused_by_the_generators(run_dir, capsys):
    from export import generate as onnx_generate
    from scratch import generate

    for main, extra in ((generate.main, ["--run", str(run_dir)]), (onnx_generate.main, ["--model", "x.onnx"])):
        code, _, err = run_main(main, [*extra, "--seed", "-1"], capsys)
        assert code == 2 and "--seed" in err and "Traceback" not in err, err


def test_config_refuses_a_negative_seed():
    with pytest.raises(UsageError, match="--seed"):
        Config(seed=-1).validate()


# ---------------------------------------------------------------- a full disk

def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / CHECKPOINT
    target.write_bytes(b"previous")

    def no_space(f, payload, target):
        f.write(payload[: len(payload) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder, "_write_all", no_space)
    with pytest.raises(DiskFull) as caught:
        atomic_write_bytes(target, b"x" * 5000)
    message = str(caught.value)
    assert str(target) in message and "needs 4.9 KiB" in message and "free there" in message
    assert "previous checkpoint.safetensors is intact" in message
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]


def test_a_full_disk_during_training_is_one_line_and_exit_1(corpus, tmp_path, monkeypatch, capsys):
    real = folder._write_all

    def full_for_checkpoints(f, payload, target):
        if target.name == CHECKPOINT:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, payload, target)

    monkeypatch.setattr(folder, "_write_all", full_for_checkpoints)
    code, _, err = run_main(scratch_train.main, trainer(corpus, tmp_path / "run", "--epochs", "1"), capsys)
    assert code == 1
    line = one_error_line(err)
    assert f"writing {tmp_path / 'run' / CHECKPOINT} needs" in line and "Free some space" in line
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.fixture
def small_filesystem(tmp_path):
    """A 64 KiB tmpfs: room for config.json, vocab.json and metrics, not for a checkpoint."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode:
        pytest.skip(f"this machine does not allow a tmpfs mount: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_filesystem_while_training(corpus, small_filesystem):
    out = small_filesystem / "run"
    result = run_module("scratch.train", "--data", str(corpus), "--seq-len", "3", "--min-freq", "1",
                        "--hidden-size", "64", "--model", "onehot", "--epochs", "1", "--out", str(out))
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = one_error_line(result.stderr)
    assert "the disk is full: writing" in line and CHECKPOINT in line and "needs" in line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- --out

def test_out_naming_a_file_or_a_path_under_a_file_is_refused(corpus, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    code, _, err = run_main(scratch_train.main, trainer(corpus, a_file), capsys)
    assert code == 2 and f"--out {a_file} is a file" in one_error_line(err)
    code, _, err = run_main(scratch_train.main, trainer(corpus, a_file / "run"), capsys)
    assert code == 2 and f"lies under {a_file}, which is a file" in one_error_line(err)
    assert a_file.read_text() == "mine\n"
    assert_usage_error(run_module("wordrnn.bench.compare", "--data", str(corpus), "--out", str(a_file)), "is a file")


def test_export_refuses_a_bad_out_before_any_work_and_needs_overwrite(run_dir, tmp_path, capsys, monkeypatch):
    from export import onnx as export_onnx

    monkeypatch.setattr(export_onnx, "export_run", lambda *a, **k: pytest.fail("exported before checking --out"))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    code, _, err = run_main(export_onnx.main, ["--run", str(run_dir), "--out", str(a_file / "m.onnx")], capsys)
    assert code == 2 and "which is a file" in one_error_line(err)
    code, _, err = run_main(export_onnx.main, ["--run", str(run_dir), "--out", str(a_file)], capsys)
    assert code == 2 and "already exists; pass --overwrite" in one_error_line(err)
    assert a_file.read_text() == "mine\n"
    monkeypatch.undo()
    code, out, err = run_main(export_onnx.main, ["--run", str(run_dir), "--out", str(a_file), "--overwrite",
                                                  "--reference", "numpy"], capsys)
    assert code == 0, err
    assert a_file.read_bytes()[:4] != b"mine"


# ---------------------------------------------------------------- damaged run folders

@pytest.mark.parametrize("vocab", ['["<unk>", "the"]', '{"tokens": "the sea"}', '{"tokens": [1, 2]}'])
def test_a_vocab_json_of_the_wrong_shape_is_one_line(run_dir, tmp_path, vocab):
    copy = copy_run(run_dir, tmp_path)
    (copy / VOCAB).write_text(vocab)
    with pytest.raises(UsageError, match="vocab.json"):
        load_run(copy)


@pytest.mark.parametrize("change, fragment", [
    ({"hidden_size": "8"}, "hidden_size is '8', which is not a whole number"),
    ({"lr": None}, "lr is None, which is not a number"),
    ({"model": 3}, "model is 3, which is not text"),
])
def test_a_config_json_with_a_wrong_type_names_the_field(run_dir, tmp_path, change, fragment):
    copy = copy_run(run_dir, tmp_path)
    raw = json.loads((copy / CONFIG).read_text())
    (copy / CONFIG).write_text(json.dumps({**raw, **change}))
    with pytest.raises(UsageError, match=fragment):
        load_run(copy)


def test_a_config_json_missing_a_key_is_refused_not_defaulted(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    raw = json.loads((copy / CONFIG).read_text())
    del raw["hidden_size"]
    (copy / CONFIG).write_text(json.dumps(raw))
    assert_usage_error(run_module("scratch.generate", "--run", str(copy)), "lacks hidden_size")


# ---------------------------------------------------------------- --resume and --init-from

def test_resume_refuses_conflicting_settings_naming_each(corpus, run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    code, _, err = run_main(scratch_train.main, trainer(corpus, copy, "--resume", "--epochs", "2",
                                                        "--hidden-size", "16", "--lr", "0.1"), capsys)
    line = one_error_line(err)
    assert code == 2
    assert "--hidden-size 16 (saved: 8)" in line and "--lr 0.1 (saved: 0.001)" in line
    assert "--model" not in line  # not given on the command line: no conflict


def test_resume_may_change_the_epochs_and_config_json_says_so(corpus, run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    code, _, err = run_main(scratch_train.main, trainer(corpus, copy, "--resume", "--epochs", "2"), capsys)
    assert code == 0, err
    assert json.loads((copy / CONFIG).read_text())["epochs"] == 2
    assert [json.loads(line)["epoch"] for line in (copy / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_resume_with_overwrite_is_contradictory(corpus, run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    code, _, err = run_main(scratch_train.main, trainer(corpus, copy, "--resume", "--overwrite", "--epochs", "2"),
                            capsys)
    assert code == 2 and "--resume continues the run in --out and --overwrite replaces it" in one_error_line(err)


@pytest.mark.parametrize("flags, fragment", [
    (("--model", "embedding"), "--model embedding (the source run's: onehot)"),
    (("--min-freq", "2"), "--min-freq 2 (the source run's: 1)"),
    (("--cell", "lstm"), "--cell lstm (the source run's: rnn)"),
])
def test_init_from_refuses_settings_its_weights_cannot_have(corpus, run_dir, tmp_path, capsys, flags, fragment):
    argv = [*trainer(corpus, tmp_path / "b", "--epochs", "1", "--init-from", str(run_dir)), *flags]
    code, _, err = run_main(scratch_train.main, argv, capsys)
    assert code == 2 and fragment in one_error_line(err)
    assert not (tmp_path / "b").exists()


def test_init_from_without_conflicts_says_what_it_adopts(corpus, run_dir, tmp_path, capsys):
    argv = [a for a in trainer(corpus, tmp_path / "b", "--epochs", "1", "--init-from", str(run_dir)) if a != "--quiet"]
    code, out, err = run_main(scratch_train.main, argv, capsys)
    assert code == 0, err
    assert f"--init-from {run_dir}: onehot model, rnn cell, 1 layer(s) of hidden size 8" in out
    assert load_run(tmp_path / "b").vocab.tokens == load_run(run_dir).vocab.tokens


# ---------------------------------------------------------------- folders without a complete epoch

def test_a_folder_without_a_complete_epoch_is_not_a_run(corpus, run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    for name in (CHECKPOINT, WEIGHTS, "metrics.jsonl"):
        (copy / name).unlink()
    code, _, err = run_main(scratch_train.main, trainer(corpus, copy, "--resume", "--epochs", "2"), capsys)
    assert code == 2 and "nothing to resume" in one_error_line(err) and "without --resume" in err
    argv = [a for a in trainer(corpus, copy, "--epochs", "1", "--model", "onehot") if a != "--quiet"]
    code, out, err = run_main(scratch_train.main, argv, capsys)
    assert code == 0, err
    assert "holds no complete epoch" in out and "starting afresh" in out
    load_run(copy)


class Interrupting:
    """A NumPy backend that is interrupted (Ctrl-C) at one global step."""

    def __init__(self, at: int):
        from scratch.backend import NumpyBackend

        self.inner, self.at = NumpyBackend(), at
        self.framework, self.process_index = "numpy", 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_step(self, state, chunk, carry, step):
        if step == self.at:
            raise KeyboardInterrupt
        return self.inner.train_step(state, chunk, carry, step)


def tiny_config(corpus: Path, **overrides) -> Config:
    values = dict(data=str(corpus), seq_len=3, min_freq=1, hidden_size=8, embed_dim=4, batch_size=16, epochs=2)
    return Config(**{**values, **overrides}).validate()


def test_ctrl_c_messages_agree_with_what_resume_and_a_rerun_do(corpus, tmp_path, capsys):
    result = train(tiny_config(corpus), Interrupting(at=0), tmp_path / "run", quiet=True)
    err = capsys.readouterr().err
    assert result.exit_code == 130
    assert "before the first epoch completed; nothing to resume" in err and "start afresh" in err
    result = train(tiny_config(corpus), Interrupting(at=9), tmp_path / "run", quiet=True)  # 8 steps per epoch
    err = capsys.readouterr().err
    assert result.exit_code == 130 and "holds 1 complete epoch." in err and "--resume" in err


def test_orphaned_temporary_files_are_removed_by_the_next_run(corpus, run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    orphan = copy / f".{CHECKPOINT}.k1ll3d.tmp"
    orphan.write_bytes(b"\0" * 1000)
    code, _, err = run_main(scratch_train.main, trainer(corpus, copy, "--resume", "--epochs", "2"), capsys)
    assert code == 0, err
    assert not orphan.exists()


def test_weights_older_than_a_best_checkpoint_are_restored_on_resume(corpus, run_dir, tmp_path, capsys):
    """A kill between the checkpoint (written first) and the best weights: resume rewrites the weights."""
    copy = copy_run(run_dir, tmp_path)
    (copy / WEIGHTS).unlink()
    code, _, err = run_main(scratch_train.main, trainer(corpus, copy, "--resume", "--epochs", "2"), capsys)
    assert code == 0, err
    assert (copy / WEIGHTS).is_file()


HANG_IN_FIRST_CHECKPOINT = """
import sys, time
from pathlib import Path
from wordrnn.run import folder
real = folder._write_all
def hang(f, payload, target):
    if target.name == "checkpoint.safetensors":
        f.write(payload[: len(payload) // 2]); f.flush()
        Path(sys.argv[1]).write_text("writing")
        time.sleep(600)
    real(f, payload, target)
folder._write_all = hang
from scratch.train import main
main(sys.argv[2:])
"""


def test_kill_9_during_the_first_checkpoint_write(corpus, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HANG_IN_FIRST_CHECKPOINT, str(marker),
                             *trainer(corpus, out, "--epochs", "2")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "timed out"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(out.glob(f".{CHECKPOINT}.*.tmp"))  # the half-written checkpoint the kill left

    # generate and --resume agree: there is no run here yet
    assert_usage_error(run_module("scratch.generate", "--run", str(out)), "incomplete", WEIGHTS)
    assert_usage_error(run_module("scratch.train", *trainer(corpus, out, "--epochs", "2", "--resume")),
                       "nothing to resume")
    # and a plain rerun starts afresh, clearing the half-written file
    rerun = run_module("scratch.train", *[a for a in trainer(corpus, out, "--epochs", "1") if a != "--quiet"])
    assert rerun.returncode == 0, rerun.stderr
    assert "starting afresh" in rerun.stdout
    assert not list(out.glob(".*.tmp"))
    load_run(out)


# ---------------------------------------------------------------- divergence

class Exploding:
    """A NumPy backend whose loss jumps to ``loss`` from one global step on."""

    def __init__(self, at: int, loss: float):
        from scratch.backend import NumpyBackend

        self.inner, self.at, self.loss = NumpyBackend(), at, loss
        self.framework, self.process_index = "numpy", 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_step(self, state, chunk, carry, step):
        state, loss, carry = self.inner.train_step(state, chunk, carry, step)
        return state, (self.loss if step >= self.at else loss), carry


@pytest.mark.parametrize("loss", [1e8, 1e36, float("inf")])
def test_a_diverging_loss_stops_naming_the_step_and_keeps_the_last_good_epoch(corpus, tmp_path, loss):
    with pytest.raises(Diverged) as caught:
        train(tiny_config(corpus, epochs=4), Exploding(at=10, loss=loss), tmp_path / "run", quiet=True)
    message = str(caught.value)
    assert f"the training loss became {loss:.4g} at step 10 (epoch 2)" in message
    assert "keeps epoch 1, the last good one" in message and "--lr" in message and "--clip" in message
    _, counters = load_arrays(tmp_path / "run" / CHECKPOINT)
    assert counters["epoch"] == 1
    load_run(tmp_path / "run")


def test_a_loss_infinite_at_the_first_step_says_nothing_was_kept(corpus, tmp_path):
    with pytest.raises(Diverged, match="nothing to keep: no epoch had completed"):
        train(tiny_config(corpus), Exploding(at=0, loss=float("inf")), tmp_path / "run", quiet=True)


def test_a_diverging_command_exits_1_with_one_line_and_no_warnings(corpus, tmp_path):
    result = run_module("scratch.train", *trainer(corpus, tmp_path / "run", "--epochs", "2", "--lr", "1e4",
                                                  "--clip", "0", "--model", "onehot"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    line = one_error_line(result.stderr)
    assert line.startswith("error: training diverged: the training loss became") and "at step" in line
    assert "RuntimeWarning" not in result.stderr


def test_a_min_freq_leaving_only_unk_is_refused_before_training(corpus, tmp_path, capsys):
    code, _, err = run_main(scratch_train.main, trainer(corpus, tmp_path / "run", "--min-freq", "1000"), capsys)
    assert code == 2
    assert "--min-freq 1000 leaves a vocabulary of 1 (only <unk>)" in one_error_line(err)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the optimizer state check

def test_one_optimizer_state_check_for_every_framework():
    config = Config(model="onehot", vocab_size=5, hidden_size=3)
    shapes = {"rnn.w_ih": (3, 5), "rnn.w_hh": (3, 3), "rnn.b_ih": (3,), "rnn.b_hh": (3,), "out.weight": (5, 3),
              "out.bias": (5,)}
    adam = {"adam.step": np.array([4]), **{f"adam.{m}.{k}": np.ones(s) for m in "mv" for k, s in shapes.items()}}
    checked = check_optimizer_arrays(adam, config)
    assert checked["adam.step"].shape == () and checked["adam.step"].dtype == np.int64
    assert all(v.dtype == np.float32 for k, v in checked.items() if k != "adam.step")
    with pytest.raises(UsageError, match="lacks the Adam state adam.step"):
        check_optimizer_arrays({}, config)  # an empty state is refused, the same in every framework
    with pytest.raises(UsageError, match="--optimizer sgd, which keeps none"):
        check_optimizer_arrays(adam, Config(model="onehot", vocab_size=5, hidden_size=3, optimizer="sgd"))
    assert check_optimizer_arrays({}, Config(optimizer="sgd")) == {}
    wrong = {**adam, "adam.m.out.bias": np.ones(4)}
    with pytest.raises(UsageError, match=r"adam.m.out.bias has shape \(4,\)"):
        check_optimizer_arrays(wrong, config)


# ---------------------------------------------------------------- corpus, defaults, output

def test_a_txt_corpus_with_a_few_double_blank_lines_is_read_by_its_single_ones(tmp_path):
    poems = [f"poem {i} line one\npoem {i} line two" for i in range(40)]
    text = "\n\n".join(poems[:20]) + "\n\n\n" + "\n\n".join(poems[20:30]) + "\n\n\n\n" + "\n\n".join(poems[30:])
    (tmp_path / "c.txt").write_text(text)
    corpus = read_corpus(tmp_path / "c.txt")
    assert len(corpus.poems) == 40 and corpus.separator == "one blank line"
    write_tiny_corpus(tmp_path)  # two blank lines between every poem, stanzas inside by one
    assert read_corpus(tmp_path / "tiny.txt").separator == "two blank lines"


def test_commands_say_what_corpus_they_read_and_write_plain_lines_to_a_log(corpus, tmp_path):
    stats = run_module("data", "--data", str(corpus), "--seq-len", "3", "--min-freq", "1")
    assert stats.returncode == 0 and "two blank lines" in stats.stdout
    result = run_module("scratch.train", *[a for a in trainer(corpus, tmp_path / "run", "--epochs", "1")
                                           if a != "--quiet"])
    assert result.returncode == 0, result.stderr
    assert f"corpus {corpus}: {len(TINY_POEMS)} poems (separated by two blank lines)" in result.stdout
    assert "\r" not in result.stderr + result.stdout  # no progress bar redrawn into a log file


def test_the_corpus_check_of_make_demo_needs_only_the_standard_library(corpus, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WORDRNN_DATA"}
    check = [sys.executable, "-S", "-m", "data.locate"]  # -S: no site-packages, so no NumPy
    found = subprocess.run([*check, "--data", str(corpus)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert found.returncode == 0 and str(corpus) in found.stdout, found.stderr
    missing = subprocess.run([*check, "--data", str(tmp_path / "none.csv")], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert_usage_error(missing, "not a file")
    if shutil.which("make"):
        # run from inside `make test` too: the outer make's variables would make this one print its directories
        quiet = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        plan = subprocess.run(["make", "--no-print-directory", "-n", "demo"], cwd=ROOT, env=quiet,
                              capture_output=True, text=True)
        commands = [line for line in plan.stdout.splitlines() if line.strip() and not line.startswith("make")]
        assert "data.locate" in commands[0], plan.stdout


def test_report_defaults_agree_and_never_touch_tracked_docs():
    from wordrnn.bench import compare

    makefile = (ROOT / "Makefile").read_text()
    assert f"wordrnn.bench.compare --out {compare.DEFAULT_OUT}" in makefile
    assert not compare.DEFAULT_OUT.startswith("docs/")


def test_help_shows_every_default(capsys):
    from scratch import gradcheck

    with pytest.raises(SystemExit):
        gradcheck.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "sampled entries (default: 0)" in text


def test_compare_writes_samples_and_an_interrupted_rerun_leaves_no_old_report(corpus, tmp_path, capsys,
                                                                                monkeypatch):
    from wordrnn.bench import compare, lab

    out = tmp_path / "report"
    argv = ["--data", str(corpus), "--seq-len", "3", "--min-freq", "1", "--hidden-size", "8", "--embed-dim", "4",
            "--epochs", "1", "--impls", "numpy", "--models", "embedding", "--no-recipe", "--no-export", "--quiet",
            "--out", str(out)]
    code, stdout, err = run_main(compare.main, argv, capsys)
    assert code == 0, err
    assert "1 epoch;" in stdout
    assert (out / "REPORT.md").is_file() and list(out.glob("runs/*/samples.txt"))
    code, _, err = run_main(compare.main, argv, capsys)
    assert code == 2 and "already holds a report; pass --overwrite" in one_error_line(err)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lab, "run_comparison", interrupted)
    code, _, err = run_main(compare.main, [*argv, "--overwrite"], capsys)
    assert code == 130 and "no report written" in err
    assert not (out / "REPORT.md").exists() and not (out / "results.json").exists()


def test_cli_maps_each_kind_of_failure_to_its_exit_code(capsys):
    from wordrnn.core.errors import RunFailed, cli

    def failing(exc):
        @cli
        def main():
            raise exc
        return main

    for exc, code in ((UsageError("bad flag"), 2), (RunFailed("diverged"), 1), (DiskFull("full"), 1),
                      (KeyboardInterrupt(), 130)):
        with pytest.raises(SystemExit) as stop:
            failing(exc)()
        assert stop.value.code == code
        err = capsys.readouterr().err
        assert (f"error: {exc}" if code != 130 else "interrupted") in err and "Traceback" not in err

"""More faults a careless user meets: huge sizes, unwritable paths, two runs in one folder, Ctrl-C at any
moment, a changed corpus, a damaged checkpoint, and the traps a newcomer falls into. Each ends in one clear
line and the documented exit code (2: bad input; 1: the work failed; 130: Ctrl-C), and nothing is lost.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, assert_usage_error, run_module, run_python, write_tiny_corpus
from test_reliability import one_error_line, run_main, trainer

from data.corpus import read_corpus
from scratch import train as scratch_train
from wordrnn.core.cells import CELLS
from wordrnn.core.errors import UsageError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs where the test runs as root (root ignores
    permissions), else a folder without write permission."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if made.returncode:
        pytest.skip(f"this machine does not allow a tmpfs mount: {made.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


# ---------------------------------------------------------------- places nothing can be written

def test_a_trainer_refuses_an_out_it_cannot_write_before_any_work(corpus, read_only_folder, capsys):
    out = read_only_folder / "run"
    code, _, err = run_main(scratch_train.main, trainer(corpus, out, "--epochs", "1"), capsys)
    assert code == 2
    assert f"--out {out}: nothing can be written in {read_only_folder}" in one_error_line(err)


def test_the_web_page_refuses_an_out_it_cannot_write(read_only_folder, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read before --out is checked")
    assert_usage_error(run_module("export.web", "--model", str(model), "--out", str(read_only_folder / "site")),
                       f"nothing can be written in {read_only_folder}")


def test_an_os_error_on_a_path_is_one_line_naming_it(capsys):
    from wordrnn.core.errors import cli

    @cli
    def main(err: OSError) -> None:
        raise err

    for err, code in ((PermissionError(errno.EACCES, "Permission denied", "/x/run"), 2),
                      (OSError(errno.ENOSPC, "No space left on device", "/x/site"), 1)):
        with pytest.raises(SystemExit) as stop:
            main(err)
        assert stop.value.code == code
        line = one_error_line(capsys.readouterr().err)
        assert f"cannot use {err.filename}: {err.strerror}" in line


def test_the_web_page_on_a_full_disk_names_the_folder(tmp_path, monkeypatch, capsys):
    from export import web

    def no_space(source, dest, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(shutil, "copyfile", no_space)
    monkeypatch.setattr(web, "ort_files", lambda: [])
    with pytest.raises(OSError) as caught:
        web.write_site(tmp_path / "m.onnx", tmp_path / "site")
    assert caught.value.filename == str(tmp_path / "site") and caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone


# ---------------------------------------------------------------- corpus files

def test_an_unterminated_quote_in_a_csv_is_named_with_its_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('title,text\na,"first poem\nstill the first\nb,second poem\nc,third poem\n')
    with pytest.raises(UsageError, match=r"the quote opened in the record on line 2 is never closed"):
        read_corpus(path)


def test_a_stray_quote_inside_a_quoted_csv_field_is_named(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('title,text\na,"one"two"\nb,"three"\n')
    with pytest.raises(UsageError, match=r"the record on line 2 is not valid CSV"):
        read_corpus(path)


# ---------------------------------------------------------------- run folders from elsewhere

@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory) -> Path:
    """A one-epoch one-hot run (1 epoch, so --resume --epochs 2 can continue it)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert scratch_train.main(trainer(corpus, out, "--epochs", "1", "--model", "onehot")) == 0
    return out


def test_resume_from_a_checkpoint_holding_nan_says_the_file_is_damaged(corpus, run_dir, tmp_path, capsys):
    from wordrnn.run.folder import CHECKPOINT, load_arrays, save_arrays

    copy = Path(shutil.copytree(run_dir, tmp_path / "copy"))
    arrays, counters = load_arrays(copy / CHECKPOINT)
    arrays["param.rnn.w_hh"] = arrays["param.rnn.w_hh"].copy()
    arrays["param.rnn.w_hh"][0, 0] = float("nan")
    save_arrays(copy / CHECKPOINT, arrays, counters)
    code, _, err = run_main(scratch_train.main, trainer(corpus, copy, "--resume", "--epochs", "2"), capsys)
    line = one_error_line(err)
    assert code == 2 and f"{copy / CHECKPOINT} is damaged: param.rnn.w_hh holds NaN" in line
    assert "--lr" not in line


def test_a_report_folder_given_as_a_run_is_named_a_report(run_dir, tmp_path):
    report = tmp_path / "report"
    shutil.copytree(run_dir, report / "runs" / "numpy-onehot")
    (report / "REPORT.md").write_text("# report\n")
    assert_usage_error(run_module("scratch.generate", "--run", str(report)),
                       f"{report} is a report folder", "not a run", str(report / "runs" / "numpy-onehot"))


# ---------------------------------------------------------------- Ctrl-C inside a larger command

COMPARE = ("--seq-len", "3", "--min-freq", "1", "--hidden-size", "8", "--embed-dim", "4", "--epochs", "1",
           "--impls", "numpy", "--models", "embedding", "--no-recipe", "--no-export", "--quiet")


def test_compare_after_ctrl_c_says_rerun_and_a_rerun_works(corpus, tmp_path, capsys, monkeypatch):
    from wordrnn.bench import compare, lab

    out = tmp_path / "report"
    argv = ["--data", str(corpus), *COMPARE, "--out", str(out)]
    real = lab.train

    def interrupted(config, backend, run_dir, **kwargs):
        (Path(run_dir) / "config.json").parent.mkdir(parents=True)
        real(config, backend, run_dir, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(lab, "train", interrupted)
    code, _, err = run_main(compare.main, argv, capsys)
    assert code == 130 and "Run the same command again to start afresh" in err
    assert "--resume" not in err  # the trainer's advice is not this command's
    monkeypatch.undo()
    code, _, err = run_main(compare.main, argv, capsys)
    assert code == 0, err
    assert "holds the runs of an interrupted comparison and no report; starting afresh" in err
    assert (out / "REPORT.md").is_file()


def test_quality_after_ctrl_c_names_no_temporary_folder(corpus, tmp_path, capsys, monkeypatch):
    from wordrnn.bench import quality

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quality, "evaluate_corpora", interrupted)
    out = tmp_path / "q.json"
    code, _, err = run_main(quality.main, ["--data", str(corpus), "--json", str(out)], capsys)
    assert code == 130 and "the folds' temporary runs are gone" in err and "start afresh" in err
    assert "--resume" not in err and not out.exists()


# ---------------------------------------------------------------- one trainer per run folder

def test_a_second_trainer_on_a_locked_folder_refuses_naming_the_holder(corpus, tmp_path):
    import socket

    from wordrnn.run.lock import LOCK, locked

    out = tmp_path / "run"
    with locked(out):  # this process holds it, as a first trainer would
        second = run_module("scratch.train", *trainer(corpus, out, "--epochs", "1"))
        assert (out / LOCK).is_file()
    assert_usage_error(second, f"{out} is in use: process {os.getpid()} on {socket.gethostname()}",
                       "choose another --out")
    assert not out.exists()  # made for the lock, empty again: removed


def test_a_stale_lock_of_a_dead_process_is_replaced_with_a_note(corpus, tmp_path, capsys):
    import json
    import socket

    from wordrnn.run.lock import LOCK

    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    code, _, err = run_main(scratch_train.main, trainer(corpus, out, "--epochs", "1"), capsys)
    assert code == 0, err
    assert f"removed the stale lock of process {dead.pid} (no longer running)" in err
    assert not (out / LOCK).exists() and (out / "weights.safetensors").is_file()


def test_the_lock_is_released_when_training_fails(corpus, tmp_path, capsys):
    from wordrnn.run.lock import LOCK

    out = tmp_path / "run"
    code, _, _ = run_main(scratch_train.main, trainer(corpus, out, "--epochs", "2", "--lr", "1e4", "--clip", "0"),
                          capsys)
    assert code == 1  # diverged
    assert not (out / LOCK).exists()


# ---------------------------------------------------------------- memory

@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("model", ["onehot", "embedding"])
def test_the_memory_estimate_counts_the_parameters_the_initializer_makes(model, cell):
    from wordrnn.core.config import Config
    from wordrnn.core.memory import estimate_training_memory
    from wordrnn.core.params import init_params

    config = Config(model=model, cell=cell, vocab_size=37, hidden_size=11, embed_dim=5)
    made = sum(p.size for p in init_params(config).values())
    estimate = estimate_training_memory(config)
    assert estimate.parameters == made
    assert estimate.weights == 2 * 4 * made and estimate.optimizer == 2 * 4 * made  # Adam: two moments
    assert estimate_training_memory(Config(model=model, cell=cell, vocab_size=37, hidden_size=11,
                                           embed_dim=5, optimizer="sgd")).optimizer == 0


def test_a_poem_model_counts_logits_at_every_position():
    from wordrnn.core.config import Config
    from wordrnn.core.memory import activation_floats

    window = Config(vocab_size=5000, batch_size=64, seq_len=5)
    poem = Config(vocab_size=5000, batch_size=64, context="poem", bptt=35)
    assert activation_floats(poem) >= 3 * 64 * 35 * 5000  # logits, softmax and gradient at 64 x 35 positions
    assert activation_floats(window) < 3 * 64 * 2 * 5000  # the last position only


def test_a_model_too_large_for_the_memory_is_refused_before_allocating(corpus, tmp_path):
    result = run_module("scratch.train", *trainer(corpus, tmp_path / "run", "--epochs", "1"),
                        "--hidden-size", "100000000")
    assert_usage_error(result, "this model needs about", "GiB of memory is available", "--hidden-size")
    assert "MemoryError" not in result.stderr and not (tmp_path / "run").exists()


def test_a_run_that_uses_most_of_the_memory_is_announced():
    from wordrnn.core.config import Config
    from wordrnn.core.memory import check_memory, estimate_training_memory

    config = Config(vocab_size=100)
    need = estimate_training_memory(config).total
    assert check_memory(config, available=10 * need) is None
    assert "will use most of the memory available" in check_memory(config, available=int(1.5 * need))
    with pytest.raises(UsageError, match="this model needs about"):
        check_memory(config, available=need - 1)


# ---------------------------------------------------------------- the corpus a run was trained on

OTHER_POEMS = [
    "Autumn leaves are falling down,\ngolden, red and brown;\nthe wind is cold upon the town.",
    "The river runs beneath the hill,\nthe mill is turning, never still;\nthe river runs, and always will.",
    "Stars above the silent snow,\nwinter fields where no winds blow,\nthe stars above, the snow below.",
    "A bird upon the garden wall\nsings of spring and of the fall;\nthe bird, the wall, the garden, all.",
    "The sea is wide, the night is long,\nthe river sings its golden song.",
    "Snow and stars and leaves and wind:\nthe autumn river, cold and thinned.",
]


def test_resume_on_a_changed_corpus_refuses_naming_both_checksums(tmp_path, capsys):
    import hashlib
    import json

    from wordrnn.run.corpus_record import CORPUS

    corpus, out = write_tiny_corpus(tmp_path), tmp_path / "run"
    assert scratch_train.main(trainer(corpus, out, "--epochs", "1")) == 0
    before = hashlib.sha256(corpus.read_bytes()).hexdigest()
    saved = json.loads((out / CORPUS).read_text())
    assert saved == {"path": str(corpus.resolve()), "size": corpus.stat().st_size, "sha256": before}
    original = corpus.read_text()
    corpus.write_text(original.replace("sea", "lake"))  # words replaced, same file
    after = hashlib.sha256(corpus.read_bytes()).hexdigest()
    code, _, err = run_main(scratch_train.main, trainer(corpus, out, "--resume", "--epochs", "2"), capsys)
    line = one_error_line(err)
    assert code == 2 and "the corpus changed since" in line and before in line and after in line
    corpus.write_text(original)
    code, _, err = run_main(scratch_train.main, trainer(corpus, out, "--resume", "--epochs", "2"), capsys)
    assert code == 0, err  # the file it was trained on resumes


def test_init_from_another_corpus_says_so_even_when_quiet(run_dir, tmp_path, capsys):
    other = write_tiny_corpus(tmp_path, OTHER_POEMS)
    code, out, err = run_main(scratch_train.main, trainer(other, tmp_path / "b", "--epochs", "1", "--init-from",
                                                          str(run_dir)), capsys)
    assert code == 0, err
    assert f"note: --init-from {run_dir} covers this corpus differently" in err
    assert "of this corpus's validation targets <unk>" in err and "--new-vocab" in err


def test_init_from_with_new_vocab_keeps_the_weights_of_shared_words(run_dir, tmp_path, capsys):
    from wordrnn.run.folder import load_run

    other = write_tiny_corpus(tmp_path, OTHER_POEMS)
    code, _, err = run_main(scratch_train.main, trainer(other, tmp_path / "b", "--epochs", "1", "--init-from",
                                                        str(run_dir), "--new-vocab", "--lr", "1e-12"), capsys)
    assert code == 0, err
    source, seeded = load_run(run_dir), load_run(tmp_path / "b")
    fresh = seeded.vocab
    assert "autumn" in fresh.index and "autumn" not in source.vocab.index  # this corpus's vocabulary
    word = "sea"
    new_col = seeded.params["rnn.w_ih"][:, fresh.index[word]]
    old_col = source.params["rnn.w_ih"][:, source.vocab.index[word]]
    assert np.allclose(new_col, old_col, atol=1e-6)  # a shared word keeps its trained weights (lr ~ 0)
    assert np.allclose(seeded.params["out.bias"][fresh.index[word]],
                       source.params["out.bias"][source.vocab.index[word]], atol=1e-6)


def test_a_vocabulary_flag_without_init_from_is_refused(corpus, tmp_path, capsys):
    code, _, err = run_main(scratch_train.main, trainer(corpus, tmp_path / "b", "--new-vocab"), capsys)
    assert code == 2 and "choose the vocabulary of an --init-from run" in one_error_line(err)


# ---------------------------------------------------------------- Ctrl-C at any moment

INTERRUPT_IN_GC_CALLBACK = """
import gc, os, signal
from wordrnn.core.errors import cli

def callback(phase, info):  # as JAX's _xla_gc_callback is: Python run by the garbage collector
    if phase == "start" and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the callback runs
        sum(range(1000))

fired = []

@cli
def main():
    gc.callbacks.append(callback)
    for _ in range(200_000):
        gc.collect(0) if not fired else [[] for _ in range(10)]
    print("ran to the end")
    return 0

raise SystemExit(main())
"""

INTERRUPT_IN_IMPORT = """
import os, signal
os.kill(os.getpid(), signal.SIGINT)  # arrives while this module is being imported
total = sum(range(10_000))
open({marker!r}, "w").write("imported whole")
"""


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return run_python(code, env={"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})


def test_ctrl_c_inside_a_gc_callback_is_not_lost(tmp_path):
    result = _python(INTERRUPT_IN_GC_CALLBACK, tmp_path)
    assert result.returncode == 130, (result.stdout, result.stderr)
    assert "ran to the end" not in result.stdout and "Exception ignored" not in result.stderr


def test_ctrl_c_during_an_import_waits_for_the_module_to_be_whole(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "slow_module.py").write_text(INTERRUPT_IN_IMPORT.format(marker=str(marker)))
    code = ("from wordrnn.core.errors import cli\n"
            "@cli\ndef main():\n    import slow_module\n    import time\n    time.sleep(600)\n"
            "raise SystemExit(main())\n")
    result = _python(code, tmp_path)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    assert marker.read_text() == "imported whole"


INTERRUPTED_WITH_XLA = """
import atexit, sys, types
if {xla}:
    sys.modules["jaxlib"] = types.ModuleType("jaxlib")  # as a process that has loaded XLA
from wordrnn.core.errors import cli
atexit.register(lambda: print("interpreter teardown ran", flush=True))

@cli
def main():
    raise KeyboardInterrupt

main()
"""


@pytest.mark.parametrize("xla", [True, False])
def test_an_interrupted_command_with_xla_loaded_skips_the_interpreter_teardown(tmp_path, xla):
    result = _python(INTERRUPTED_WITH_XLA.format(xla=xla), tmp_path)
    assert result.returncode == 130 and "interrupted" in result.stderr, result.stderr
    assert ("interpreter teardown ran" in result.stdout) is not xla


def _sigint_when(proc: subprocess.Popen, ready, deadline: float = 300) -> None:
    """Send SIGINT to ``proc``'s process group once ``ready()`` holds."""
    stop = time.monotonic() + deadline
    while not ready() and proc.poll() is None and time.monotonic() < stop:
        time.sleep(0.02)
    assert proc.poll() is None, "the command ended before the moment came"
    os.killpg(proc.pid, signal.SIGINT)


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def _interrupt_at(module: str, argv: list[str], moment: str, tmp_path: Path) -> str:
    """Run ``python -m module argv``, send SIGINT to its process group at ``moment``; its stderr, after
    checking that it exited 130 with its message and nothing else."""
    log = tmp_path / "stdout"
    with log.open("w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, stdout=stdout,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"})
        ready = {"importing jaxlib": lambda: "jaxlib" in _maps(proc.pid),
                 "compiling the step": lambda: "jax devices:" in log.read_text(),
                 "starting the JAX run": lambda: "JAX/Flax embedding" in log.read_text(),
                 "training the second epoch": lambda: "epoch   1/" in log.read_text()}[moment]
        _sigint_when(proc, ready)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Segmentation fault" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    assert "interrupted" in err
    return err


needs_proc = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see jaxlib load")


@pytest.mark.slow
@needs_proc
@pytest.mark.parametrize("moment", ["importing jaxlib", "compiling the step", "training the second epoch"])
def test_ctrl_c_at_several_moments_of_a_jax_run_exits_130(corpus, tmp_path, moment):
    argv = [a for a in trainer(corpus, tmp_path / "run", "--epochs", "50", "--threads", "1") if a != "--quiet"]
    _interrupt_at("jaxmodels.train", argv, moment, tmp_path)


@pytest.mark.slow
@needs_proc
@pytest.mark.parametrize("moment", ["starting the JAX run", "training the second epoch"])
def test_ctrl_c_during_the_jax_run_of_compare_exits_130(corpus, tmp_path, moment):
    argv = ["--data", str(corpus), *[a for a in COMPARE if a != "--quiet"], "--epochs", "50", "--impls", "jax",
            "--threads", "1", "--out", str(tmp_path / "report")]
    assert "Run the same command again" in _interrupt_at("wordrnn.bench.compare", argv, moment, tmp_path)


# ---------------------------------------------------------------- repetition controls (docs/GENERATION.md 5a)

def test_the_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    from wordrnn.core.sampling import SamplerSettings, apply_repetition_controls

    z = np.array([-np.inf, 2.0, -1.0, 0.0, 3.0])
    got = apply_repetition_controls(z, [1, 2, 3, 1], SamplerSettings(repetition_penalty=2.0))
    assert got.tolist() == [-np.inf, 1.0, -2.0, 0.0, 3.0]  # 4 was never written: unchanged
    assert z.tolist() == [-np.inf, 2.0, -1.0, 0.0, 3.0]  # a new array


def test_no_repeat_ngram_bans_what_would_repeat_an_ngram_of_the_text_prompt_included():
    from wordrnn.core.sampling import SamplerSettings, apply_repetition_controls, banned_by_ngrams

    history = [5, 6, 7, 5, 6]  # the prompt 5 6 7, then 5 6: 7 would repeat "5 6 7"
    assert banned_by_ngrams(history, 3) == {7}
    assert banned_by_ngrams(history, 2) == {7}  # "6 7" once before
    assert banned_by_ngrams(history, 1) == {5, 6, 7}  # every token already written
    assert banned_by_ngrams(history, 6) == set() and banned_by_ngrams(history, 0) == set()
    z = np.zeros(8)
    assert np.isneginf(apply_repetition_controls(z, history, SamplerSettings(no_repeat_ngram=3))[7])


def test_a_ban_that_would_leave_no_token_changes_nothing():
    from wordrnn.core.sampling import SamplerSettings, apply_repetition_controls

    z = np.array([-np.inf, 1.0, 2.0])
    got = apply_repetition_controls(z, [1, 2], SamplerSettings(no_repeat_ngram=1))
    assert got.tolist() == z.tolist()


def test_greedy_with_several_samples_is_refused(tmp_path):
    assert_usage_error(run_module("export.generate", "--model", str(tmp_path / "m.onnx"), "--strategy", "greedy",
                                  "--num-samples", "2"), "--strategy greedy draws no random numbers",
                       "--num-samples 1")


@pytest.mark.parametrize("flags, fragment", [
    (("--no-repeat-ngram", "-1"), "--no-repeat-ngram must be 0 (off) or a positive number"),
    (("--repetition-penalty", "0"), "--repetition-penalty must be a positive number"),
])
def test_bad_repetition_settings_are_refused(tmp_path, flags, fragment):
    assert_usage_error(run_module("export.generate", "--model", str(tmp_path / "m.onnx"), *flags), fragment)


# ---------------------------------------------------------------- the corpus make demo found

def test_the_corpus_make_demo_located_is_found_by_later_commands(real_corpus, tmp_path):
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "WORDRNN_DATA"}
    env.update(XDG_CACHE_HOME=str(cache), PYTHONPATH=str(ROOT))
    located = subprocess.run([sys.executable, "-S", "-m", "data.locate"], cwd=ROOT, capture_output=True, text=True,
                             env={**env, "WORDRNN_DATA": str(real_corpus)})
    stored = cache / "wordrnn" / real_corpus.name
    assert located.returncode == 0, located.stderr
    assert f"stored a copy of the corpus in {stored}" in located.stderr
    assert stored.read_bytes() == real_corpus.read_bytes()
    later = subprocess.run([sys.executable, "-m", "data"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert later.returncode == 0 and str(stored) in later.stdout, later.stderr


def test_another_corpus_is_not_copied_into_the_cache(corpus, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    located = subprocess.run([sys.executable, "-S", "-m", "data.locate", "--data", str(corpus)], cwd=ROOT,
                             capture_output=True, text=True, env=env)
    assert located.returncode == 0 and "stored" not in located.stderr
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- a Python without the frameworks

HIDE_AND_RUN = """
import runpy, sys
sys.modules[{hidden!r}] = None  # as a Python without it: importing it raises ModuleNotFoundError
sys.argv = [{module!r}, *{argv!r}]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("module, hidden, extra", [("torchmodels.train", "torch", "torch"),
                                                   ("jaxmodels.train", "jax", "jax")])
def test_a_trainer_without_its_framework_says_how_to_install_it(corpus, tmp_path, module, hidden, extra):
    code = HIDE_AND_RUN.format(hidden=hidden, module=module, argv=trainer(corpus, tmp_path / "run"))
    result = _python(code, tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert f"this command needs {hidden}, which {sys.executable} cannot import" in line
    assert ".venv/bin/python -m" in line and f"pip install -e '.[{extra}]'" in line


# ---------------------------------------------------------------- what the report and --help say

def test_the_report_configuration_names_what_the_recipe_row_changes():
    from wordrnn.bench.report import setup_section

    payload = {"config": {"model": "embedding", "cell": "rnn", "hidden_size": 128, "extra": {}, "data": None},
               "dataset": {"source": "c.csv", "vocab_size": 10, "train_poems": 9, "train_tokens": 90,
                           "train_windows": 80, "val_poems": 1, "val_windows": 8},
               "machine": {"cpu": "x", "versions": {}}, "recipe": {"cell": "lstm", "model": "embedding"},
               "recipe_impl": "torch"}
    text = "\n".join(setup_section(payload))
    assert "| cell | rnn |" in text  # the benchmark rows
    recipe_part = text.split("The recipe row (PyTorch) differs in:")[1]
    assert "| cell | lstm |" in recipe_part and "model" not in recipe_part.split("## Machine")[0]


def test_quality_help_explains_the_tokenizer_and_shows_the_text_column_default(capsys):
    from wordrnn.bench import quality

    with pytest.raises(SystemExit):
        quality.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: default" not in text
    assert "CSV column holding the poems (default: text)" in text and "words, punctuation marks" in text


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
def test_npm_reads_the_project_config_without_a_warning():
    result = subprocess.run(["npm", "config", "get", "ignore-scripts"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "true", result.stderr
    assert "Unknown project config" not in result.stderr, result.stderr

"""Files from elsewhere and damaged files, limits on every number, and what a shipped model writes: each case
ends in one `error:` line and the documented exit code (2: bad input; 1: the work failed; 130: Ctrl-C), with
nothing already written lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, assert_usage_error, run_module, run_python, write_tiny_corpus
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from test_reliability import run_main, trainer
from test_reliability2 import _maps, _sigint_when
from test_web import NODE, NODE_MODULES, node

from export import generate as onnx_generate
from export import onnx as export_onnx
from scratch import generate as scratch_generate
from scratch import train as scratch_train
from wordrnn.core.errors import UsageError
from wordrnn.core.memory import human_bytes
from wordrnn.core.sampling import TEMPERATURE_MIN
from wordrnn.core.threads import check_threads, usable_cores
from wordrnn.run.folder import CHECKPOINT, CONFIG, METRICS, SAMPLES, VOCAB, WEIGHTS, atomic_write_text

needs_node = pytest.mark.skipif(NODE is None or not NODE_MODULES.is_dir(), reason="needs node and onnxruntime-node")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory) -> Path:
    """A one-epoch model (``one``) and a one-epoch ensemble of three (``three``), made once."""
    folder = tmp_path_factory.mktemp("runs")
    assert scratch_train.main(trainer(corpus, folder / "one", "--epochs", "1")) == 0
    assert scratch_train.main(trainer(corpus, folder / "three", "--epochs", "1", "--ensemble", "3")) == 0
    return folder


@pytest.fixture
def one(runs, tmp_path) -> Path:
    return Path(shutil.copytree(runs / "one", tmp_path / "one"))


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a digest of its bytes: what "nothing changed" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_json(path: Path, **values) -> None:
    document = json.loads(path.read_text())
    document.update(values)
    path.write_text(json.dumps(document))


GENERATE = ("--words", "4", "--strategy", "greedy")


def refuses(main, argv: list[str], capsys, *fragments: str) -> str:
    """``main(argv)`` ends in one `error:` line holding ``fragments`` and exit 2; the line."""
    code, _, err = run_main(main, argv, capsys)
    lines = [line for line in err.strip().splitlines() if "error:" in line]  # argparse's start with the command
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and "Warning" not in err, (code, err)
    line = lines[0]
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def readers(folder: Path, corpus: Path, tmp_path: Path) -> dict[str, tuple]:
    """Each command that reads a run folder, as ``(main, argv)``."""
    return {"generate": (scratch_generate.main, ["--run", str(folder), *GENERATE]),
            "export": (export_onnx.main, ["--run", str(folder), "--out", str(tmp_path / "model.onnx"),
                                          "--reference", "numpy"]),
            "resume": (scratch_train.main, trainer(corpus, folder, "--resume", "--epochs", "2"))}


# ---------------------------------------------------------------- 1. safetensors metadata of other tools

def test_foreign_metadata_in_weights_is_ignored_and_in_a_checkpoint_named(one, corpus, tmp_path, capsys):
    weights = load_file(one / WEIGHTS)
    save_file(weights, one / WEIGHTS, metadata={"format": "pt"})  # as torch's and Hugging Face's tools write
    code, out, err = run_main(scratch_generate.main, ["--run", str(one), *GENERATE], capsys)
    assert code == 0 and out.strip(), err
    assert export_onnx.main(["--run", str(one), "--out", str(tmp_path / "m.onnx"), "--reference", "numpy"]) == 0
    capsys.readouterr()
    save_file(load_file(one / CHECKPOINT), one / CHECKPOINT, metadata={"format": "pt"})
    before = contents(one)
    refuses(scratch_train.main, trainer(corpus, one, "--resume", "--epochs", "2"), capsys,
            f"{one / CHECKPOINT} does not hold the counters a wordrnn trainer writes", "lacks epoch, step, best")
    assert contents(one) == before


def test_a_checkpoint_with_wordrnn_counters_and_foreign_metadata_resumes(one, corpus, capsys):
    with safe_open(one / CHECKPOINT, framework="numpy") as f:
        header = f.metadata()
    save_file(load_file(one / CHECKPOINT), one / CHECKPOINT, metadata={**header, "format": "pt"})
    code, _, err = run_main(scratch_train.main, trainer(corpus, one, "--resume", "--epochs", "2"), capsys)
    assert code == 0, err


# ---------------------------------------------------------------- 2. damaged values in files that parse

@pytest.mark.parametrize("edit, fragment", [
    ({"bptt": 0}, "--bptt must be a positive whole number, got 0"),
    ({"seq_len": 0}, "--seq-len must be a positive whole number, got 0"),
    ({"lr": float("nan")}, "--lr must be a positive number, got nan"),
    ({"ensemble": 3}, "says ensemble 3, but"),
])
@pytest.mark.parametrize("command", ["generate", "export", "resume"])
def test_a_damaged_config_value_is_refused_by_every_command(one, corpus, tmp_path, capsys, edit, fragment, command):
    edit_json(one / CONFIG, **edit)
    before = contents(one)
    main, argv = readers(one, corpus, tmp_path)[command]
    refuses(main, argv, capsys, str(one / CONFIG), fragment)
    assert contents(one) == before and not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("command", ["generate", "export", "resume"])
def test_an_unknown_tokenizer_in_vocab_json_is_refused_by_every_command(one, corpus, tmp_path, capsys, command):
    edit_json(one / VOCAB, tokenizer="bogus")
    before = contents(one)
    main, argv = readers(one, corpus, tmp_path)[command]
    refuses(main, argv, capsys, f"{one / VOCAB}: tokenizer is 'bogus'")
    assert contents(one) == before


@pytest.mark.parametrize("text", ["garbage\n", "[1, 2]\n", '{"epoch": "one", "val_loss": 3.0}\n'])
@pytest.mark.parametrize("command", ["export", "resume"])
def test_damaged_metrics_are_refused_naming_the_line(one, corpus, tmp_path, capsys, text, command):
    (one / METRICS).write_text(text)
    before = contents(one)
    main, argv = readers(one, corpus, tmp_path)[command]
    refuses(main, argv, capsys, f"{one / METRICS}, line 1, is not an epoch's row")
    assert contents(one) == before


# ---------------------------------------------------------------- 3. a seed past what torch accepts

def test_a_seed_past_two_to_the_63_is_refused_by_every_trainer_in_one_line(corpus, tmp_path, capsys):
    from torchmodels import train as torch_train

    for main in (torch_train.main, scratch_train.main):
        refuses(main, trainer(corpus, tmp_path / "run", "--seed", str(2**70)), capsys,
                "--seed: must be a whole number from 0 to 2**63 - 1", "NumPy, PyTorch and JAX")
    refuses(scratch_train.main, trainer(corpus, tmp_path / "run", "--seed", str(2**63 - 2), "--ensemble", "3"),
            capsys, "gives its last member seed 9223372036854775808, past 2**63 - 1")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 4. a Python without the libraries

HIDE_AND_RUN = """
import runpy, sys
for name in {hidden!r}:
    sys.modules[name] = None  # as a Python without it: importing it raises ModuleNotFoundError
sys.argv = [{module!r}, *{argv!r}]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""
COMMANDS = ["scratch.train", "scratch.generate", "wordrnn.bench.quality", "export.onnx", "export.generate",
            "export.web", "data", "scratch.gradcheck", "wordrnn.bench.speed"]


@pytest.mark.parametrize("module", COMMANDS)
@pytest.mark.parametrize("argv", [["--help"], ["--run", "nowhere", "--model", "nothing.onnx"]], ids=["help", "run"])
def test_every_command_without_its_libraries_says_what_to_install(module, argv):
    hidden = ["numpy", "torch", "jax", "onnx", "onnxruntime"]  # as the system Python, which has none of them
    result = run_python(HIDE_AND_RUN.format(hidden=hidden, module=module, argv=argv))
    assert_usage_error(result, f"which {sys.executable} cannot import", "numpy", ".venv/bin/python -m",
                       "pip install -e '.")


@pytest.mark.parametrize("module, extra", [("export.generate", "onnx"), ("export.onnx", "onnx")])
def test_a_command_without_onnxruntime_names_its_extra(module, extra):
    result = run_python(HIDE_AND_RUN.format(hidden=["onnxruntime"], module=module, argv=["--help"]))
    assert_usage_error(result, "this command needs onnxruntime", f"pip install -e '.[{extra}]'")


SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(not SYSTEM_PYTHON.is_file() or subprocess.run([str(SYSTEM_PYTHON), "-c", "import numpy"],
                                                                  capture_output=True).returncode == 0,
                    reason="needs a system Python without NumPy")
@pytest.mark.parametrize("module", COMMANDS)
def test_the_system_python_says_which_environment_to_use(module):
    result = subprocess.run([str(SYSTEM_PYTHON), "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert_usage_error(result, f"which {SYSTEM_PYTHON} cannot import", "make setup")


@pytest.mark.skipif(NODE is None, reason="needs node")
def test_node_without_node_modules_says_how_to_install_them(tmp_path):
    for name in ("generate.mjs", "wordrnn.mjs"):  # the client in a checkout that never ran npm
        shutil.copyfile(ROOT / "web" / name, tmp_path / name)
    result = subprocess.run([NODE, str(tmp_path / "generate.mjs"), "--model", str(tmp_path / "generate.mjs")],
                            capture_output=True, text=True, timeout=60)
    assert_usage_error(result, "onnxruntime-node is not installed in", "run `make web` (or `npm ci`)")
    assert "ERR_MODULE_NOT_FOUND" not in result.stderr


# ---------------------------------------------------------------- 5. Ctrl-C while a command loads

@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see NumPy load")
@pytest.mark.parametrize("module, argv", [("scratch.train", ["--epochs", "1"]),
                                          ("export.generate", ["--model", "nothing.onnx"])])
def test_ctrl_c_while_the_command_imports_its_libraries_exits_130_in_one_line(module, argv, corpus, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", module, "--data", str(corpus), *argv] if module == "scratch.train"
                            else [sys.executable, "-m", module, *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    _sigint_when(proc, lambda: "_multiarray_umath" in _maps(proc.pid))  # NumPy's extension is loading
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "interrupted" in err, err


# ---------------------------------------------------------------- 6. --threads at most the cores

def test_more_threads_than_cores_are_refused_before_any_work(corpus, tmp_path, capsys):
    cores = usable_cores()
    refuses(scratch_train.main, trainer(corpus, tmp_path / "run", "--threads", "100000"), capsys,
            "--threads must lie between 0 (each library's default) and", f"{cores}, the cores this process may use",
            "got 100000")
    assert not (tmp_path / "run").exists()
    check_threads(cores)  # every core is allowed
    with pytest.raises(UsageError, match=f"got {cores + 1}"):
        check_threads(cores + 1)


# ---------------------------------------------------------------- 7. the temperature's floor

@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "one.onnx"
    assert export_onnx.main(["--run", str(runs / "one"), "--out", str(out), "--reference", "numpy"]) == 0
    return out


@pytest.mark.parametrize("temperature", ["1e-320", "0.00999", "0"])
def test_a_temperature_below_the_floor_is_refused_in_the_same_words_by_python_and_node(exported, temperature):
    args = ("--model", str(exported), "--temperature", temperature)
    python = run_module("export.generate", *args)
    assert_usage_error(python, f"--temperature must be a finite number of at least {TEMPERATURE_MIN:g}",
                       "--strategy greedy", f"got {float(temperature)}")
    if NODE is not None and NODE_MODULES.is_dir():
        assert node("web/generate.mjs", *args).stderr == python.stderr


@needs_node
def test_the_floor_itself_writes_the_same_text_in_python_and_node(exported):
    args = ("--model", str(exported), "--temperature", str(TEMPERATURE_MIN), "--words", "12", "--seed", "5")
    python, js = run_module("export.generate", *args), node("web/generate.mjs", *args)
    assert python.returncode == 0 and js.returncode == 0, (python.stderr, js.stderr)
    assert js.stdout == python.stdout and "<unk>" not in python.stdout and "Warning" not in python.stderr


# ---------------------------------------------------------------- 8. a flag the run never reads

def test_bptt_with_the_window_context_is_refused(corpus, tmp_path, capsys):
    refuses(scratch_train.main, trainer(corpus, tmp_path / "run", "--bptt", "7"), capsys,
            "--bptt is the length of the poem context's chunks", "add --context poem, or drop --bptt")
    assert not (tmp_path / "run").exists()
    code, _, err = run_main(scratch_train.main, trainer(corpus, tmp_path / "poem", "--bptt", "7", "--context", "poem",
                                                        "--epochs", "1"), capsys)
    assert code == 0, err


# ---------------------------------------------------------------- 9. --resume with a changed --ensemble

@pytest.mark.parametrize("flags, fragment", [(("--ensemble", "3"), "--ensemble 3 (saved: 1)"),
                                             (("--recipe", "quality"), "--ensemble 3 (saved: 1)")])
def test_resume_names_a_changed_ensemble_with_its_saved_value(one, corpus, capsys, flags, fragment):
    before = contents(one)
    refuses(scratch_train.main, trainer(corpus, one, "--resume", "--epochs", "2", *flags), capsys,
            f"--resume continues {one} with its saved settings", fragment)
    assert contents(one) == before


# ---------------------------------------------------------------- 10. --init-from an ensemble

def test_init_from_an_ensemble_names_it_and_a_member_to_use(runs, corpus, tmp_path, capsys):
    refuses(scratch_train.main, trainer(corpus, tmp_path / "run", "--init-from", str(runs / "three")), capsys,
            f"--init-from {runs / 'three'} is an ensemble of 3 models", str(runs / "three" / "members" / "0"))
    code, _, err = run_main(scratch_train.main, trainer(corpus, tmp_path / "run", "--epochs", "1", "--init-from",
                                                        str(runs / "three" / "members" / "0")), capsys)
    assert code == 0, err


# ---------------------------------------------------------------- 11. several CPU devices for JAX

def test_jax_trains_on_several_cpu_devices_as_the_readme_shows(corpus, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # a shell that set nothing
    result = subprocess.run([sys.executable, "-m", "jaxmodels.train", *trainer(corpus, tmp_path / "run"), "--cell",
                             "lstm", "--accelerator", "cpu", "--devices", "2", "--epochs", "1"], cwd=ROOT,
                            capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / CONFIG).read_text())["extra"] == {"accelerator": "cpu", "devices": 2}


# ---------------------------------------------------------------- 12. silent or misleading

def test_resume_with_an_empty_metrics_file_is_refused_instead_of_dropping_the_row(one, corpus, capsys):
    (one / METRICS).write_text("")
    before = contents(one)
    refuses(scratch_train.main, trainer(corpus, one, "--resume", "--epochs", "2"), capsys,
            f"{one / METRICS} holds no row, but the checkpoint has trained 1 epoch")
    assert contents(one) == before


def test_a_folder_where_samples_txt_belongs_is_refused_before_any_work(one, corpus, capsys):
    (one / SAMPLES).unlink()
    (one / SAMPLES).mkdir()
    before = contents(one)
    line = refuses(scratch_train.main, trainer(corpus, one, "--resume", "--epochs", "2"), capsys,
                   f"{one / SAMPLES} is a folder, where the run keeps its file samples.txt")
    assert ".tmp" not in line and contents(one) == before


def test_a_write_over_a_folder_names_the_file_asked_for(tmp_path):
    (tmp_path / "x.txt").mkdir()
    with pytest.raises(OSError) as caught:
        atomic_write_text(tmp_path / "x.txt", "text")
    assert caught.value.filename == str(tmp_path / "x.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_quality_refuses_a_folder_as_its_json_before_any_work(corpus, tmp_path, capsys):
    from wordrnn.bench import quality

    (tmp_path / "results").mkdir()
    refuses(quality.main, ["--data", str(corpus), "--json", str(tmp_path / "results"), "--folds", "2"], capsys,
            f"--json {tmp_path / 'results'} is a folder")


@pytest.mark.parametrize("dtype", ["float16", "int32", "float64"])
def test_weights_of_another_dtype_are_named_by_export_and_generate(one, tmp_path, capsys, dtype):
    save_file({k: v.astype(dtype) for k, v in load_file(one / WEIGHTS).items()}, one / WEIGHTS)
    for main, argv in [(export_onnx.main, ["--run", str(one), "--out", str(tmp_path / "m.onnx")]),
                       (scratch_generate.main, ["--run", str(one), *GENERATE])]:
        refuses(main, argv, capsys, f"as {dtype}", "wordrnn weights are float32")


def test_a_seed_that_the_sample_count_pushes_past_the_limit_says_so(exported, capsys):
    args = ["--model", str(exported), "--seed", str(2**64 - 1), "--num-samples", "2"]
    line = refuses(onnx_generate.main, args, capsys, "--seed 18446744073709551615 with --num-samples 2",
                   "(sample i uses --seed + i)", "give a seed up to 18446744073709551614 or fewer samples")
    if NODE is not None and NODE_MODULES.is_dir():
        assert node("web/generate.mjs", *args).stderr.strip() == line


@needs_node
def test_node_refuses_a_graph_that_fails_at_run_time_without_a_cpp_source_location(exported, tmp_path):
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(exported))
    gather = next(n for n in model.graph.node if n.op_type == "Gather")
    model.graph.initializer.append(numpy_helper.from_array(np.array(10**6, np.int64), "far"))
    model.graph.node.insert(0, helper.make_node("Add", [gather.input[1], "far"], ["far_tokens"]))
    gather.input[1] = "far_tokens"  # out of the embedding at run time only: every check before a run passes
    impostor = tmp_path / "impostor.onnx"
    onnx.save(model, str(impostor))
    for result in (node("web/generate.mjs", "--model", str(impostor)), run_module("export.generate", "--model",
                                                                                  str(impostor))):
        assert_usage_error(result, "the graph fails on one token", "export it again")
        assert not re.search(r"\.(cc|cpp|h):\d+", result.stderr), result.stderr


def test_a_memory_refusal_for_a_huge_model_reads_in_large_units(corpus, tmp_path, capsys):
    line = refuses(scratch_train.main, trainer(corpus, tmp_path / "run", "--hidden-size", str(10**12)), capsys,
                   "this model needs about", "EiB")
    assert not re.search(r"\d{5,}\.\d", line), line  # no 26077032141800968.0 GiB
    assert human_bytes(3 * 2**40) == "3.0 TiB" and human_bytes(2**70) == "1,024 EiB"


@pytest.mark.parametrize("command", ["generate", "export", "resume"])
def test_a_context_this_version_does_not_know_is_named_in_one_line(one, corpus, tmp_path, capsys, command):
    """A run folder from a newer wordrnn (a third context): every reader refuses it naming the context, and the
    folder is left as it was."""
    edit_json(one / CONFIG, context="stream")
    before = contents(one)
    main, argv = {"generate": (scratch_generate.main, ["--run", str(one), *GENERATE]),
                  "export": (export_onnx.main, ["--run", str(one), "--out", str(tmp_path / "m.onnx")]),
                  "resume": (scratch_train.main, trainer(corpus, one, "--resume", "--epochs", "2"))}[command]
    code, _, err = run_main(main, argv, capsys)
    assert code == 2
    assert "context is 'stream', which this wordrnn does not know (it knows window, poem)" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert contents(one) == before

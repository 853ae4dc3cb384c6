"""``--precision``: a bfloat16 run of each framework trains, records its precision, resumes only as itself,
exports a float32 file and generates from it; float16 and the NumPy reference's bfloat16 are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import write_tiny_corpus
from onnx import numpy_helper
from test_reliability import one_error_line, run_main, trainer

from export import generate as export_generate
from export import onnx as export_onnx
from jaxmodels import train as jax_train
from scratch import generate as scratch_generate
from scratch import train as scratch_train
from torchmodels import train as torch_train
from wordrnn.core import tolerances
from wordrnn.run.folder import CONFIG, read_metrics

GREEDY = ["--strategy", "greedy", "--prompt", "the sea", "--words", "8"]
TRAINERS = {"torch": (torch_train.main, ()),
            "jax": (jax_train.main, ("--accelerator", "cpu"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def test_float16_is_refused_with_the_reason(corpus, tmp_path, capsys):
    code, _, err = run_main(torch_train.main, trainer(corpus, tmp_path / "run", "--precision", "float16"), capsys)
    assert code == 2
    line = one_error_line(err.replace("python -m torchmodels.train: error:", "error:"))
    assert "float16 is not offered" in line and "loss" in line and "bfloat16" in line
    assert not (tmp_path / "run").exists()


def test_the_numpy_reference_refuses_bfloat16_and_writes_nothing(corpus, tmp_path, capsys):
    code, _, err = run_main(scratch_train.main, trainer(corpus, tmp_path / "run", "--precision", "bfloat16"), capsys)
    assert code == 2
    line = one_error_line(err)
    assert "--precision bfloat16" in line and "float32 or float64" in line and "torchmodels.train" in line
    assert not (tmp_path / "run" / CONFIG).exists()


@pytest.mark.parametrize("framework", ["torch", pytest.param("jax", marks=pytest.mark.slow)])
def test_a_bfloat16_poem_run_resumes_as_itself_exports_float32_and_generates(framework, corpus, tmp_path, capsys):
    main, flags = TRAINERS[framework]
    run = tmp_path / "run"
    argv = trainer(corpus, run, "--context", "poem", "--bptt", "6", "--epochs", "1", "--precision", "bfloat16",
                   *flags)
    code, _, err = run_main(main, argv, capsys)
    assert code == 0, err
    assert json.loads((run / CONFIG).read_text())["precision"] == "bfloat16"

    argv = trainer(corpus, run, "--context", "poem", "--bptt", "6", "--epochs", "2", "--resume", *flags)
    code, _, err = run_main(main, [*argv, "--precision", "float32"], capsys)
    assert code == 2
    assert "--precision float32 (saved: bfloat16)" in one_error_line(err)
    code, _, err = run_main(main, argv, capsys)  # without the flag, the run's own precision
    assert code == 0, err

    model = tmp_path / "model.onnx"
    code, _, err = run_main(export_onnx.main, ["--run", str(run), "--out", str(model)], capsys)
    assert code == 0, err
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer]
    assert all(w.dtype != np.dtype("float16") and str(w.dtype) != "bfloat16" for w in weights)
    assert any(w.dtype == np.float32 and w.size > 1 for w in weights)

    texts = []
    for command, source in ((export_generate.main, ["--model", str(model)]),
                            (scratch_generate.main, ["--run", str(run)])):
        code, out, err = run_main(command, [*source, *GREEDY], capsys)
        assert code == 0, err
        texts.append(out)
    assert texts[0] == texts[1] and texts[0].strip()


@pytest.mark.slow
def test_bfloat16_held_out_perplexity_is_within_one_percent_of_float32(real_corpus, tmp_path, capsys):
    """docs/DESIGN.md's bfloat16 row on poems-100: the benchmark configuration, three epochs of JAX in each
    precision from the same seed (about a minute each on one core)."""
    perplexity = {}
    for precision in ("float32", "bfloat16"):
        run = tmp_path / precision
        argv = ["--data", str(real_corpus), "--epochs", "3", "--precision", precision, "--accelerator", "cpu",
                "--out", str(run), "--quiet"]
        code, _, err = run_main(jax_train.main, argv, capsys)
        assert code == 0, err
        perplexity[precision] = read_metrics(run)[-1]["val_ppl"]
    ratio = perplexity["bfloat16"] / perplexity["float32"]
    assert perplexity["bfloat16"] != perplexity["float32"]  # computed in another precision, not ignored
    assert abs(ratio - 1) <= tolerances.BFLOAT16_PERPLEXITY, perplexity


def test_a_gpu_without_bfloat16_products_is_refused_naming_it(monkeypatch):
    """CUDA before compute capability 8.0 (a V100 here, faked): one UsageError naming the device, in each framework's
    check; a CPU is never refused."""
    import torch

    from jaxmodels.devices import check_bfloat16 as jax_check
    from torchmodels.devices import check_bfloat16 as torch_check
    from wordrnn.core.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(UsageError, match=r"Tesla V100-SXM2-16GB \(compute capability 7.0\) has no bfloat16"):
        torch_check(torch.device("cuda"))

    class OldGpu:
        platform, device_kind, compute_capability = "gpu", "Tesla V100-SXM2-16GB", "7.0"

    with pytest.raises(UsageError, match=r"Tesla V100-SXM2-16GB \(compute capability 7.0\) has no bfloat16"):
        jax_check(OldGpu())
    torch_check(torch.device("cpu"))  # at most a note

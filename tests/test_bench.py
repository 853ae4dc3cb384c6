"""Smoke tests of ``python -m wordrnn.bench.compare``, ``wordrnn.bench.speed`` and ``wordrnn.bench.scaling`` on a
tiny corpus."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, assert_usage_error, run_module

from wordrnn.bench import roofline
from wordrnn.bench.compare import RECIPE_IMPL
from wordrnn.bench.written import SAMPLES, TOKENS
from wordrnn.core import hugepages, tolerances
from wordrnn.core.config import Config

TINY = ("--seq-len", "3", "--min-freq", "1")


def test_compare_writes_a_consistent_report(tmp_path, tiny_corpus):
    out = tmp_path / "report"
    result = run_module("wordrnn.bench.compare", "--data", str(tiny_corpus), *TINY, "--epochs", "1", "--models",
                        "embedding", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Kneser-Ney" in result.stdout  # progress, one line per run
    for name in ("REPORT.md", "results.json", "results.csv", "loss_curves.png", "form.png", "model.onnx"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("loss_curves.png", "form.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    doc = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    assert [r["impl"] for r in doc["rows"]] == ["numpy", "torch", "jax", RECIPE_IMPL, "kneser-ney"]
    assert [r["variant"] for r in doc["rows"]] == ["benchmark"] * 3 + ["recipe", "baseline"]
    for r in doc["rows"]:
        assert math.isfinite(r["best_val_ppl"]) and r["best_val_ppl"] > 1, r
        assert math.isclose(r["best_val_ppl"], math.exp(r["best_val_loss"]), rel_tol=1e-9)
        assert r["params"] > 0 and r["train_seconds"] >= 0
        assert 0 <= r["val_top1"] <= r["val_top5"] <= 1
    rnns = [r for r in doc["rows"] if r["variant"] == "benchmark"]
    assert all(r["best_epoch"] == 1 and r["epochs"] == 1 for r in rnns)
    # Same data, initial weights and batches: the three frameworks agree (docs/DESIGN.md: 1e-4 after 20 steps).
    losses = [r["best_val_loss"] for r in rnns]
    assert max(losses) - min(losses) <= tolerances.TRAJECTORY, losses
    assert rows["PyTorch embedding"]["time_ratio_vs_torch"] == 1.0
    assert all(r["time_ratio_vs_torch"] > 0 for r in rnns)
    assert doc["config"]["epochs"] == 1 and doc["config"]["seq_len"] == 3
    assert doc["machine"]["cores"] >= 1 and "numpy" in doc["machine"]["versions"]
    assert set(doc["kneser_ney_orders"]) == {"1", "2", "3", "4"}
    assert doc["onnx"]["max_abs_logit_diff"] <= tolerances.ONNX and doc["onnx"]["greedy_identical"] is True

    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == list(rows)
    assert float(table[0]["best_val_ppl"]) == doc["rows"][0]["best_val_ppl"]

    report = (out / "REPORT.md").read_text()
    assert "| implementation | model | parameters |" in report
    for name, r in rows.items():
        assert f"### {name}" in report  # a sample per run
        assert r["form"].startswith("words per line ") and f"*{r['form']}*" in report  # its form
        assert f"*{r['repetition']}*" in report and 0 < r["distinct_2"] <= 1  # and repetition
        assert r["written_tokens"] == SAMPLES * TOKENS  # measured on the long text, not the short sample
        poems = r["written_detail"]["form"]["words_per_line"]["poems"]
        assert poems["n"] > 0 and poems["mean"] > 0
    assert "## ONNX" in report and "## Machine" in report


SMALL_LARGE = ("--large-vocab", "60", "--large-tokens", "3000")  # a tiny stand-in for the large size


def test_speed_reports_ratios_and_limits_at_both_sizes(tmp_path, tiny_corpus):
    path = tmp_path / "speed.json"
    result = run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), *TINY, "--models", "embedding",
                        "--cells", "rnn", "--size", "both", *SMALL_LARGE, "--device", "cpu",
                        "--steps", "2", "--tokens", "4", "--repeats", "1", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "training, benchmark size" in result.stdout and "training, large size" in result.stdout
    doc = json.loads(path.read_text())
    assert set(doc) >= {"train", "generate", "machine", "limits", "sizes", "matmul_gflops"}
    assert doc["sizes"]["large"]["vocab_size"] == 60 and doc["sizes"]["large"]["source"] == "synthetic"
    cpu = doc["limits"]["cpu"]
    assert cpu["peak_gflops"] == max(cpu["matmul_gflops"].values()) > 0
    assert set(cpu["matmul_gflops"]) == {"numpy", "torch", "jax"}  # the peak is the fastest library's
    # the command started again with glibc's huge-page tunable wherever that helps
    assert doc["machine"]["huge_pages"] == (hugepages.would_help() and os.environ.get(hugepages.OPT_OUT) != "0")
    assert set(cpu["bandwidth_gbs"]) == {f"{s}/embedding/rnn/{t}" for s in ("benchmark", "large")
                                         for t in ("train", "generate")}
    assert all(v > 0 for v in cpu["bandwidth_gbs"].values())

    assert [(r["size"], r["impl"]) for r in doc["train"]] == [(s, i) for s in ("benchmark", "large")
                                                             for i in ("numpy", "torch", "jax")]
    for r in doc["train"]:
        assert set(r) >= {"impl", "model", "examples_per_s", "time_ratio_vs_torch", "size", "cell", "limit_fraction"}
        assert r["cell"] == "rnn" and r["model"] == "embedding" and r["device"] == "cpu"
        assert r["examples_per_s"] > 0 and r["time_ratio_vs_torch"] > 0 and r["gflops"] > 0
        assert 0 < r["limit_fraction"] <= 1, r
        # the estimate's inputs are in the row, and the limit follows from them
        limit_s = max(r["flops_per_step"] / (r["peak_gflops"] * 1e9), r["bytes_per_step"] / (r["bandwidth_gbs"] * 1e9))
        assert math.isclose(r["limit_ms"], 1e3 * limit_s, rel_tol=1e-9)
        assert math.isclose(r["limit_fraction"], r["limit_ms"] / r["step_ms"], rel_tol=1e-9)
    assert all(r["time_ratio_vs_torch"] == 1.0 for r in doc["train"] if r["impl"] == "torch")
    large = [r for r in doc["train"] if r["size"] == "large"]
    benchmark = [r for r in doc["train"] if r["size"] == "benchmark"]
    assert large[0]["flops_per_step"] != benchmark[0]["flops_per_step"]  # the sizes differ in work

    assert [(r["size"], r["runtime"]) for r in doc["generate"]] == [(s, rt) for s in ("benchmark", "large")
                                                                   for rt in ("onnxruntime", "torch", "flax", "numpy")]
    for r in doc["generate"]:
        assert set(r) >= {"runtime", "tokens_per_s", "speedup_vs_torch", "size", "cell"}
        assert r["tokens_per_s"] > 0 and r["speedup_vs_torch"] > 0
        assert r["same_tokens_as_torch"] is True  # docs/DESIGN.md: greedy generation identical in every runtime
    assert all(v > 0 for v in doc["matmul_gflops"].values())


def test_speed_times_an_epoch_of_the_large_corpus(tmp_path, tiny_corpus):
    path = tmp_path / "epoch.json"
    result = run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), *TINY, "--epoch-large", *SMALL_LARGE,
                        "--models", "embedding", "--cells", "rnn", "--impls", "numpy,jax", "--json", str(path))
    assert result.returncode == 0, result.stderr
    doc = json.loads(path.read_text())
    assert doc["train"] == [] and doc["generate"] == []
    windows = doc["sizes"]["large"]["train_windows"]
    assert [r["impl"] for r in doc["epochs"]] == ["numpy", "jax"]
    for r in doc["epochs"]:
        assert r["seconds"] > 0 and 0 < r["cpu_seconds"] and r["threads"] == 1 and r["size"] == "large"
        assert r["examples"] == windows and r["steps"] == -(-windows // 64)


POEM = ("--context", "poem", "--bptt", "5", "--batch-size", "4")


def test_speed_in_the_poem_context_counts_tokens_and_the_chunk_limit(tmp_path, tiny_corpus):
    path = tmp_path / "speed.json"
    result = run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), *TINY, *POEM, "--models", "embedding",
                        "--cells", "lstm", "--size", "large", *SMALL_LARGE, "--device", "cpu", "--steps", "1",
                        "--repeats", "1", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "training, large size, poem context" in result.stdout and "tokens/s" in result.stdout
    doc = json.loads(path.read_text())
    assert doc["generate"] == []  # generation is measured in the window context
    assert [r["impl"] for r in doc["train"]] == ["numpy", "torch", "jax"]
    for r in doc["train"]:
        assert r["context"] == "poem" and r["unit"] == "tokens" and r["batch"] == 4 * 5
        assert r["examples_per_s"] > 0 and r["time_ratio_vs_torch"] > 0 and 0 < r["limit_fraction"] <= 1
    flops = {r["flops_per_step"] for r in doc["train"]}
    config = Config(model="embedding", cell="lstm", vocab_size=60, seq_len=3, batch_size=4, context="poem", bptt=5)
    assert flops == {roofline.chunk_step_work(config, 4, 5).flops}


def test_the_poem_chunk_counts_the_output_layer_at_every_position():
    config = Config(model="embedding", cell="gru", vocab_size=500, hidden_size=32, seq_len=7, batch_size=8)
    chunk, window = roofline.chunk_step_work(config, 8, 7), roofline.train_step_work(config, 8)
    H, V = config.hidden_size, config.vocab_size
    assert math.isclose(chunk.flops - window.flops, 3 * 8 * 6 * (2 * H * V + roofline.SOFTMAX_FLOPS * V))
    assert math.isclose(chunk.bytes - window.bytes, roofline.FLOAT_BYTES * 2 * 8 * 6 * V)  # the logits, kept


def test_speed_times_a_poem_epoch(tmp_path, tiny_corpus):
    path = tmp_path / "epoch.json"
    result = run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), *TINY, "--epoch-large", *SMALL_LARGE,
                        *POEM, "--models", "embedding", "--cells", "gru", "--impls", "numpy,torch", "--json", str(path))
    assert result.returncode == 0, result.stderr
    rows = json.loads(path.read_text())["epochs"]
    assert [(r["context"], r["impl"]) for r in rows] == [("poem", "numpy"), ("poem", "torch")]
    for r in rows:
        assert r["seconds"] > 0 and r["steps"] > 1 and 0 < r["targets"] < 3000


def test_scaling_writes_the_picture_and_its_json(tmp_path):
    out = tmp_path / "docs" / "scaling_cpu.png"
    result = run_module("wordrnn.bench.scaling", "--vocab-size", "60", "--streams", "2,4", "--hidden", "8,16",
                        "--batch-size", "2", "--hidden-size", "8", "--bptt", "4", "--repeats", "1",
                        "--impls", "numpy,torch", "--device", "cpu", "--precision", "float32", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [(r["streams"], r["impl"]) for r in doc["sweeps"]["streams"]] == [(b, i) for b in (2, 4)
                                                                             for i in ("numpy", "torch")]
    assert [r["hidden"] for r in doc["sweeps"]["hidden"]] == [8, 8, 16, 16]
    for r in doc["sweeps"]["streams"] + doc["sweeps"]["hidden"]:
        assert r["tokens_per_s"] > 0 and 0 < r["limit_fraction"] <= 1
        assert math.isclose(r["limit_fraction"], r["tokens_per_s"] / r["limit_tokens_per_s"], rel_tol=1e-9)


def bfloat16_rows_or_left_out(rows: list[dict], stdout: str, impls: tuple[str, ...]) -> list[dict]:
    """The bfloat16 rows; every implementation of ``impls`` has them, or a line saying they were left out (a
    library without a bfloat16 kernel on this CPU); NumPy never has them, and a line says so."""
    mixed = [r for r in rows if r["precision"] == "bfloat16"]
    assert "numpy" not in {r["impl"] for r in mixed} and "numpy: no bfloat16 rows" in stdout
    for impl in impls:
        assert any(r["impl"] == impl for r in mixed) or f"{impl} bf16: left out" in stdout, impl
    return mixed


@pytest.mark.slow  # a bfloat16 product without a kernel (PyTorch on an AVX2 CPU) takes seconds
def test_speed_puts_bfloat16_rows_beside_float32_against_the_bfloat16_peak(tmp_path, tiny_corpus):
    path = tmp_path / "speed.json"
    result = run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), *TINY, *POEM, "--models", "embedding",
                        "--cells", "rnn", "--size", "large", *SMALL_LARGE, "--device", "cpu", "--steps", "1",
                        "--repeats", "1", "--precision", "both", "--json", str(path), timeout=900)
    assert result.returncode == 0, result.stderr
    doc = json.loads(path.read_text())
    cpu = doc["limits"]["cpu"]
    assert cpu["bfloat16_peak_gflops"] == max(cpu["bfloat16_matmul_gflops"].values()) > 0
    assert "numpy" not in cpu["bfloat16_matmul_gflops"]  # NumPy has no bfloat16 product
    assert isinstance(doc["machine"]["cpu_flags"], list)
    rows = doc["train"]
    assert [r["impl"] for r in rows if r["precision"] == "float32"] == ["numpy", "torch", "jax"]
    for r in bfloat16_rows_or_left_out(rows, result.stdout, ("torch", "jax")):
        assert r["peak_gflops"] == cpu["bfloat16_peak_gflops"] and 0 < r["limit_fraction"] <= 1
        base = next(b for b in rows if b["impl"] == r["impl"] and b["precision"] == "float32")
        assert math.isclose(r["vs_float32"], r["examples_per_s"] / base["examples_per_s"], rel_tol=1e-9)
    for r in rows:
        assert r["peak_memory_mb"] > 0
        assert r["peak_gflops"] == cpu["peak_gflops" if r["precision"] == "float32" else "bfloat16_peak_gflops"]


@pytest.mark.slow  # a bfloat16 product without a kernel (PyTorch on an AVX2 CPU) takes seconds
def test_scaling_draws_both_precisions_with_their_peak_memory(tmp_path):
    out = tmp_path / "scaling_cpu.png"
    result = run_module("wordrnn.bench.scaling", "--vocab-size", "60", "--streams", "2", "--hidden", "8",
                        "--batch-size", "2", "--hidden-size", "8", "--bptt", "4", "--repeats", "1",
                        "--device", "cpu", "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["settings"]["precisions"] == ["float32", "bfloat16"]
    rows = doc["sweeps"]["streams"] + doc["sweeps"]["hidden"]
    bfloat16_rows_or_left_out(rows, result.stdout, ("torch", "jax"))
    for r in rows:
        assert r["peak_memory_mb"] > 0
        assert r["peak_gflops"] == doc["limits"]["cpu"][r["precision"]]["peak_gflops"]


def test_the_resident_peak_sees_a_buffer_that_lived_only_inside_the_block():
    import numpy as np

    from wordrnn.bench.peak_memory import ResidentPeak, resident_bytes

    before = resident_bytes()
    with ResidentPeak() as seen:
        buffer = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
        del buffer
    assert seen.peak - before > 200 * 2**20 and resident_bytes() - before < 100 * 2**20


def test_synthetic_corpus_is_seeded_and_zipf_like():
    import numpy as np

    from wordrnn.bench.synthetic import SyntheticSize, corpus_text, synthetic_dataset, words

    size = SyntheticSize(vocab_size=2000, train_tokens=100_000)
    first, again = synthetic_dataset(size), synthetic_dataset(size)
    assert np.array_equal(first.train_x, again.train_x) and np.array_equal(first.val_y, again.val_y)
    other = synthetic_dataset(SyntheticSize(vocab_size=2000, train_tokens=100_000, seed=1))
    assert not np.array_equal(first.train_x[:100], other.train_x[:100])
    assert len(first.vocab) == 2000 and sum(len(p) for p in first.train_ids) == 100_000
    assert len(set(words(1999))) == 1999 and first.vocab.tokens[1:] == words(1999)  # distinct words
    # Zipf: log frequency falls about one for one with log rank (exponent 1), over the well-sampled ranks
    counts = np.bincount(np.concatenate(first.train_ids), minlength=2000)[1:201]
    slope = np.polyfit(np.log(np.arange(1, 201)), np.log(counts), 1)[0]
    assert -1.15 < slope < -0.85, slope
    assert counts[0] > counts[9] > counts[99]
    text = corpus_text(size)
    assert text == corpus_text(size) and len(text.split()) == 110_000


def test_synthetic_corpus_file_trains(tmp_path):
    from data.dataset import load_dataset
    from wordrnn.bench.synthetic import SyntheticSize, write_corpus

    path = write_corpus(tmp_path / "synthetic.txt", SyntheticSize(vocab_size=300, train_tokens=5000))
    dataset = load_dataset(str(path), seq_len=5)
    assert 2 < len(dataset.vocab) <= 300 + 1  # rare words drop below --min-freq; line breaks add a token
    assert dataset.poems == 25 + 2  # 5000 / 200 training poems, 500 / 200 validation poems


def test_bad_flags_are_one_line_errors(tiny_corpus):
    assert_usage_error(run_module("wordrnn.bench.compare", "--data", str(tiny_corpus), "--impls", "numpy,caffe"),
                       "--impls")
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--steps", "0"), "--steps")
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--threads", "-1"), "--threads")
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--cells", "rnn,tcn"), "--cells")
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--large-tokens", "10"),
                       "training tokens")
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--bptt", "0"), "--bptt")
    assert_usage_error(run_module("wordrnn.bench.scaling", "--streams", "8,x"), "--streams")
    assert_usage_error(run_module("wordrnn.bench.scaling", "--hidden", "0"), "--hidden")
    assert_usage_error(run_module("wordrnn.bench.scaling", "--vocab-size", "1"), "--vocab-size")
    assert_usage_error(run_module("wordrnn.bench.compare", "--data", str(tiny_corpus), *TINY, "--prompt", "zzz qqq",
                                  "--out", str(tiny_corpus.parent / "r")), "prompt")


@pytest.mark.slow
def test_gpu_check_script_dry_run_on_the_cpu(tmp_path):
    """The GPU check's every step, on the CPU at small sizes: one JSON with every step passed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", str(ROOT / "wordrnn/bench/gpu_check.sh"), "--device", "cpu"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=1500)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result.returncode == 0, [(s["name"], s["rc"], s["output_tail"][-500:]) for s in doc["steps"]]
    assert doc["passed"] is True and doc["device"] == "cpu"
    assert [s["name"] for s in doc["steps"]] == ["machine", "corpora", "parity", "torch_epochs", "jax_epochs",
                                                 "torch_poem_epochs", "jax_poem_epochs", "speed_benchmark",
                                                 "speed_large", "scaling", "torch_bf16_poem_epochs",
                                                 "jax_bf16_poem_epochs", "speed_bf16", "scaling_bf16"]
    for run in ("torch", "jax", "torch_poem", "jax_poem", "torch_bf16_poem", "jax_bf16_poem"):
        assert [e["epoch"] for e in doc["epochs"][run]] == [1, 2], run
    assert {r["context"] for r in doc["speed"]["large"]["train"]} == {"window", "poem"}
    assert (tmp_path / "scaling_cpu.png").is_file() and doc["scaling"]["scaling_cpu"]["sweeps"]["streams"]
    assert (tmp_path / "scaling_bf16_cpu.png").is_file()
    assert doc["scaling"]["scaling_bf16_cpu"]["settings"]["precisions"] == ["bfloat16"]
    assert {r["precision"] for r in doc["speed"]["bfloat16"]["train"]} >= {"float32"}
    for size in ("benchmark", "large"):
        assert {r["size"] for r in doc["speed"][size]["train"]} == {size}
    assert (tmp_path / "gpu_check.log").stat().st_size > 0


def test_speed_runs_mingru_in_the_scan_form_asked_for(tmp_path, tiny_corpus):
    """``--linear-scan`` picks JAX's mingru recurrence (``jaxmodels.scan``) and the JSON records it; asked for
    where no JAX mingru row runs, it is refused in one line rather than ignored."""
    path = tmp_path / "speed.json"
    result = run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), *TINY, *POEM, "--models", "embedding",
                        "--cells", "mingru", "--impls", "jax", "--size", "large", *SMALL_LARGE, "--device", "cpu",
                        "--steps", "1", "--repeats", "1", "--linear-scan", "parallel", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "mingru scan parallel" in result.stdout
    doc = json.loads(path.read_text())
    assert doc["settings"]["linear_scan"] == "parallel" and [r["cell"] for r in doc["train"]] == ["mingru"]
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--impls", "torch",
                                  "--cells", "mingru", "--linear-scan", "sequential"), "--linear-scan")

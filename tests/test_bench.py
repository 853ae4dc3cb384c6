"""Smoke tests of ``python -m wordrnn.bench.compare`` and ``python -m wordrnn.bench.speed`` on a tiny corpus."""

from __future__ import annotations

import csv
import json
import math

from conftest import assert_usage_error, run_module

from wordrnn.bench.compare import TUNED_IMPL

TINY = ("--seq-len", "3", "--min-freq", "1")


def test_compare_writes_a_consistent_report(tmp_path, tiny_corpus):
    out = tmp_path / "report"
    result = run_module("wordrnn.bench.compare", "--data", str(tiny_corpus), *TINY, "--epochs", "1", "--models",
                        "embedding", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Kneser-Ney" in result.stdout  # progress, one line per run
    for name in ("REPORT.md", "results.json", "results.csv", "loss_curves.png", "model.onnx"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    doc = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    assert [r["impl"] for r in doc["rows"]] == ["numpy", "torch", "jax", TUNED_IMPL, "kneser-ney"]
    assert [r["variant"] for r in doc["rows"]] == ["benchmark"] * 3 + ["tuned", "baseline"]
    for r in doc["rows"]:
        assert math.isfinite(r["best_val_ppl"]) and r["best_val_ppl"] > 1, r
        assert math.isclose(r["best_val_ppl"], math.exp(r["best_val_loss"]), rel_tol=1e-9)
        assert r["params"] > 0 and r["train_seconds"] >= 0
        assert 0 <= r["val_top1"] <= r["val_top5"] <= 1
    rnns = [r for r in doc["rows"] if r["variant"] == "benchmark"]
    assert all(r["best_epoch"] == 1 and r["epochs"] == 1 for r in rnns)
    # Same data, initial weights and batches: the three frameworks agree (DESIGN.md: 1e-4 after 20 steps).
    losses = [r["best_val_loss"] for r in rnns]
    assert max(losses) - min(losses) <= 1e-4, losses
    assert rows["PyTorch embedding"]["time_ratio_vs_torch"] == 1.0
    assert all(r["time_ratio_vs_torch"] > 0 for r in rnns)
    assert doc["config"]["epochs"] == 1 and doc["config"]["seq_len"] == 3
    assert doc["machine"]["cores"] >= 1 and "numpy" in doc["machine"]["versions"]
    assert set(doc["kneser_ney_orders"]) == {"1", "2", "3", "4"}
    assert doc["onnx"]["max_abs_logit_diff"] <= 1e-5 and doc["onnx"]["greedy_identical"] is True

    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == list(rows)
    assert float(table[0]["best_val_ppl"]) == doc["rows"][0]["best_val_ppl"]

    report = (out / "REPORT.md").read_text()
    assert "| implementation | model | parameters |" in report
    for name in rows:
        assert f"### {name}" in report  # a sample per run
    assert "## ONNX" in report and "## Machine" in report


def test_speed_reports_ratios_to_torch(tmp_path, tiny_corpus):
    path = tmp_path / "speed.json"
    result = run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), *TINY, "--models", "embedding",
                        "--steps", "2", "--tokens", "4", "--repeats", "1", "--json", str(path))
    assert result.returncode == 0, result.stderr
    doc = json.loads(path.read_text())
    assert set(doc) >= {"train", "generate", "machine"}
    assert [r["impl"] for r in doc["train"]] == ["numpy", "torch", "jax"]
    for r in doc["train"]:
        assert set(r) >= {"impl", "model", "examples_per_s", "time_ratio_vs_torch"}
        assert r["examples_per_s"] > 0 and r["time_ratio_vs_torch"] > 0 and r["gflops"] > 0
    torch_train = next(r for r in doc["train"] if r["impl"] == "torch")
    assert torch_train["time_ratio_vs_torch"] == 1.0
    assert [r["runtime"] for r in doc["generate"]] == ["onnxruntime", "torch", "flax", "numpy"]
    for r in doc["generate"]:
        assert set(r) >= {"runtime", "tokens_per_s", "speedup_vs_torch"}
        assert r["tokens_per_s"] > 0 and r["speedup_vs_torch"] > 0
        assert r["same_tokens_as_torch"] is True  # DESIGN.md: greedy generation identical in every runtime
    assert all(v > 0 for v in doc["matmul_gflops"].values())


def test_bad_flags_are_one_line_errors(tiny_corpus):
    assert_usage_error(run_module("wordrnn.bench.compare", "--data", str(tiny_corpus), "--impls", "numpy,caffe"), "--impls")
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--steps", "0"), "--steps")
    assert_usage_error(run_module("wordrnn.bench.speed", "--data", str(tiny_corpus), "--threads", "-1"), "--threads")
    assert_usage_error(run_module("wordrnn.bench.compare", "--data", str(tiny_corpus), *TINY, "--prompt", "zzz qqq",
                                  "--out", str(tiny_corpus.parent / "r")), "prompt")

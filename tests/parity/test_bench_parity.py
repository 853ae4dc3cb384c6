"""``python -m wordrnn.bench.parity``: one markdown table, docs/DESIGN.md's tolerances, exit 1 when one is exceeded.

The command runs in this process, for the embedding model and one cell, on the
sizes and settings of the other parity tests (so JAX reuses their
compilations); the full-size run of both models and every cell is
``python -m wordrnn.bench.parity`` itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from wordrnn.bench import parity
from wordrnn.core.params import param_shapes
from wordrnn.testing import parity as pc

# what test_trajectories.py uses; --threads 0 leaves the thread pools to the package fixture
TRAINING = ["--lr", "1e-2", "--weight-decay", "1e-2", "--threads", "0"]


def flags(sizes: dict[str, int], *extra: str) -> list[str]:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()]
    return [*args, *TRAINING, *extra]


def table_rows(out: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows]


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parity.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for fragment in ("--vocab-size", "--hidden-size", "--seed", "--cells", "--device", "tolerance", "exits 1"):
        assert fragment in out


@pytest.mark.parametrize("argv, fragment", [
    (["--hidden-size", "0"], "--hidden-size"),
    (["--vocab-size", "1"], "--vocab-size"),
    (["--steps", "0"], "--steps"),
    (["--lr", "-1"], "--lr"),
    (["--dropout", "1"], "--dropout"),
    (["--weight-decay", "0"], "--weight-decay"),
    (["--threads", "-1"], "--threads"),
    (["--cells", "lstm,nosuch"], "--cells"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_error_line(capsys, argv, fragment):
    with pytest.raises(SystemExit) as exit_info:
        parity.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and fragment in lines[0], err


def test_small_run_prints_one_passing_table(capsys, small):
    assert parity.main(flags(small, "--model", "embedding", "--cells", "lstm", "--context", "window")) == 0
    rows = table_rows(capsys.readouterr().out)
    header, body = rows[0], rows[2:]
    assert header == ["model", "cell", "check", *pc.PAIRS, "tolerance", "result"]
    n_params = len(param_shapes(pc.make_config("embedding", **small)))
    # logits + each gradient, f32 and f64; logits + the worst gradient with masks, f32 and f64;
    # loss and weights of two trajectories
    assert [row[:2] for row in body] == [["embedding", "lstm"]] * (2 * (1 + n_params) + 2 * 2 + 2 * 2)
    for row in body:
        diffs, tolerance = [float(cell) for cell in row[3:6]], float(row[6])
        assert all(math.isfinite(d) and d <= tolerance for d in diffs), row
        assert row[7] == "pass"


def test_cuda_without_a_gpu_is_a_usage_error(capsys, small):
    pytest.importorskip("torch").cuda.is_available() and pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as exit_info:
        parity.main(flags(small, "--device", "cuda"))
    assert exit_info.value.code == 2
    assert "--device cuda" in capsys.readouterr().err


def test_exits_1_when_a_difference_exceeds_its_tolerance(capsys, monkeypatch, small):
    honest = pc.PASSES["jax"]

    def off_by_1e_3(*args, **kwargs):
        result = honest(*args, **kwargs)
        result.logits = result.logits + np.float64(1e-3)
        return result

    monkeypatch.setitem(pc.PASSES, "jax", off_by_1e_3)
    assert parity.main(flags(small, "--model", "embedding", "--cells", "lstm")) == 1
    out = capsys.readouterr().out
    failed = [row for row in table_rows(out)[2:] if row[7] != "pass"]
    assert failed and all(row[2].startswith("logits") for row in failed)
    # one pass per framework serves both contexts: the windows' rows and the carried chunks' rows fail together
    windows = {"logits f32", "logits f64", "logits f32, dropout masks p=0.3", "logits f64, dropout masks p=0.3"}
    chunks = {f"logits {dtype}, poem, 2 carried chunks of 20{masks}" for dtype in ("f32", "f64")
              for masks in ("", ", locked masks p=0.3")}
    assert {row[2] for row in failed} == windows | chunks
    assert "over tolerance" in out


def test_a_failed_check_is_one_with_any_pair_over_or_not_a_number():
    assert pc.Check("m", "c", 1e-5, {"a-b": 1e-6, "a-c": 2e-6}).passed
    assert not pc.Check("m", "c", 1e-5, {"a-b": 1e-6, "a-c": 2e-5}).passed
    assert not pc.Check("m", "c", 1e-5, {"a-b": float("nan")}).passed
    assert pc.relative_diff(np.array([10.0, 1.0]), np.array([10.0, 1.001])) == pytest.approx(1e-4)

"""The carried-state check of ``export.onnx`` has an error model (docs/DESIGN.md): a poem file is held to the float64
NumPy reference within 1e-5 or ONNX_DRIFT times the drift of correct float32 computations, whichever is larger.

It accepts a correct model whose state amplifies rounding (two float32 computations of its tanh state part by
more than 1e-5 over a training chunk), and still refuses a graph with a sign flipped in the cell's equation or one
that ignores the state it is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_export import export, make_run

import export.onnx as export_onnx
from export.graph import build_graph
from wordrnn.core import tolerances
from wordrnn.run.folder import WEIGHTS, load_run, save_params


def drifting_run(folder: Path) -> Path:
    """A poem ``rnn`` run whose recurrent weights are large enough that its tanh state amplifies rounding: over
    the 35 tokens of a training chunk two correct float32 computations part by more than 1e-5."""
    run_dir = make_run(folder, "embedding", cell="rnn", context="poem")
    run = load_run(run_dir)
    params = dict(run.params)
    params["rnn.w_hh"] = params["rnn.w_hh"] * 3
    params["out.weight"] = params["out.weight"] * 3
    save_params(run_dir / WEIGHTS, params)
    return run_dir


def float32_difference(run_dir: Path) -> float:
    """The largest difference of the exported file from the float32 NumPy reference on the checked cases: what the
    check held to 1e-5 before it had an error model."""
    run = load_run(run_dir)
    exported = export_onnx.export_run(run)
    lm = export_onnx.OnnxLM(export_onnx.open_session(exported.payload, "x"),
                            export_onnx.ModelCard(run.config, run.vocab, {}, None), "x")
    forward = export_onnx.reference_forward(run.member_params, run.config)
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, seq in export_onnx.check_shapes(run.config):
        x = rng.integers(0, run.config.vocab_size, size=(batch, seq), dtype=np.int64)
        random_state = tuple(rng.standard_normal(s.shape).astype(np.float32) * 0.5 for s in lm.zero_state(batch))
        for start in (lm.zero_state(batch), random_state):
            (got, got_state), (want, want_state) = lm.run(x, start), forward(x, start)
            worst = max(worst, np.abs(got - want).max(), *(np.abs(g - w).max() for g, w in zip(got_state, want_state)))
    return float(worst)


def test_a_state_that_amplifies_rounding_is_exported(tmp_path, capsys):
    run_dir = drifting_run(tmp_path / "run")
    assert float32_difference(run_dir) > tolerances.ONNX  # the case: over the constant the check used to hold
    out = tmp_path / "model.onnx"
    assert export(run_dir, out) == 0, capsys.readouterr().err
    assert out.exists()


def spoiled(spoil):
    """``build_graph`` whose model ``spoil`` edits before the check sees it."""
    def build(params, config, opset, metadata=None):
        model = build_graph(params, config, opset, metadata=metadata)
        spoil(model.graph)
        return model
    return build


def flip_recurrence(graph: onnx.GraphProto) -> None:
    """h_t = tanh(W x_t - R h_{t-1} + b): the sign of one term of the cell's equation flipped."""
    for i, tensor in enumerate(graph.initializer):
        if tensor.name == "rnn.R":
            graph.initializer[i].CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), "rnn.R"))
            return
    raise AssertionError("no rnn.R in the graph")


def ignore_h0(graph: onnx.GraphProto) -> None:
    """The RNN op given no initial state: it starts every call from zero whatever h0 the caller passes."""
    node = next(n for n in graph.node if n.op_type == "RNN")
    node.input[5] = ""


@pytest.mark.parametrize("spoil", [flip_recurrence, ignore_h0], ids=["sign-flipped", "h0-ignored"])
@pytest.mark.parametrize("drifting", [False, True], ids=["plain", "drifting"])
def test_a_wrong_equation_or_an_ignored_state_is_refused(spoil, drifting, tmp_path, capsys, monkeypatch):
    run_dir = drifting_run(tmp_path / "run") if drifting else make_run(tmp_path / "run", "embedding",
                                                                         context="poem")
    monkeypatch.setattr(export_onnx, "build_graph", spoiled(spoil))
    out = tmp_path / "model.onnx"
    assert export(run_dir, out) == 1
    assert "nothing written" in capsys.readouterr().err
    assert not out.exists()

"""The stateful export of a poem model, generation with the state carried, and files whose graph and metadata
disagree (export/, docs/GENERATION.md version 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, assert_usage_error, run_module
from test_export import WORDS, export, make_run, usage_error

import scratch.sequence
from data.tokenizer import tokenize
from data.vocab import Vocab
from export import generate as export_generate
from export import onnx as export_onnx
from export.graph import build_graph
from export.metadata import (
    GENERATION,
    GENERATION_V1,
    KEY_CONTEXT,
    KEY_GENERATION,
    KEY_STATE,
    ModelCard,
    to_props,
)
from export.session import load
from scratch.sequence import forward
from wordrnn.core import tolerances
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.params import init_params
from wordrnn.core.sampling import SamplerSettings, Stateful, generate
from wordrnn.run.folder import load_run
from wordrnn.run.generation import generate_text

TOLERANCE = tolerances.ONNX
H = 16  # make_run's hidden size
# The last commit whose clients knew only version 1 of the contract (window models): an old client, for real.
V1_COMMIT = "b2e5b91fa14d4707a62950c1f0e078e8c7fb2f61"
MODELS_AND_CELLS = [(model, cell) for cell in CELLS for model in ("onehot", "embedding")]


@pytest.fixture(scope="module", params=MODELS_AND_CELLS, ids=[f"{m}-{c}" for m, c in MODELS_AND_CELLS])
def poem(request, tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, exported .onnx) of a poem model, for each model and cell."""
    model, cell = request.param
    folder = tmp_path_factory.mktemp(f"poem-{model}-{cell}")
    run_dir = make_run(folder / "run", model, cell=cell, context="poem")
    out = folder / "out" / "model.onnx"
    assert export(run_dir, out) == 0
    return run_dir, out


def random_state(cell: str, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    count = 2 if CELLS[cell].has_cell_state else 1
    return tuple((rng.standard_normal((batch, H)) * 0.5).astype(np.float32) for _ in range(count))


def numpy_poem(params, cell: str) -> Stateful:
    """The NumPy reference with its state carried: what the ONNX poem model must reproduce."""
    return Stateful(lambda x, carry: forward(params, x, cell, state=carry)[:2])


# --- the file ---

def test_a_poem_file_takes_and_gives_its_state_with_both_axes_dynamic(poem):
    run_dir, out = poem
    cell = load_run(run_dir).config.cell
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert {n.domain for n in model.graph.node} == {""}
    assert (CELLS[cell].onnx_op or "Scan") in {n.op_type for n in model.graph.node}  # no op: the generic Scan
    states = [("h0", "hn"), ("c0", "cn")][: 2 if cell == "lstm" else 1]

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs, outputs = {v.name: v for v in model.graph.input}, {v.name: v for v in model.graph.output}
    assert list(inputs) == ["tokens", *(i for i, _ in states)] and list(outputs) == ["logits", *(o for _, o in states)]
    assert inputs["tokens"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert dims(inputs["tokens"]) == ["batch", "seq"] and dims(outputs["logits"]) == ["batch", "seq", len(WORDS)]
    for i, o in states:
        assert dims(inputs[i]) == dims(outputs[o]) == ["batch", H]
        assert inputs[i].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    props = {p.key: p.value for p in model.metadata_props}
    assert props[KEY_GENERATION] == GENERATION and props[KEY_CONTEXT] == "poem"
    assert json.loads(props[KEY_STATE]) == [{"input": i, "output": o, "size": H} for i, o in states]


def test_a_window_file_is_what_it_always_was(tmp_path):
    """Version 1, the five nodes, one input and one output: every client written before poem models reads it."""
    out = tmp_path / "window.onnx"
    assert export(make_run(tmp_path / "run", "embedding", cell="lstm"), out) == 0
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    assert props[KEY_GENERATION] == GENERATION_V1 and props[KEY_CONTEXT] == "window" and KEY_STATE not in props
    assert [v.name for v in model.graph.input] == ["tokens"] and [v.name for v in model.graph.output] == ["logits"]
    assert [n.op_type for n in model.graph.node] == ["Gather", "Transpose", "LSTM", "Squeeze", "Gemm"]


def test_logits_at_every_position_and_the_state_match_the_reference_whole_and_in_pieces(poem):
    run_dir, out = poem
    run, lm = load_run(run_dir), load(out)
    cell = run.config.cell
    rng = np.random.default_rng(3)
    for batch in (1, 7):
        for seq in (1, 2, 5, 12, 40):
            x = rng.integers(0, len(WORDS), size=(batch, seq), dtype=np.int64)
            for start in (None, random_state(cell, batch, rng)):
                want, want_state, _ = forward(run.params, x, cell, state=start)
                got, state = lm.run(x, lm.zero_state(batch) if start is None else start)
                assert got.shape == (batch, seq, len(WORDS)) and got.dtype == np.float32
                assert np.abs(got - want).max() <= TOLERANCE
                assert all(np.abs(g - w).max() <= TOLERANCE for g, w in zip(state, want_state, strict=True))
                for cut in range(1, seq):  # every place to cut the rows in two, the state passed back
                    first, middle = lm.run(x[:, :cut], lm.zero_state(batch) if start is None else start)
                    second, end = lm.run(x[:, cut:], middle)
                    assert np.abs(np.concatenate([first, second], axis=1) - got).max() <= TOLERANCE
                    assert all(np.abs(e - s).max() <= TOLERANCE for e, s in zip(end, state, strict=True))


def test_generation_carries_the_state_one_token_a_step(poem):
    """The prompt is run once, then one token a step; the tokens are those of reading the whole text afresh."""
    run_dir, out = poem
    run, lm = load_run(run_dir), load(out)
    cell, seq_len = run.config.cell, run.config.seq_len
    prompt = [int(i) for i in run.vocab.encode(tokenize("the sea is calm , my love", "default"))]
    fed = []
    real_run = lm.run
    lm.run = lambda x, state: (fed.append(np.shape(x)), real_run(x, state))[1]
    for settings in (SamplerSettings("greedy", allow_unk=True), SamplerSettings(temperature=0.9, seed=4)):
        fed.clear()
        got = generate(lm.source, prompt, 50, seq_len, settings)
        assert fed == [(1, len(prompt))] + [(1, 1)] * 49
        assert got == generate(numpy_poem(run.params, cell), prompt, 50, seq_len, settings)
        if settings.strategy == "greedy":  # a window as long as the text: the whole poem re-read every step
            whole = generate(lambda x: forward(run.params, x, cell)[0][:, -1], prompt, 50, 10**6, settings)
            assert got == whole


def test_greedy_generation_of_a_poem_model_is_identical_in_every_runtime(poem):
    """NumPy, PyTorch, Flax (each backend's own carried state) and onnxruntime write the same greedy tokens."""
    from jaxmodels.backend import JaxBackend
    from torchmodels.backend import TorchBackend
    from wordrnn.run.loop import generation_source

    run_dir, out = poem
    run = load_run(run_dir)
    prompt = [int(i) for i in run.vocab.encode(tokenize("the sea is calm", "default"))]
    settings = SamplerSettings("greedy", allow_unk=True)
    want = generate(numpy_poem(run.params, run.config.cell), prompt, 40, run.config.seq_len, settings)
    assert generate(load(out).source, prompt, 40, run.config.seq_len, settings) == want
    for backend in (TorchBackend("cpu"), JaxBackend()):
        source = generation_source(backend, backend.init(run.params, run.config), run.config)
        assert generate(source, prompt, 40, run.config.seq_len, settings) == want, backend.framework


def test_generate_command_writes_what_the_numpy_reference_writes(poem):
    run_dir, out = poem
    run = load_run(run_dir)
    settings = SamplerSettings(temperature=0.8, top_p=0.9, seed=5)
    want = generate_text(numpy_poem(run.params, run.config.cell), run.vocab, run.config.seq_len, "My love is", 40,
                         settings)
    result = run_module("export.generate", "--model", str(out), "--prompt", "My love is", "--words", "40",
                        "--temperature", "0.8", "--top-p", "0.9", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == want + "\n"


# --- the export refuses what it cannot check, and writes nothing it could not ---

@pytest.mark.parametrize("spoil", ["logits", "state", "from a state"])
def test_export_writes_nothing_when_the_logits_or_the_state_disagree(spoil, tmp_path, capsys, monkeypatch):
    run_dir = make_run(tmp_path / "run", "embedding", cell="lstm", context="poem")
    real = scratch.sequence.forward

    def off_by_a_little(params, x, cell, state=None, **kwargs):
        logits, state_out, cache = real(params, x, cell, state=state, **kwargs)
        nonzero = state is not None and any(np.any(s) for s in state)
        if spoil == "logits" or (spoil == "from a state" and nonzero):
            logits = logits + 2 * TOLERANCE
        if spoil == "state":
            state_out = (state_out[0], state_out[1] + 2 * TOLERANCE)
        return logits, state_out, cache

    monkeypatch.setattr(scratch.sequence, "forward", off_by_a_little)
    out = tmp_path / "model.onnx"
    assert export(run_dir, out) == 1
    assert "nothing written" in capsys.readouterr().err
    assert not out.exists()


def test_export_refuses_a_reference_or_a_tracer_that_cannot_check_a_poem_model(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run", "onehot", context="poem")
    out = tmp_path / "model.onnx"
    usage_error(capsys, export_onnx.main, ["--run", str(run_dir), "--out", str(out), "--reference", "torch"],
                "poem model", "--reference torch")
    usage_error(capsys, export_onnx.main, ["--run", str(run_dir), "--out", str(out), "--from", "jax"],
                "poem model", "--from jax")
    assert not out.exists()


# --- bad input: the state missing or of the wrong width ---

def test_a_poem_model_fed_without_its_state_or_with_the_wrong_width_is_refused(poem):
    _, out = poem
    lm = load(out)
    x = np.zeros((1, 3), np.int64)
    narrow = tuple(np.zeros((1, H - 1), np.float32) for _ in lm.card.states)
    wide = tuple(np.zeros((1, H), np.float64) for _ in lm.card.states)
    for state, fragment in [(None, "got no state"), (narrow, f"got float32 [1, {H - 1}]"),
                            (wide, "got float64 [1, 16]")]:
        with pytest.raises(UsageError, match="is a poem model: it needs its state h0 float32") as err:
            lm.run(x, state)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_window_model_has_no_state_to_feed(tmp_path):
    out = tmp_path / "window.onnx"
    assert export(make_run(tmp_path / "run", "onehot"), out) == 0
    with pytest.raises(UsageError, match="window model: it takes tokens alone"):
        load(out).run(np.zeros((1, 2), np.int64), ())
    assert not isinstance(load(out).source, Stateful)


# --- a file whose graph does not match its metadata (a lying file) ---

def lying_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Graphs built to disagree with the metadata they carry, each with a fragment of the one line that refuses it."""
    vocab = Vocab(WORDS)

    def write(name: str, graph_config: Config, card_config: Config, edit=None) -> Path:
        model = build_graph(init_params(graph_config), graph_config,
                            metadata=to_props(ModelCard(card_config, vocab, {"framework": "numpy"})))
        if edit:
            edit(model)
        path = folder / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    def base(**values) -> Config:
        return Config(**{"model": "embedding", "vocab_size": len(WORDS), "hidden_size": H, "embed_dim": 8, **values})

    def width_known_only_at_run_time(model):
        """The logits cut to seq + 12 columns: no shape inference knows the width, only a run does."""
        graph = model.graph
        graph.node[-1].output[0] = "logits_in_full"
        graph.initializer.extend(onnx.numpy_helper.from_array(np.array([v], np.int64), name)
                                 for name, v in [("zero", 0), ("one", 1), ("two", 2), ("twelve", 12)])
        graph.node.extend([onnx.helper.make_node("Shape", ["tokens"], ["shape"]),
                           onnx.helper.make_node("Slice", ["shape", "one", "two"], ["seq"]),
                           onnx.helper.make_node("Add", ["seq", "twelve"], ["end"]),
                           onnx.helper.make_node("Slice", ["logits_in_full", "zero", "end", "one"], ["logits"])])
        graph.output[0].type.tensor_type.shape.dim[-1].dim_param = "vocab"

    def int32_tokens(model):
        model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT32

    V = len(WORDS)
    return {
        "narrow-logits": (write("narrow-logits", base(vocab_size=V - 2), base()),
                          f"the graph's outputs are logits float [?, {V - 2}] but its metadata describes a window rnn "
                          f"model of {V} tokens, whose outputs are logits float [?, {V}]"),
        "hidden-width": (write("hidden-width", base(), base(), width_known_only_at_run_time),
                         f"the graph's output logits is [1, 13] for one token but its metadata describes a "
                         f"window rnn model of {V} tokens, whose logits is {V} wide"),
        "int32-tokens": (write("int32-tokens", base(), base(), int32_tokens), "inputs are tokens int32 [?, ?]"),
        "poem-card-window-graph": (write("poem-card-window-graph", base(cell="lstm"),
                                         base(cell="lstm", context="poem")),
                                   "the graph's inputs are tokens int64 [?, ?] but its metadata describes a poem lstm "
                                   f"model of {V} tokens, whose inputs are tokens int64 [?, ?], h0 float [?, {H}], "
                                   f"c0 float [?, {H}]"),
        "window-card-poem-graph": (write("window-card-poem-graph", base(context="poem"), base()),
                                   f"the graph's inputs are tokens int64 [?, ?], h0 float [?, {H}] but its metadata "
                                   "describes a window rnn model"),
        "narrow-state": (write("narrow-state", base(context="poem", cell="gru", hidden_size=H // 2),
                               base(context="poem", cell="gru")),
                         f"inputs are tokens int64 [?, ?], h0 float [?, {H // 2}] but its metadata describes a poem "
                         f"gru model of {V} tokens, whose inputs are tokens int64 [?, ?], h0 float [?, {H}]"),
    }


@pytest.mark.parametrize("name", ["narrow-logits", "hidden-width", "int32-tokens", "poem-card-window-graph",
                                  "window-card-poem-graph", "narrow-state"])
def test_a_file_whose_graph_does_not_match_its_metadata_is_refused_before_sampling(name, tmp_path, capsys):
    path, fragment = lying_files(tmp_path)[name]
    usage_error(capsys, export_generate.main, ["--model", str(path), "--words", "5"], str(path), fragment,
                "export it again")


# --- a version-1 client, as it was released, and a version-2 file ---

@pytest.fixture(scope="module")
def v1_client(tmp_path_factory) -> Path:
    """The Python client of the last version-1 commit, unpacked from git (skipped where the history is absent)."""
    folder = tmp_path_factory.mktemp("v1-client")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", V1_COMMIT, "export", "wordrnn", "data", "web"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"the repository's history lacks {V1_COMMIT[:7]}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def test_a_version_1_client_refuses_a_poem_file_and_still_reads_a_window_file(poem, v1_client, tmp_path):
    _, out = poem
    old = subprocess.run([sys.executable, "-m", "export.generate", "--model", str(out)], cwd=v1_client,
                         capture_output=True, text=True, env={"PYTHONPATH": str(v1_client), "PATH": "/usr/bin:/bin"})
    assert_usage_error(old, "follows the generation contract 'wordrnn-generation 2'",
                       "this version follows 'wordrnn-generation 1'")
    assert old.stdout == ""
    window = tmp_path / "window.onnx"
    # an LSTM: the version-1 client knows the cells of its day, and refuses later ones (rnn_relu) on their own
    assert export(make_run(tmp_path / "run", "embedding", cell="lstm"), window) == 0
    args = ["--model", str(window), "--words", "20", "--seed", "3"]
    old = subprocess.run([sys.executable, "-m", "export.generate", *args], cwd=v1_client, capture_output=True,
                         text=True, env={"PYTHONPATH": str(v1_client), "PATH": "/usr/bin:/bin"})
    assert old.returncode == 0, old.stderr
    assert old.stdout == run_module("export.generate", *args).stdout


def test_a_version_1_file_without_the_context_key_still_generates_in_python_and_node(tmp_path):
    """A window file written before wordrnn.context existed (and its config before Config.context) is a window
    model to every client of version 2."""
    from test_web import NODE, NODE_MODULES

    new = tmp_path / "new.onnx"
    assert export(make_run(tmp_path / "run", "embedding", cell="gru"), new) == 0
    model = onnx.load(str(new))
    props = {p.key: p.value for p in model.metadata_props if p.key != KEY_CONTEXT}
    config = json.loads(props["wordrnn.config"])
    for key in ("format_version", "context", "bptt"):
        del config[key]
    props["wordrnn.config"] = json.dumps(config)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    assert load(old).card.context == "window"
    args = ["--words", "30", "--seed", "2", "--prompt", "the moon"]
    want = run_module("export.generate", "--model", str(new), *args)
    got = run_module("export.generate", "--model", str(old), *args)
    assert want.returncode == got.returncode == 0 and got.stdout == want.stdout
    if NODE is not None and NODE_MODULES.is_dir():
        js = subprocess.run([NODE, "web/generate.mjs", "--model", str(old), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
        assert js.returncode == 0 and js.stdout == want.stdout, js.stderr

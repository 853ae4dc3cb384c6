"""ONNX export and onnxruntime generation (export/): round trip, metadata, generation, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_usage_error, run_module, run_python
from window_reference import logits as numpy_logits

from data.tokenizer import tokenize
from data.vocab import Vocab
from export import onnx as export_onnx
from export.graph import MIN_OPSET, build_graph
from export.metadata import KEY_CONFIG, KEY_SOURCE, KEY_TOKENIZER, KEY_VOCAB, ModelCard, from_props, to_props
from export.session import load
from wordrnn.core import tolerances
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.params import init_params
from wordrnn.core.sampling import SamplerSettings, generate
from wordrnn.run.folder import WEIGHTS, atomic_write_text, load_run, save_params, write_config
from wordrnn.run.generation import generate_text

EXPORTED_CELLS = tuple(CELLS)
WORDS = ["<unk>", "\n", "the", "sea", "is", ",", "calm", "moon", "my", "love", "rose", "night", ".", "a", "red"]
TOLERANCE = tolerances.ONNX


def make_run(folder: Path, model: str, seed: int = 1, seq_len: int = 5, framework: str = "numpy",
             cell: str = "rnn", context: str = "window") -> Path:
    """A complete run folder with seeded weights, written with wordrnn.run.folder' own writers."""
    config = Config(model=model, cell=cell, context=context, vocab_size=len(WORDS), hidden_size=16, embed_dim=8,
                    seq_len=seq_len, seed=seed)
    write_config(folder, config, framework)
    atomic_write_text(folder / "vocab.json", Vocab(WORDS, tokenizer="default", min_freq=2).to_json())
    save_params(folder / WEIGHTS, init_params(config))
    return folder


def export(run_dir: Path, out: Path, *extra: str) -> int:
    """``python -m export.onnx`` in this process (torch is imported once, not per test)."""
    try:
        return export_onnx.main(["--run", str(run_dir), "--out", str(out), *extra])
    except SystemExit as stop:
        return int(stop.code)


MODELS_AND_CELLS = [(model, cell) for cell in EXPORTED_CELLS for model in ("onehot", "embedding")]


@pytest.fixture(scope="module", params=MODELS_AND_CELLS, ids=[f"{m}-{c}" for m, c in MODELS_AND_CELLS])
def exported(request, tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, exported .onnx) for each model and cell."""
    model, cell = request.param
    folder = tmp_path_factory.mktemp(f"{model}-{cell}")
    run_dir = make_run(folder / "run", model, cell=cell)
    out = folder / "out" / "model.onnx"
    assert export(run_dir, out) == 0
    return run_dir, out


# --- the exported file ---

def test_logits_match_the_source_models_for_any_batch_and_length(exported):
    torch = pytest.importorskip("torch")

    from torchmodels.model import build_module

    run_dir, out = exported
    run, lm = load_run(run_dir), load(out)
    module = build_module(run.config, run.params).eval()
    rng = np.random.default_rng(7)
    for batch in (1, 7):
        for seq in (1, 3, 5, 12):  # 12: longer than the training window, so the axis is not frozen at seq_len
            x = rng.integers(0, len(WORDS), size=(batch, seq), dtype=np.int64)
            got = lm.logits(x)
            with torch.no_grad():
                want_torch = module(torch.from_numpy(x), last_only=True)[0].numpy()
            assert got.shape == (batch, len(WORDS)) and got.dtype == np.float32
            assert np.abs(got - want_torch).max() <= TOLERANCE
            assert np.abs(got - numpy_logits(run.params, x, cell=run.config.cell)).max() <= TOLERANCE


def test_file_is_one_self_contained_graph_of_standard_ops(exported):
    _, out = exported
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no side file, no temporary left
    model = onnx.load(str(out), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    op = CELLS[load(out).card.cell].onnx_op
    if op:
        assert [n.op_type for n in model.graph.node] == ["Gather", "Transpose", op, "Squeeze", "Gemm"]
    else:  # a cell without an op: its step as primitives inside one Scan
        assert [n.op_type for n in model.graph.node].count("Scan") == 1
    assert {n.domain for n in model.graph.node} == {""}
    (tokens,), (logits,) = model.graph.input, model.graph.output
    assert tokens.name == "tokens" and tokens.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in tokens.type.tensor_type.shape.dim] == ["batch", "seq"]
    assert logits.name == "logits" and logits.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = logits.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == len(WORDS)


def test_metadata_reads_back(exported):
    run_dir, out = exported
    run = load_run(run_dir)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props[KEY_VOCAB]) == WORDS
    assert json.loads(props[KEY_TOKENIZER]) == {"mode": "default", "min_freq": 2}
    assert json.loads(props[KEY_CONFIG]) == run.config.to_json_dict()
    assert json.loads(props[KEY_SOURCE])["framework"] == "numpy"
    card = load(out).card  # the same, through onnxruntime
    assert card.config == run.config and card.vocab.tokens == WORDS and card.framework == "numpy"


def test_greedy_generation_is_identical_in_every_runtime(exported):
    """NumPy, PyTorch, Flax and onnxruntime write the same greedy tokens from the same weights."""
    from jaxmodels.backend import JaxBackend
    from torchmodels.backend import TorchBackend

    run_dir, out = exported
    run, lm = load_run(run_dir), load(out)
    assert lm.card.cell == run.config.cell
    prompt = [int(i) for i in run.vocab.encode(tokenize("the sea is calm", "default"))]
    settings = SamplerSettings("greedy", allow_unk=True)
    want = generate(lambda x: numpy_logits(run.params, x, cell=run.config.cell), prompt, 40, run.config.seq_len,
                    settings)
    assert generate(lm.logits, prompt, 40, run.config.seq_len, settings) == want
    for backend in (TorchBackend("cpu"), JaxBackend()):
        state = backend.init(run.params, run.config)
        got = generate(lambda x, b=backend, s=state: b.logits(s, x, last_only=True)[0], prompt, 40,
                       run.config.seq_len, settings)
        assert got == want, backend.framework


def test_generate_command_prints_what_the_numpy_reference_writes(exported):
    run_dir, out = exported
    run = load_run(run_dir)
    settings = SamplerSettings(temperature=0.8, top_p=0.9, seed=5)
    want = generate_text(lambda x: numpy_logits(run.params, x, cell=run.config.cell), run.vocab,
                         run.config.seq_len, "My love is", 30, settings)
    result = run_module("export.generate", "--model", str(out), "--prompt", "My love is", "--words", "30",
                        "--temperature", "0.8", "--top-p", "0.9", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == want + "\n"


def test_generate_never_imports_torch_or_jax(exported, tmp_path):
    """Nor the onnx package: onnxruntime alone runs the file."""
    _, out = exported
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['export.generate', '--model', {str(out)!r}, '--words', '5', '--num-samples', '2']\n"
        "try:\n"
        "    runpy.run_module('export.generate', run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        "    seen = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'jax', 'jaxlib', 'flax', 'onnx'})\n"
        "    print('frameworks imported:', seen, file=sys.stderr)\n"
    )
    result = run_python(probe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "frameworks imported: []" in result.stderr, result.stderr
    assert result.stdout.count("--- sample") == 2


@pytest.mark.parametrize("opset", [MIN_OPSET, onnx.defs.onnx_opset_version()])
def test_every_offered_opset_checks_and_runs(opset, tmp_path):
    import onnxruntime as ort

    config = Config(model="embedding", vocab_size=len(WORDS), hidden_size=8, embed_dim=4)
    params = init_params(config)
    model = build_graph(params, config, opset)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    got = session.run(["logits"], {"tokens": x})[0]
    assert np.abs(got - numpy_logits(params, x)).max() <= TOLERANCE


def test_a_run_trained_by_pytorch_exports(tiny_corpus, tmp_path):
    pytest.importorskip("torch")
    from torchmodels.backend import TorchBackend
    from wordrnn.run.loop import train

    config = Config(model="onehot", data=str(tiny_corpus), min_freq=1, epochs=1, hidden_size=16,
                    batch_size=16, seed=3)
    train(config, TorchBackend("cpu"), tmp_path / "run", quiet=True, write_samples=False)
    out = tmp_path / "run.onnx"
    assert export(tmp_path / "run", out, "--opset", "21") == 0
    card = load(out).card
    assert card.framework == "torch" and card.vocab.tokens == load_run(tmp_path / "run").vocab.tokens


# --- the same interface traced from JAX (--from jax: optional, needs jax2onnx; slow) ---

@pytest.fixture(scope="module", params=MODELS_AND_CELLS, ids=[f"{m}-{c}" for m, c in MODELS_AND_CELLS])
def exported_jax(request, tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("jax2onnx")
    model, cell = request.param
    folder = tmp_path_factory.mktemp(f"jax-{model}-{cell}")
    run_dir = make_run(folder / "run", model, seed=4, framework="jax", cell=cell)
    out = folder / "out" / "model.onnx"
    assert export(run_dir, out, "--from", "jax") == 0
    return run_dir, out


@pytest.mark.slow  # jax2onnx loads all its plugins on the first export: about 30 s on a busy 2-core box
def test_jax_export_has_the_same_interface_and_logits(exported_jax):
    run_dir, out = exported_jax
    run, lm = load_run(run_dir), load(out)
    model = onnx.load(str(out), load_external_data=False)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    assert {n.domain for n in model.graph.node} == {""} and "Loop" in {n.op_type for n in model.graph.node}
    (tokens,) = model.graph.input
    assert tokens.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param for d in tokens.type.tensor_type.shape.dim] == ["batch", "seq"]
    assert "jax2onnx" in lm.card.source["exporter"] and lm.card.framework == "jax"
    rng = np.random.default_rng(8)
    cell = run.config.cell
    for batch in (1, 7):
        for seq in (1, 3, 5, 12):
            x = rng.integers(0, len(WORDS), size=(batch, seq), dtype=np.int64)
            assert np.abs(lm.logits(x) - numpy_logits(run.params, x, cell=cell)).max() <= TOLERANCE
    prompt = [int(i) for i in run.vocab.encode(["my", "love"])]
    settings = SamplerSettings("greedy", allow_unk=True)
    want = generate(lambda x: numpy_logits(run.params, x, cell=cell), prompt, 30, run.config.seq_len, settings)
    assert generate(lm.logits, prompt, 30, run.config.seq_len, settings) == want


# --- refusing bad input ---

def usage_error(capsys, main, argv: list[str], *fragments: str) -> None:
    """Exit 2 with one `error:` line holding ``fragments``, and nothing on stdout (nothing half-written)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    captured = capsys.readouterr()
    assert stop.value.code == 2, captured.err
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, captured.err
    assert all(f in lines[0] for f in fragments), (fragments, lines[0])
    assert captured.out == ""


def test_export_refuses_an_incomplete_or_missing_run_folder(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run", "embedding")
    (run_dir / WEIGHTS).unlink()
    out = tmp_path / "model.onnx"
    usage_error(capsys, export_onnx.main, ["--run", str(run_dir), "--out", str(out)], "incomplete", WEIGHTS)
    usage_error(capsys, export_onnx.main, ["--run", str(tmp_path / "nope"), "--out", str(out)], "not a run folder")
    assert not out.exists()


def test_export_refuses_weights_of_another_cell(tmp_path, capsys):
    """A run whose config names one cell and whose weights hold another: one line naming both, exit 2."""
    run_dir = make_run(tmp_path / "run", "embedding", cell="lstm")
    config = json.loads((run_dir / "config.json").read_text())
    config["cell"] = "rnn"
    atomic_write_text(run_dir / "config.json", json.dumps(config))
    out = tmp_path / "model.onnx"
    usage_error(capsys, export_onnx.main, ["--run", str(run_dir), "--out", str(out)], "lstm", "--cell rnn")
    assert not out.exists()


def test_a_file_whose_metadata_names_another_cell_is_refused(exported, tmp_path, capsys):
    from export import generate

    _, out = exported
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    config = json.loads(props[KEY_CONFIG])
    graph_cell, config["cell"] = config["cell"], {"rnn": "gru", "lstm": "rnn", "gru": "lstm",
                                                        "rnn_relu": "lstm", "mingru": "gru"}[config["cell"]]
    props[KEY_CONFIG] = json.dumps(config)
    onnx.helper.set_model_props(model, props)
    relabeled = tmp_path / "relabeled.onnx"
    onnx.save(model, str(relabeled))
    usage_error(capsys, generate.main, ["--model", str(relabeled)], f"a {graph_cell} graph",
                f"says cell {config['cell']}")


def test_export_refuses_a_bad_opset_or_a_folder_as_output(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run", "onehot")
    out = tmp_path / "model.onnx"
    usage_error(capsys, export_onnx.main, ["--run", str(run_dir), "--out", str(out), "--opset", "9"], "--opset")
    usage_error(capsys, export_onnx.main, ["--run", str(run_dir), "--out", str(tmp_path)], "is a folder")
    assert not out.exists()


def test_export_writes_nothing_when_the_logits_disagree(tmp_path, capsys, monkeypatch):
    run_dir = make_run(tmp_path / "run", "embedding")
    real = export_onnx.reference_logits

    def off_by_a_little(config, params, reference):
        name, fn = real(config, params, reference)
        return name, lambda x: fn(x) + 2 * TOLERANCE

    monkeypatch.setattr(export_onnx, "reference_logits", off_by_a_little)
    out = tmp_path / "model.onnx"
    assert export(run_dir, out) == 1
    assert "nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_export_checks_against_numpy_when_asked(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run", "onehot")
    assert export(run_dir, tmp_path / "model.onnx", "--reference", "numpy") == 0
    assert "NumPy reference" in capsys.readouterr().out


def test_generate_refuses_files_that_are_not_exported_models(tmp_path, capsys):
    from export import generate

    text = tmp_path / "poem.onnx"
    text.write_text("the sea is calm tonight\n")
    usage_error(capsys, generate.main, ["--model", str(text)], "not an ONNX model")
    usage_error(capsys, generate.main, ["--model", str(tmp_path / "missing.onnx")], "not a file")
    config = Config(model="onehot", vocab_size=len(WORDS), hidden_size=8)
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(build_graph(init_params(config), config).SerializeToString())
    usage_error(capsys, generate.main, ["--model", str(bare)], "no wordrnn metadata")


def test_metadata_that_disagrees_with_itself_is_refused():
    config = Config(model="onehot", vocab_size=len(WORDS) + 1, hidden_size=8)
    props = to_props(ModelCard(config, Vocab(WORDS), {"framework": "numpy"}))
    with pytest.raises(Exception, match="vocabulary in the metadata has"):
        from_props(props, "m.onnx")
    del props[KEY_VOCAB]
    with pytest.raises(Exception, match="lacks the metadata wordrnn.vocab"):
        from_props(props, "m.onnx")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--prompt", ""], "prompt is empty"),
    (["--prompt", "  \n "], "prompt is empty"),
    (["--prompt", "zebra quokka"], "<unk>"),
    (["--temperature", "0"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-k", "-2"], "--top-k"),
    (["--words", "0"], "--words"),
    (["--num-samples", "0"], "--num-samples"),
])
def test_generate_refuses_bad_prompts_and_sampler_values(exported, capsys, args, fragment):
    from export import generate

    _, out = exported
    usage_error(capsys, generate.main, ["--model", str(out), *args], fragment)


def test_generate_says_which_prompt_words_are_unknown(exported, capsys):
    from export import generate

    _, out = exported
    assert generate.main(["--model", str(out), "--prompt", "the zebra sea", "--words", "3"]) == 0
    captured = capsys.readouterr()
    assert "'zebra' not in the vocabulary" in captured.err
    assert captured.out.startswith("the <unk> sea")


def test_generate_cli_error_has_no_traceback(tmp_path):
    result = run_module("export.generate", "--model", str(tmp_path / "missing.onnx"))
    assert_usage_error(result, "not a file")

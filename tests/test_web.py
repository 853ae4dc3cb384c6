"""The generation contract across clients: Python and Node.js write the same poem for the same file, prompt,
settings and seed (docs/GENERATION.md); the JavaScript metadata reader agrees with onnx; python -m export.web."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, assert_usage_error, run_module
from generation_reference import draw_margin
from onnx import TensorProto, helper

from data.tokenizer import detokenize, tokenize
from data.vocab import Vocab
from export import onnx as export_onnx
from export import web as export_web
from export.metadata import VERSION_OF_CONTEXT, state_specs
from export.session import load
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.params import init_params
from wordrnn.core.sampling import (
    SamplerSettings,
    SplitMix64,
    apply_repetition_controls,
    feed_of,
    generate,
    masked_logits,
    next_token,
    probabilities,
)
from wordrnn.run.folder import WEIGHTS, atomic_write_text, save_params, write_config, write_metrics
from wordrnn.run.generation import generate_text, prompt_to_ids

NODE = shutil.which("node")
NODE_MODULES = ROOT / "node_modules" / "onnxruntime-node"
needs_node = pytest.mark.skipif(NODE is None or not NODE_MODULES.is_dir(),
                                reason="needs Node.js and the node modules (make web, or npm ci)")
MARGIN = 1e-6  # docs/GENERATION.md: a sampled token may differ only where the draw lies this close to a boundary

WORDS = ["<unk>", "\n", "the", "sea", "is", ",", "calm", "moon", "my", "love", "rose", "night", ".", "a", "red",
         "(", ")", "o'er", "caf\u00e9", "'", "!"]

# (prompt, words, strategy, temperature, top_k, top_p, seed, allow_unk): greedy and sampled, every cut, a prompt
# longer than the window, unknown words, punctuation, curly quotes, a large seed.
CASES = [
    ("the sea", 40, "greedy", 1.0, 0, 1.0, 0, False),
    ("The Sea is calm, my love (o\u2019er the rose)", 40, "greedy", 1.0, 0, 1.0, 0, True),
    ("the sea", 60, "sample", 1.0, 0, 1.0, 0, False),
    ("my love", 60, "sample", 1.0, 0, 1.0, 7, False),
    ("the moon", 60, "sample", 0.7, 0, 1.0, 2**64 - 1, False),
    ("the moon", 60, "sample", 1.5, 5, 1.0, 11, False),
    ("red rose", 60, "sample", 1.0, 0, 0.6, 3, False),
    ("red rose", 60, "sample", 0.8, 8, 0.9, 4, True),
    # the repetition controls (section 5a): the n-gram ban alone, the penalty alone, both with every cut
    ("the sea", 40, "greedy", 1.0, 0, 1.0, 0, False, 2, 1.0),
    ("the sea", 40, "greedy", 1.0, 0, 1.0, 0, False, 0, 4.0),
    ("my love", 60, "sample", 0.9, 8, 0.95, 12, False, 3, 1.2),
    ("red rose", 60, "sample", 1.0, 0, 1.0, 13, False, 1, 0.8),
    ("zebra sea quartz", 30, "sample", 1.0, 0, 1.0, 5, False),
    ("Caf\u0065\u0301 night!", 30, "sample", 1.0, 3, 1.0, 6, False),
]
KEYS = ("prompt", "words", "strategy", "temperature", "top_k", "top_p", "seed", "allow_unk", "no_repeat_ngram",
        "repetition_penalty")
# The settings a case leaves out: the repetition controls off.
CASE_DEFAULTS = {"no_repeat_ngram": 0, "repetition_penalty": 1.0}


def case_settings(case: dict) -> SamplerSettings:
    return SamplerSettings(case["strategy"], case["temperature"], case["top_k"], case["top_p"], case["seed"],
                           case["allow_unk"], case["no_repeat_ngram"], case["repetition_penalty"])


def make_model(folder: Path, cell: str, model: str = "embedding", context: str = "window", layers: int = 1) -> Path:
    config = Config(model=model, cell=cell, context=context, vocab_size=len(WORDS), hidden_size=16, embed_dim=8,
                    seq_len=4, seed=3, layers=layers)
    stacked = f"-{layers}layers" if layers > 1 else ""
    run = folder / f"run-{cell}-{model}-{context}{stacked}"
    write_config(run, config, "numpy")
    atomic_write_text(run / "vocab.json", Vocab(WORDS).to_json())
    params = init_params(config)
    params["out.weight"] = params["out.weight"] * 8  # sharper than at initialization, so greedy is not all ties
    save_params(run / WEIGHTS, params)
    write_metrics(run, [{"epoch": 1, "val_loss": 3.2, "val_ppl": 24.53},  # the card shows the best epoch's
                        {"epoch": 2, "val_loss": 3.0, "val_ppl": 20.09},
                        {"epoch": 3, "val_loss": 3.1, "val_ppl": 22.2}])
    out = folder / f"{cell}-{model}-{context}{stacked}.onnx"
    try:
        code = export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy"])
    except SystemExit as stop:
        code = stop.code
    assert code == 0
    return out


CELLS_AND_CONTEXTS = [(cell, context) for context in ("window", "poem") for cell in CELLS]
# Stacked models of every cell: 2 layers carrying their state side by side, 3 layers reading windows.
STACKED = [(cell, context, layers) for context, layers in (("poem", 2), ("window", 3)) for cell in CELLS]


@pytest.fixture(scope="module", params=CELLS_AND_CONTEXTS, ids=[f"{c}-{x}" for c, x in CELLS_AND_CONTEXTS])
def model_file(request, tmp_path_factory) -> Path:
    """One export of each cell the exporter supports, in each context."""
    cell, context = request.param
    return make_model(tmp_path_factory.mktemp(f"{cell}-{context}"), cell, context=context)


# Two of them in the fast set (a poem LSTM's two states, a window GRU), the rest with the slow tests.
FAST_STACKED = {("lstm", "poem", 2), ("gru", "window", 3)}


@pytest.fixture(scope="module", params=[pytest.param(case, marks=() if case in FAST_STACKED else pytest.mark.slow,
                                                     id=f"{case[0]}-{case[1]}-{case[2]}layers") for case in STACKED])
def stacked_file(request, tmp_path_factory) -> Path:
    """One export of a stacked model of each cell."""
    cell, context, layers = request.param
    return make_model(tmp_path_factory.mktemp(f"{cell}-{context}-{layers}"), cell, context=context, layers=layers)


@pytest.fixture(scope="module")
def rnn_file(tmp_path_factory) -> Path:
    """One export, for what does not depend on the cell (flags, bad input, the page folder)."""
    return make_model(tmp_path_factory.mktemp("rnn"), "rnn", model="onehot")


@pytest.fixture(scope="module")
def poem_file(tmp_path_factory) -> Path:
    """One poem model (the LSTM: two states), for the flags and the state's bad input."""
    return make_model(tmp_path_factory.mktemp("poem"), "lstm", context="poem")


def write_cases(model: Path, folder: Path) -> tuple[Path, list[dict]]:
    """The conformance vectors: each case with Python's token ids and text, in a JSON file clients read."""
    lm = load(model)
    cases = []
    for values in CASES:
        case = {**CASE_DEFAULTS, **dict(zip(KEYS, values))}
        settings = case_settings(case)
        seq_len = lm.card.config.seq_len
        text = generate_text(lm.source, lm.card.vocab, seq_len, case["prompt"], case["words"], settings)
        ids = generate(lm.source, prompt_to_ids(case["prompt"], lm.card.vocab), case["words"], seq_len, settings)
        cases.append({**case, "expected": {"ids": ids, "text": text}})
    path = folder / f"{model.stem}-cases.json"
    # Seeds as decimal strings: a JSON number loses the low bits of a 64-bit seed in JavaScript.
    written = [{**case, "seed": str(case["seed"])} for case in cases]
    path.write_text(json.dumps({"model": str(model), "cases": written}, ensure_ascii=False))
    return path, cases


def first_difference_margin(model: Path, case: dict, got: list[int]) -> tuple[int, float] | None:
    """Where ``got`` first differs from Python's tokens: the step and how close Python's draw was to a boundary."""
    lm = load(model)
    settings = case_settings(case)
    ids = prompt_to_ids(case["prompt"], lm.card.vocab)
    feed = feed_of(lm.source, lm.card.config.seq_len)
    logits = feed(list(ids))
    rng = SplitMix64(case["seed"])
    for step, token in enumerate(got):
        z = apply_repetition_controls(masked_logits(logits, settings), ids, settings)
        if settings.strategy == "greedy":
            want = int(np.argmax(z))
            if want != token:
                return step, 0.0
        else:
            p, u = probabilities(z, settings), rng.random()
            want = int(np.searchsorted(np.cumsum(p), u * np.cumsum(p)[-1], side="right"))
            if want != token:
                return step, draw_margin(p, u)
        ids.append(token)
        logits = feed([token])
    return None


def node(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- conformance: Python and Node.js


def node_reproduces_the_vectors(model_file: Path, tmp_path: Path) -> list[dict]:
    """Python writes the conformance vectors of ``model_file``; Node.js writes each the same, token for token (a
    sampled text may part only at a draw within the contract's margin). Node's results come back."""
    cases_file, cases = write_cases(model_file, tmp_path)
    result = node("web/conformance.mjs", "cases", str(cases_file))
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    assert len(results) == len(cases)
    for case, got in zip(cases, results):
        assert "error" not in got, (case["prompt"], got)
        if got["ids"] != case["expected"]["ids"]:  # onnxruntime-node gives Python's logits: this should not happen
            step, margin = first_difference_margin(model_file, case, got["ids"])
            assert case["strategy"] == "sample" and margin <= MARGIN, (case, step, margin)
            continue
        assert got["text"] == case["expected"]["text"]
    return results


@needs_node
def test_python_writes_the_vectors_and_node_reproduces_them_token_for_token(model_file, tmp_path):
    results = node_reproduces_the_vectors(model_file, tmp_path)
    assert len({r["text"] for r in results}) == len(results)  # the cases are not all one poem


@needs_node
def test_node_reproduces_the_vectors_of_a_stacked_model(stacked_file, tmp_path):
    """The client learns a stacked model's state width ([B, L*H]) from the file and needs nothing else."""
    card = load(stacked_file).card
    assert card.config.layers > 1
    assert all(spec.size == card.config.layers * card.config.hidden_size for spec in state_specs(card.config))
    results = node_reproduces_the_vectors(stacked_file, tmp_path)
    assert len({r["text"] for r in results}) == len(results)


def test_the_vectors_exercise_what_they_claim(model_file, tmp_path):
    _, cases = write_cases(model_file, tmp_path)
    lm = load(model_file)
    for case in cases:
        ids = case["expected"]["ids"]
        assert len(ids) == case["words"] and None not in ids
        if not case["allow_unk"]:
            assert 0 not in ids
    assert any(1 in c["expected"]["ids"] for c in cases)  # line breaks are written somewhere
    controlled = [c for c in cases if c["no_repeat_ngram"] or c["repetition_penalty"] != 1.0]
    assert len(controlled) == 4 and all(c["expected"]["ids"] != cases[0]["expected"]["ids"] for c in controlled[:2])
    banned = controlled[0]  # greedy without a repeated bigram, prompt included
    text_ids = prompt_to_ids(banned["prompt"], lm.card.vocab) + banned["expected"]["ids"]
    bigrams = list(zip(text_ids, text_ids[1:]))
    assert len(bigrams) == len(set(bigrams))
    assert "caf\u00e9 night!" in cases[-1]["expected"]["text"]  # NFC: the decomposed é is the vocabulary's
    assert cases[-2]["expected"]["text"].startswith("<unk> sea <unk>")
    assert len(lm.card.vocab) == len(WORDS)


@needs_node
@pytest.mark.parametrize("flags", [
    ("--strategy", "greedy"),
    ("--seed", "3", "--num-samples", "3"),
    ("--temperature", "0.7", "--top-k", "5", "--top-p", "0.9", "--seed", "18446744073709551613", "--num-samples", "2"),
    ("--prompt", "zebra (the) sea, o\u2019er", "--allow-unk", "--words", "90"),
    ("--no-repeat-ngram", "2", "--repetition-penalty", "1.5", "--seed", "4", "--top-k", "6"),
])
@pytest.mark.parametrize("which", ["rnn_file", "poem_file"])
def test_node_cli_prints_what_python_prints(which, flags, request):
    args = ("--model", str(request.getfixturevalue(which)), "--prompt", "the moon", "--words", "50", *flags)
    python = run_module("export.generate", *args)
    js = node("web/generate.mjs", *args)
    assert python.returncode == js.returncode == 0, (python.stderr, js.stderr)
    assert js.stdout == python.stdout and js.stderr == python.stderr


@needs_node
@pytest.mark.parametrize("flags, fragment", [
    (("--prompt", "  "), "the prompt is empty"),
    (("--prompt", "zebra quartz"), "unknown to this model"),
    (("--seed", "-1"), "--seed"),
    (("--seed", str(2**64)), "--seed"),
    (("--top-p", "0"), "--top-p"),
    (("--temperature", "0"), "--temperature"),
    (("--words", "0"), "--words"),
    (("--top-k", "x"), "--top-k"),
])
def test_node_cli_refuses_bad_input(rnn_file, flags, fragment):
    assert_usage_error(node("web/generate.mjs", "--model", str(rnn_file), *flags), fragment)


@needs_node
def test_node_refuses_a_file_whose_graph_does_not_match_its_metadata_as_python_does(tmp_path):
    from test_export_poem import lying_files

    for path, fragment in lying_files(tmp_path).values():
        js = node("web/generate.mjs", "--model", str(path), "--words", "5")
        assert_usage_error(js, str(path), fragment)
        assert js.stdout == "" and js.stderr == run_module("export.generate", "--model", str(path)).stderr


def node_module(script: str) -> subprocess.CompletedProcess:
    """An ES module script run by Node.js from the repository root (imports resolve against node_modules)."""
    return subprocess.run([NODE, "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def old_client_reads(commit: str, paths: list[Path], field: str, tmp_path: Path) -> list:
    """What the JavaScript client of ``commit`` (taken from git) reads of each file: its card's ``field``, or the
    message it refuses the file with. Skipped where the repository's history lacks the commit."""
    old = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:web/wordrnn.mjs"], capture_output=True,
                         text=True)
    if old.returncode != 0:
        pytest.skip(f"the repository's history lacks {commit[:7]}")
    client = tmp_path / f"wordrnn-{commit[:7]}.mjs"  # the old module imports nothing: it runs from anywhere
    client.write_text(old.stdout)
    script = f"""
import {{ readFileSync }} from "node:fs";
import {{ cardFromMetadata, readMetadata }} from {json.dumps(client.as_uri())};
const out = [];
for (const path of {json.dumps([str(p) for p in paths])}) {{
  try {{ out.push(cardFromMetadata(readMetadata(readFileSync(path), path), path).{field}); }}
  catch (err) {{ out.push(err.message); }}
}}
process.stdout.write(JSON.stringify(out));
"""
    result = node_module(script)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_node
def test_node_refuses_a_poem_model_fed_without_its_state_or_with_the_wrong_width(poem_file):
    script = f"""
import {{ readFileSync }} from "node:fs";
import * as ort from "onnxruntime-node";
import {{ WordrnnModel, generateText, samplerSettings }} from "./web/wordrnn.mjs";
const model = await WordrnnModel.load(ort, readFileSync({json.dumps(str(poem_file))}), "poem.onnx");
const narrow = model.zeroState().map(() => new ort.Tensor("float32", new Float32Array(15), [1, 15]));
const out = [];
for (const state of [undefined, narrow, model.zeroState().slice(1)]) {{
  try {{ await model.run([2, 3], state); out.push("ran"); }} catch (err) {{ out.push(err.message); }}
}}
const logits = (await model.run([2, 3], model.zeroState())).logits;
out.push(logits.length);
const fed = [];  // what generation feeds the session: the prompt once, then one token a step
const run = model.session.run.bind(model.session);
model.session.run = (feeds) => {{ fed.push(feeds.tokens.dims.join("x")); return run(feeds); }};
await generateText(model, "the sea is calm", 30, samplerSettings({{ seed: 1n }}));
out.push(fed);
process.stdout.write(JSON.stringify(out));
"""
    result = node_module(script)
    assert result.returncode == 0, result.stderr
    *messages, width, fed = json.loads(result.stdout)
    assert width == len(WORDS)
    assert fed == ["1x4"] + ["1x1"] * 29
    want = ("poem.onnx is a poem model: it needs its state h0 float32 [1, 16], c0 float32 [1, 16] beside the tokens, "
            "got ")
    assert messages == [want + "no state; start a poem from zeroState()",
                        want + "float32 [1, 15], float32 [1, 15]; start a poem from zeroState()",
                        want + "float32 [1, 16]; start a poem from zeroState()"]


@needs_node
def test_a_version_1_javascript_client_refuses_a_poem_file(poem_file, rnn_file, tmp_path):
    from test_export_poem import V1_COMMIT

    poem_message, window_seq_len = old_client_reads(V1_COMMIT, [poem_file, rnn_file], "seqLen", tmp_path)
    assert poem_message == (f"{poem_file} follows the generation contract 'wordrnn-generation 2'; this version "
                            "follows 'wordrnn-generation 1'")
    assert window_seq_len == 4  # the same old client still reads today's window files


@pytest.mark.parametrize("flags", [
    ("--words", "-5"),
    ("--num-samples", "-2"),
    ("--strategy", "greedy", "--num-samples", "2"),
    ("--no-repeat-ngram", "-1"),
    ("--repetition-penalty", "0"),
    ("--repetition-penalty", "-1.5"),
])
def test_node_cli_refuses_what_python_refuses_with_the_same_line(rnn_file, flags):
    args = ("--model", str(rnn_file), *flags)
    python, js = run_module("export.generate", *args), node("web/generate.mjs", *args)
    assert_usage_error(python)
    assert_usage_error(js)
    assert js.stderr == python.stderr


# Characters where languages' defaults part: Python-only and JavaScript-only whitespace, combining marks, final
# sigma, dotted capital I, astral letters and digits, curly quotes, CR/LF, underscores, apostrophes.
TRICKY = list("ab Z\u00c9e\u0301'\u2019\u201c\u201d\",.;:!?()[]{}-_7\u0663 \t\r\n\x1c\x1f\x85\u00a0\u2028"
              "\u3000\ufeff\u200b\u03a3\u0130\u00df") + ["\U0001d400", "\U0001f600", "\r\n", "\n\n", "o'er"]
TEXTS = ["O my Luve\u2019s like a red, red rose\r\nThat\u2019s newly sprung;\n\n\n\nNew stanza", "",
         "  \n\n leading and trailing \n \n\n", "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u0130stanbul",
         "snake_case and (brackets) [x] {y} 'quoted' \"twice\"", "caf\u00e9 vs cafe\u0301, na\u00efve n't 's"]


@needs_node
def test_node_tokenizes_and_detokenizes_as_python(tmp_path):
    rng = np.random.default_rng(0)
    texts = TEXTS + ["".join(rng.choice(TRICKY, size=rng.integers(1, 40))) for _ in range(400)]
    path = tmp_path / "texts.json"
    path.write_text(json.dumps({"texts": texts}))
    result = node("web/conformance.mjs", "tokenize", str(path))
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    for mode in ("default", "whitespace"):
        for text, (tokens, joined) in zip(texts, got[mode]):
            assert tokens == tokenize(text, mode), (mode, text)
            assert joined == detokenize(tokens), (mode, text)


def sampler_rows(rng: np.random.Generator) -> list[dict]:
    """Logits with many ties (whole numbers), settings across every cut, a one-token vocabulary."""
    rows = []
    for i in range(300):
        v = int(rng.choice([1, 2, 5, 50, 400]))
        logits = (rng.integers(-3, 4, v) if i % 2 else rng.standard_normal(v) * 3).astype(np.float32)
        rows.append({"logits": logits.tolist(), "strategy": "greedy" if i % 5 == 0 else "sample",
                     "temperature": float(rng.choice([0.3, 1.0, 1.7])), "top_k": int(rng.choice([0, 0, 1, 3, 10])),
                     "top_p": float(rng.choice([1.0, 1.0, 0.5, 0.9, 0.999])),
                     "seed": str(int(rng.integers(0, 2**63)) * 2),
                     "allow_unk": bool(i % 3 == 0), "draws": 20})
    return rows


@needs_node
def test_node_sampler_picks_pythons_tokens_from_the_same_logits(tmp_path):
    rows = sampler_rows(np.random.default_rng(1))
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": rows}))
    result = node("web/conformance.mjs", "sampler", str(path))
    assert result.returncode == 0, result.stderr
    for row, got in zip(rows, json.loads(result.stdout), strict=True):
        settings = SamplerSettings(row["strategy"], row["temperature"], row["top_k"], row["top_p"], int(row["seed"]),
                                   row["allow_unk"])
        rng = SplitMix64(settings.seed)
        logits = np.asarray(row["logits"], np.float32)
        assert got == [next_token(logits, settings, rng) for _ in range(row["draws"])], row


# ---------------------------------------------------------------- the metadata reader against onnx


def onnx_props(path: Path) -> dict[str, str] | None:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx raises protobuf's DecodeError and others for a file it cannot parse
        return None
    return {p.key: p.value for p in model.metadata_props}


def foreign_files(folder: Path, export: Path) -> list[Path]:
    """Truncated exports, a model without our metadata, one with foreign metadata, text and random bytes."""
    payload = export.read_bytes()
    # Cuts at field boundaries (the file without its last metadata entries: onnx reads these) and inside fields.
    boundaries = {1, 3, len(payload) // 2, len(payload) - 7, len(payload) - 1}
    for kept in (0, 3):
        model = onnx.load_from_string(payload)
        del model.metadata_props[kept:]
        prefix = model.SerializeToString()
        assert payload.startswith(prefix)  # fields are written in field-number order, metadata (14) last
        boundaries.add(len(prefix))
    files = []
    for cut in sorted(boundaries):
        files.append(folder / f"cut-{cut}.onnx")
        files[-1].write_bytes(payload[:cut])
    node_ = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node_], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = helper.make_model(graph)
    files.append(folder / "plain.onnx")
    onnx.save(plain, str(files[-1]))
    helper.set_model_props(plain, {"author": "someone", "wordrnn.format": "1", "\u00e9t\u00e9": "\u2603"})
    files.append(folder / "foreign-metadata.onnx")
    onnx.save(plain, str(files[-1]))
    files.append(folder / "poem.txt")
    files[-1].write_text("the sea is calm tonight\n")
    files.append(folder / "random.bin")
    files[-1].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files.append(folder / "empty.onnx")
    files[-1].write_bytes(b"")
    return files


@needs_node
def test_metadata_reader_agrees_with_onnx_on_exports_and_foreign_files(model_file, tmp_path):
    files = [model_file, *foreign_files(tmp_path, model_file)]
    result = node("web/conformance.mjs", "metadata", *map(str, files))
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    assert read[str(model_file)]["props"]["wordrnn.generation"] == VERSION_OF_CONTEXT[load(model_file).card.context]
    for path in files:
        want, got = onnx_props(path), read[str(path)]
        if want is not None:
            assert got.get("props") == want, path.name  # where onnx reads the file, the reader reads the same
        else:
            assert "is not an ONNX model" in got.get("error", ""), (path.name, got)  # else a clear refusal
    assert "error" in read[str(tmp_path / f"cut-{len(model_file.read_bytes()) - 1}.onnx")]


@needs_node
def test_node_cli_refuses_foreign_and_damaged_files(rnn_file, tmp_path):
    files = {f.name: f for f in foreign_files(tmp_path, rnn_file)}
    assert_usage_error(node("web/generate.mjs", "--model", str(files["plain.onnx"])), "has no wordrnn metadata")
    assert_usage_error(node("web/generate.mjs", "--model", str(files["foreign-metadata.onnx"])), "lacks the metadata")
    assert_usage_error(node("web/generate.mjs", "--model", str(files["random.bin"])), "not an ONNX model")
    assert_usage_error(node("web/generate.mjs", "--model", str(tmp_path / "missing.onnx")), "is not a file")


# ---------------------------------------------------------------- python -m export.web


def test_export_web_without_node_modules_says_how_to_install_them(rnn_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export_web, "ORT_DIST", tmp_path / "nowhere")
    with pytest.raises(SystemExit) as stop:
        export_web.main(["--model", str(rnn_file), "--out", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "make web" in err and "npm ci" in err
    assert not (tmp_path / "site").exists()


@pytest.mark.skipif(not (export_web.ORT_DIST / export_web.ORT_FILES[0]).is_file(),
                    reason="needs onnxruntime-web in node_modules (make web, or npm ci)")
def test_export_web_writes_a_self_contained_folder_and_refuses_bad_input(rnn_file, tmp_path):
    site = tmp_path / "site"
    result = run_module("export.web", "--model", str(rnn_file), "--out", str(site))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in site.iterdir()) == sorted(
        [*export_web.PAGE_FILES, *export_web.ORT_FILES, export_web.MODEL_NAME])
    assert (site / "model.onnx").read_bytes() == rnn_file.read_bytes()
    for page in ("index.html", "app.mjs"):  # no request to any other host
        assert "http://" not in (site / page).read_text() and "https://" not in (site / page).read_text()
    assert_usage_error(run_module("export.web", "--model", str(rnn_file), "--out", str(site)), "--overwrite")
    assert run_module("export.web", "--model", str(rnn_file), "--out", str(site), "--overwrite").returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no staging folder left behind
    text = tmp_path / "poem.txt"
    text.write_text("the sea")
    assert_usage_error(run_module("export.web", "--model", str(text), "--out", str(tmp_path / "b")), "not an ONNX")
    assert_usage_error(run_module("export.web", "--model", str(rnn_file), "--out", str(text / "x")), "is a file")
    assert not (tmp_path / "b").exists()


def test_no_python_command_needs_node(rnn_file, tmp_path):
    env = {"PATH": "/nonexistent", "PYTHONPATH": str(ROOT), "HOME": os.environ.get("HOME", "/tmp")}
    result = run_module("export.generate", "--model", str(rnn_file), "--words", "5", env=env)
    assert result.returncode == 0 and result.stdout.startswith("the")


@needs_node
@pytest.mark.slow  # two benchmark-size exports and six measured texts per client: about 30 s on a busy 2-core box
def test_web_speed_puts_the_poem_model_beside_the_window_model():
    result = run_module("wordrnn.bench.web_speed", "--tokens", "80", "--no-browser", "--cell", "lstm")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("Python", "Node.js"))]
    assert [(r[0], r[2]) for r in rows] == [("Python", "window"), ("Node.js", "window"), ("Python", "poem"),
                                            ("Node.js", "poem")]
    for row in rows:  # tokens/s greedy and sampled, the ratio to the window model, us early and late, their ratio
        numbers = [float(x.rstrip("x")) for x in row[3:]]
        assert len(numbers) == 6 and all(n > 0 for n in numbers), row
    assert "us@20" in result.stdout and "us@80" in result.stdout

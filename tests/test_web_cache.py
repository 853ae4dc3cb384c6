"""The neural cache in the generation contract (docs/GENERATION.md, version 4): export writes the setting for
scoring and the one for writing, Python, Node.js and the page apply the writing one identically, --no-cache turns
it off, version-3 files (one setting for both) still load and write as before, and files that misstate it are
refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_usage_error, run_module, the_page
from generation_reference import cache_log_probs
from test_web import (
    NODE,
    NODE_MODULES,
    WORDS,
    make_model,
    needs_node,
    node,
    node_module,
    node_reproduces_the_vectors,
    old_client_reads,
    write_cases,
)

from export import onnx as export_onnx
from export.metadata import GENERATION, GENERATION_CACHE, GENERATION_WRITE, KEY_CACHE, KEY_CACHE_WRITE, KEY_GENERATION
from export.session import load
from wordrnn.core.cache import CacheSettings, CacheSetup
from wordrnn.core.sampling import SamplerSettings, generate
from wordrnn.run.folder import load_run
from wordrnn.run.generation import prompt_to_ids

CACHE = ("--cache-size", "12", "--cache-theta", "0.5", "--cache-lambda", "0.4")
WRITE = ("--cache-write-lambda", "0.1")  # the weight generation applies, apart from the scoring one
SCORING, WRITING = CacheSettings(12, 0.5, 0.4), CacheSettings(12, 0.5, 0.1)
PRE_CACHE_COMMIT = "af12d7a"  # the last commit whose clients know versions 1 and 2 only
PRE_WRITE_COMMIT = "778f7e6"  # the last commit whose clients know versions 1 to 3 only


def export(run: Path, out: Path, *flags: str) -> int:
    try:
        return export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy", *flags])
    except SystemExit as stop:
        return int(stop.code)


@pytest.fixture(scope="module", params=["lstm", "gru"])
def cached(request, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the run folder, its export without a cache, its export with one) of a small poem model."""
    cell = request.param
    folder = tmp_path_factory.mktemp(f"cache-{cell}")
    plain = make_model(folder, cell, context="poem")
    run = folder / f"run-{cell}-embedding-poem"
    out = folder / f"{cell}-cached.onnx"
    assert export(run, out, *CACHE, *WRITE) == 0
    return run, plain, out


@pytest.fixture(scope="module")
def version_3(cached, tmp_path_factory) -> Path:
    """The cached file as version 3 wrote it: one cache (the scoring one), for scoring and writing alike."""
    _, _, with_cache = cached
    return rewrite(with_cache, tmp_path_factory.mktemp("v3") / "v3.onnx", wordrnn_generation=GENERATION_CACHE,
                   wordrnn_cache_write=None)


def test_export_writes_the_scoring_and_the_writing_cache_and_version_4_only_when_asked(cached):
    _, plain, with_cache = cached
    props = {p.key: p.value for p in onnx.load(with_cache).metadata_props}
    assert props[KEY_GENERATION] == GENERATION_WRITE
    assert json.loads(props[KEY_CACHE]) == {"size": 12, "theta": 0.5, "lambda": 0.4}
    assert json.loads(props[KEY_CACHE_WRITE]) == {"size": 12, "theta": 0.5, "lambda": 0.1}
    assert load(with_cache).card.cache == CacheSetup(SCORING, WRITING)
    assert load(with_cache).cache == WRITING  # what generation applies
    plain_props = {p.key: p.value for p in onnx.load(plain).metadata_props}
    assert plain_props[KEY_GENERATION] == GENERATION and KEY_CACHE not in plain_props
    assert KEY_CACHE_WRITE not in plain_props
    assert load(plain).card.cache is None


def test_export_writes_a_null_writing_cache_for_a_weight_of_0_and_the_scoring_one_by_default(cached, tmp_path):
    run, _, _ = cached
    assert export(run, tmp_path / "none.onnx", *CACHE, "--cache-write-lambda", "0") == 0
    props = {p.key: p.value for p in onnx.load(tmp_path / "none.onnx").metadata_props}
    assert props[KEY_GENERATION] == GENERATION_WRITE and props[KEY_CACHE_WRITE] == "null"
    assert load(tmp_path / "none.onnx").card.cache == CacheSetup(SCORING, None)
    assert load(tmp_path / "none.onnx").cache is None
    assert export(run, tmp_path / "same.onnx", *CACHE) == 0
    assert load(tmp_path / "same.onnx").card.cache == CacheSetup(SCORING, SCORING)


def test_a_version_3_file_still_loads_with_its_one_cache_for_writing(version_3):
    lm = load(version_3)
    assert lm.card.cache == CacheSetup(SCORING, SCORING, 3) and lm.cache == SCORING


def greedy_against_the_whole_poem_mixture(run: Path, model: Path, cache: CacheSettings) -> None:
    """Greedy tokens from ``model`` (through export.session) held to the argmax of ``cache``'s mixture computed
    over the whole text at once from the NumPy reference's hidden states: the feed (one token a step, the prompt
    too) reads the right state at each step."""
    from scratch.sequence import forward

    lm = load(model)
    settings = SamplerSettings(strategy="greedy")
    prompt = prompt_to_ids("the sea is calm , my love", lm.card.vocab)
    ids = generate(lm.source, prompt, 40, lm.card.config.seq_len, settings)
    text = np.asarray(prompt + ids)
    logits, _, trace = forward(load_run(run).params, text[None], lm.card.config.cell)
    log_probs = logits[0] - np.log(np.exp(logits[0].astype(np.float64)).sum(axis=1, keepdims=True))
    rows = cache_log_probs(trace["top"][0], text, log_probs, cache)[len(prompt) - 1:-1].copy()
    rows[:, 0] = -np.inf  # <unk> is never written
    assert rows.argmax(axis=1).tolist() == ids


def test_generation_applies_the_writing_cache_and_a_version_3_file_its_one_cache(cached, version_3):
    """The version-4 file writes with its writing weight, the version-3 file with its one cache as version 3 did
    (the scoring weight here), and the two texts differ: the setting read is the one applied."""
    run, _, with_cache = cached
    greedy_against_the_whole_poem_mixture(run, with_cache, WRITING)
    greedy_against_the_whole_poem_mixture(run, version_3, SCORING)
    v4, v3, no_cache = load(with_cache), load(version_3), load(with_cache)
    no_cache.cache = None  # --no-cache: the model's own probabilities
    prompt = prompt_to_ids("the sea is calm , my love", v4.card.vocab)
    texts = [generate(lm.source, prompt, 40, v4.card.config.seq_len, SamplerSettings(seed=1))
             for lm in (v4, v3, no_cache)]
    assert len({tuple(t) for t in texts}) == 3  # a tiny model writes one token over and over at greedy


@needs_node
def test_node_reproduces_the_cached_vectors_token_for_token(cached, tmp_path):
    _, _, with_cache = cached
    node_reproduces_the_vectors(with_cache, tmp_path)


@needs_node
def test_node_reproduces_a_version_3_files_vectors_token_for_token(version_3, tmp_path):
    node_reproduces_the_vectors(version_3, tmp_path)


@needs_node
@pytest.mark.parametrize("flags", [
    ("--strategy", "greedy"),
    ("--strategy", "greedy", "--no-cache"),
    ("--seed", "3", "--num-samples", "2", "--temperature", "0.8", "--top-p", "0.9", "--repetition-penalty", "1.3"),
    ("--no-repeat-ngram", "2", "--top-k", "6", "--seed", "5"),
])
def test_node_cli_prints_what_python_prints_with_and_without_the_cache(cached, flags):
    _, plain, with_cache = cached
    args = ("--model", str(with_cache), "--prompt", "the moon", "--words", "50", *flags)
    python, js = run_module("export.generate", *args), node("web/generate.mjs", *args)
    assert python.returncode == js.returncode == 0, (python.stderr, js.stderr)
    assert js.stdout == python.stdout and js.stderr == python.stderr
    if "--no-cache" in flags:  # off: the text of the same weights exported without a cache
        assert run_module("export.generate", "--model", str(plain), *args[2:-1]).stdout == python.stdout


@needs_node
def test_node_feeds_the_prompt_one_token_at_a_time_when_the_cache_is_on(cached):
    _, _, with_cache = cached
    script = f"""
import {{ readFileSync }} from "node:fs";
import * as ort from "onnxruntime-node";
import {{ WordrnnModel, generateText, samplerSettings }} from "./web/wordrnn.mjs";
const model = await WordrnnModel.load(ort, readFileSync({json.dumps(str(with_cache))}), "m.onnx");
const fed = [];
const run = model.session.run.bind(model.session);
model.session.run = (feeds) => {{ fed.push(feeds.tokens.dims.join("x")); return run(feeds); }};
await generateText(model, "the sea is calm", 10, samplerSettings({{ seed: 1n }}));
process.stdout.write(JSON.stringify([model.card.cache, fed]));
"""
    result = node_module(script)
    assert result.returncode == 0, result.stderr
    cache, fed = json.loads(result.stdout)
    assert cache == {"scoring": {"size": 12, "theta": 0.5, "lambda": 0.4},
                     "writing": {"size": 12, "theta": 0.5, "lambda": 0.1}, "version": 4}
    assert fed == ["1x1"] * (4 + 9)


@pytest.mark.parametrize("flags, fragment", [
    (CACHE[:4], "needs all of --cache-size, --cache-theta and --cache-lambda"),
    (("--cache-size", "0", *CACHE[2:]), "the cache size is a whole number"),
    ((*CACHE[:4], "--cache-lambda", "1"), "lambda (weight) lies strictly between 0 and 1"),
    ((*CACHE, "--cache-write-lambda", "1"), "--cache-write-lambda is the cache's weight when writing, from 0"),
    ((*CACHE, "--cache-write-lambda", "nan"), "--cache-write-lambda is the cache's weight when writing, from 0"),
    (WRITE, "needs all of --cache-size, --cache-theta and --cache-lambda (--cache-write-lambda sets only"),
    (("--cache-auto", *WRITE), "--cache-auto chooses --cache-size, --cache-theta, --cache-lambda and"),
])
def test_export_refuses_bad_cache_flags_in_one_line(cached, flags, fragment, tmp_path):
    run, _, _ = cached
    result = run_module("export.onnx", "--run", str(run), "--out", str(tmp_path / "m.onnx"), *flags)
    assert_usage_error(result, fragment)
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_a_cache_for_a_window_model_in_one_line(tmp_path):
    make_model(tmp_path, "rnn")
    result = run_module("export.onnx", "--run", str(tmp_path / "run-rnn-embedding-window"), "--out",
                        str(tmp_path / "w.onnx"), *CACHE)
    assert_usage_error(result, "--cache-* needs a poem model", "window model starts every window from a zero state")
    assert "Traceback" not in result.stderr


def rewrite(source: Path, out: Path, **props: str | None) -> Path:
    """A copy of ``source`` with some metadata entries replaced (None: removed)."""
    model = onnx.load(source)
    kept = {p.key: p.value for p in model.metadata_props}
    for key, value in props.items():
        kept.pop(key.replace("_", "."), None)
        if value is not None:
            kept[key.replace("_", ".")] = value
    del model.metadata_props[:]
    for key, value in kept.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, out)
    return out


@pytest.mark.parametrize("edit, fragment", [
    ({"wordrnn_generation": GENERATION}, "follows 'wordrnn-generation 2' but holds wordrnn.cache"),
    ({"wordrnn_cache": None}, "follows 'wordrnn-generation 4' but lacks wordrnn.cache"),
    ({"wordrnn_cache_write": None}, "follows 'wordrnn-generation 4' but lacks wordrnn.cache.write"),
    ({"wordrnn_generation": GENERATION_CACHE}, "follows 'wordrnn-generation 3' but holds wordrnn.cache.write"),
    ({"wordrnn_cache_write": '{"size": 4}'}, "wordrnn.cache.write is {\"size\":4}, not an object of size, theta"),
    ({"wordrnn_cache_write": '{"size": 4, "theta": 0.1, "lambda": 0}'}, "lambda (weight) lies strictly between"),
    ({"wordrnn_cache": '{"size": 4, "theta": 0.1}'}, "not an object of size, theta and lambda"),
    ({"wordrnn_cache": '{"size": 4, "theta": -1, "lambda": 0.2}'}, "theta (flatness) is a finite number >= 0"),
])
def test_a_file_that_misstates_its_cache_is_refused_alike_in_python_and_node(cached, edit, fragment, tmp_path):
    _, _, with_cache = cached
    bad = rewrite(with_cache, tmp_path / "bad.onnx", **edit)
    python = run_module("export.generate", "--model", str(bad), "--words", "5")
    assert_usage_error(python, str(bad), fragment)
    if NODE is not None and NODE_MODULES.is_dir():
        js = node("web/generate.mjs", "--model", str(bad), "--words", "5")
        assert js.returncode == 2 and js.stderr == python.stderr


@needs_node
def test_a_version_2_client_refuses_a_cached_file(cached, tmp_path):
    _, plain, with_cache = cached
    message, context = old_client_reads(PRE_CACHE_COMMIT, [with_cache, plain], "context", tmp_path)
    assert message == (f"{with_cache} follows the generation contract 'wordrnn-generation 4'; this version follows "
                       "'wordrnn-generation 1' and 'wordrnn-generation 2'")
    assert context == "poem"
    assert len(WORDS) == len(load(plain).card.vocab)


@needs_node
def test_a_version_3_client_refuses_a_version_4_file_and_reads_a_version_3_one(cached, version_3, tmp_path):
    _, _, with_cache = cached
    message, cache = old_client_reads(PRE_WRITE_COMMIT, [with_cache, version_3], "cache", tmp_path)
    assert message == (f"{with_cache} follows the generation contract 'wordrnn-generation 4'; this version follows "
                       "'wordrnn-generation 1', 'wordrnn-generation 2' and 'wordrnn-generation 3'")
    assert cache == {"size": 12, "theta": 0.5, "lambda": 0.4}


@pytest.mark.slow
def test_the_page_writes_pythons_cached_poem(cached, tmp_path):
    """The page (onnxruntime-web, the same web/wordrnn.mjs) applies the file's cache as Python does."""
    page_of, _, assert_page_writes = the_page()
    _, _, with_cache = cached
    _, cases = write_cases(with_cache, tmp_path)
    with page_of(with_cache, tmp_path / "site") as page:
        assert ("neural cachescored with the last 12 positions, theta 0.5, lambda 0.4; writes with the last 12 "
                "positions, theta 0.5, lambda 0.1") in page.text_content("#card")
        assert_page_writes(page, with_cache, cases)


@needs_node
def test_node_computes_the_cache_row_as_python_does(tmp_path):
    """The cache's arithmetic alone, without a model: JavaScript's rows are Python's to the last few bits, on
    random states, a flat and a sharp recall, a tiny and a large weight, and a window smaller than the text."""
    from wordrnn.core.cache import NeuralCache

    rng = np.random.default_rng(4)
    rows, want = [], []
    for size, theta, lam, T in [(3, 0.5, 0.3, 8), (50, 0.0, 0.01, 20), (5, 40.0, 0.9, 12), (1, 1.0, 0.5, 2),
                                (10, 2.0, 0.2, 1)]:
        hidden = rng.standard_normal((T, 16)).astype(np.float32)
        tokens = rng.integers(0, 6, size=T).tolist()  # few distinct tokens: the cache's sums add several weights
        logits = (rng.standard_normal(30) * 4).astype(np.float32)
        cache = NeuralCache(CacheSettings(size, theta, lam))
        for token, h in zip(tokens, hidden):
            cache.read(token, h)
        want.append(cache.mix(logits))
        rows.append({"logits": logits.tolist(), "tokens": tokens, "hidden": hidden.tolist(), "size": size,
                     "theta": theta, "lambda": lam})
    path = tmp_path / "cache-rows.json"
    path.write_text(json.dumps({"rows": rows}))
    result = node("web/conformance.mjs", "cache", str(path))
    assert result.returncode == 0, result.stderr
    got = [np.array([-np.inf if v is None else v for v in row]) for row in json.loads(result.stdout)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=0)
    assert not np.allclose(want[0], want[0][0])  # the rows are not flat: the comparison means something

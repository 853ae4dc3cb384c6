"""Every runtime reads every kind of run the same way (docs/GENERATION.md, "How each runtime reads a model").

For a window run, a poem run, a poem ensemble and a poem ensemble exported with ``--cache-auto``: the NumPy
reference reading the run folder (``python -m scratch.generate``, which takes the export's cache flags) writes
the conformance vectors of the exported file token for token, as onnxruntime in Python, Node.js and the page
do. Greedy text is identical; a sampled text may part only at a draw within the contract's margin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_module, the_page
from test_ensemble import ensemble_folder
from test_web import (
    MARGIN,
    WORDS,
    case_settings,
    first_difference_margin,
    make_model,
    needs_node,
    node,
    node_reproduces_the_vectors,
    write_cases,
)

from export import onnx as export_onnx
from export.session import load
from wordrnn.core.sampling import generate
from wordrnn.run.folder import load_run
from wordrnn.run.generation import generate_text, prompt_to_ids

KINDS = ("window", "poem", "poem-ensemble", "poem-ensemble-cache-auto", "poem-3-layers")
# Words of WORDS, so that every prompt of the conformance cases has a known word in a trained run's vocabulary.
REFRAIN_WORDS = ["the", "sea", "is", "calm", "moon", "my", "love", "rose", "night", "a", "red", "o'er", "caf\u00e9"]


def refrain_corpus(folder: Path) -> Path:
    """Poems that repeat a refrain of their own, so that a cache chosen on held-out poems recalls something."""
    rng = np.random.default_rng(4)
    poems = []
    for _ in range(30):
        refrain = " ".join(rng.choice(REFRAIN_WORDS, 4))
        poems.append("\n".join(refrain if k % 2 == 0 else " ".join(rng.choice(REFRAIN_WORDS, 4)) for k in range(8)))
    path = folder / "refrains.txt"
    path.write_text("\n\n\n".join(poems) + "\n", encoding="utf-8")
    return path


def export(run: Path, out: Path, *flags: str) -> None:
    assert export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy", *flags]) == 0


@pytest.fixture(scope="module", params=KINDS)
def kind(request, tmp_path_factory) -> tuple[Path, Path, tuple[str, ...]]:
    """(run folder, its export, the cache flags scratch.generate takes for the same model) of each kind."""
    folder = tmp_path_factory.mktemp(request.param)
    if request.param in ("window", "poem"):  # seeded weights, sharpened (test_web.make_model)
        cell = "gru" if request.param == "window" else "lstm"
        out = make_model(folder, cell, context=request.param)
        return folder / f"run-{cell}-embedding-{request.param}", out, ()
    out = folder / "model.onnx"
    if request.param == "poem-ensemble":  # seeded weights of two members
        run, _, _ = ensemble_folder(folder / "run", 2, WORDS, sharpen=8.0, context="poem", cell="gru",
                                    hidden_size=12)
        export(run, out)
        return run, out, ()
    if request.param == "poem-3-layers":  # trained with every lever of the stack on, the state [B, 3*H]
        run = folder / "run"
        trained = run_module("scratch.train", "--data", str(refrain_corpus(folder)), "--context", "poem", "--cell",
                             "gru", "--layers", "3", "--dropout", "0.2", "--dropout-between", "0.3", "--ar", "2",
                             "--tar", "1", "--epochs", "1", "--bptt", "8", "--batch-size", "4", "--min-freq", "1",
                             "--hidden-size", "12", "--embed-dim", "8", "--val-fraction", "0.2", "--lr", "1e-2",
                             "--quiet", "--out", str(run))
        assert trained.returncode == 0, trained.stderr
        export(run, out)
        return run, out, ()
    run = folder / "run"  # trained one epoch on poems with refrains; the cache chosen on its validation poems
    trained = run_module("scratch.train", "--data", str(refrain_corpus(folder)), "--context", "poem", "--cell",
                         "lstm", "--ensemble", "2", "--epochs", "1", "--bptt", "8", "--batch-size", "4",
                         "--min-freq", "1", "--hidden-size", "16", "--embed-dim", "8", "--val-fraction", "0.2",
                         "--lr", "1e-2", "--quiet", "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    export(run, out, "--cache-auto")
    assert load(out).card.cache is not None  # the grid chose a cache: the kind exercises it
    return run, out, ("--cache-auto",)


def numpy_source(run_dir: Path, out: Path):
    """What scratch.generate reads the run through, with the cache the file writes with."""
    from scratch.generate import run_source

    return run_source(load_run(run_dir), load(out).cache)


def test_the_numpy_reference_writes_the_files_vectors_from_the_run_folder(kind, tmp_path):
    run_dir, out, _ = kind
    _, cases = write_cases(out, tmp_path)
    source = numpy_source(run_dir, out)
    vocab, seq_len = load_run(run_dir).vocab, load_run(run_dir).config.seq_len
    greedy = 0
    for case in cases:
        settings = case_settings(case)
        ids = generate(source, prompt_to_ids(case["prompt"], vocab), case["words"], seq_len, settings)
        if ids != case["expected"]["ids"]:
            step, margin = first_difference_margin(out, case, ids)
            assert case["strategy"] == "sample" and margin <= MARGIN, (case, step, margin)
            continue
        greedy += case["strategy"] == "greedy"
        assert generate_text(source, vocab, seq_len, case["prompt"], case["words"], settings) == \
            case["expected"]["text"]
    assert greedy == sum(c["strategy"] == "greedy" for c in cases)  # every greedy text identical
    if load(out).cache is not None:  # the cache changes the text: the comparison above saw it applied
        from scratch.generate import run_source

        first = cases[0]
        assert first["strategy"] == "greedy"
        plain = run_source(load_run(run_dir))
        assert generate(plain, prompt_to_ids(first["prompt"], vocab), first["words"], seq_len,
                        case_settings(first)) != first["expected"]["ids"]


@needs_node
def test_node_writes_the_files_vectors(kind, tmp_path):
    node_reproduces_the_vectors(kind[1], tmp_path)


@pytest.mark.parametrize("flags", [("--strategy", "greedy", "--no-repeat-ngram", "2"),
                                   ("--seed", "3", "--num-samples", "2", "--temperature", "0.8", "--top-p", "0.9")])
def test_scratch_generate_prints_what_export_generate_and_node_print(kind, flags):
    """The commands themselves: the run folder read by NumPy (its cache flags those the file was exported with)
    and the file read by onnxruntime in Python and Node.js print the same texts."""
    run_dir, out, cache_flags = kind
    args = ("--prompt", "the sea is calm", "--words", "40", *flags)
    numpy = run_module("scratch.generate", "--run", str(run_dir), *cache_flags, *args)
    python = run_module("export.generate", "--model", str(out), *args)
    assert numpy.returncode == python.returncode == 0, (numpy.stderr, python.stderr)
    assert numpy.stdout == python.stdout
    if cache_flags:  # the choice is said on stderr, where it does not mix with the text
        assert "neural cache: size" in numpy.stderr
    from test_web import NODE, NODE_MODULES

    if NODE is not None and NODE_MODULES.is_dir():
        js = node("web/generate.mjs", "--model", str(out), *args)
        assert js.returncode == 0 and js.stdout == python.stdout, js.stderr


@pytest.mark.slow
def test_the_page_writes_the_files_vectors(kind, tmp_path):
    """The page in headless Chromium (tests/test_web_browser.py's machinery) on the same vectors."""
    page_of, _, assert_page_writes = the_page()
    _, out, _ = kind
    _, cases = write_cases(out, tmp_path)
    with page_of(out, tmp_path / "site") as page:
        assert_page_writes(page, out, cases)


CACHE = ("--cache-size", "12", "--cache-theta", "0.5", "--cache-lambda", "0.4")
WRITE = ("--cache-write-lambda", "0.1")


@pytest.fixture(scope="module")
def gru_runs(tmp_path_factory) -> dict[str, Path]:
    """A window and a poem run folder of seeded weights (and their exports, unused here)."""
    folder = tmp_path_factory.mktemp("gru-runs")
    return {context: make_model(folder, "gru", context=context).parent / f"run-gru-embedding-{context}"
            for context in ("window", "poem")}


@pytest.mark.parametrize("which, flags, fragment", [
    ("window", CACHE, "--cache-* needs a poem model"),
    ("window", ("--cache-auto",), "--cache-auto needs a poem model"),
    ("poem", CACHE[:4], "needs all of --cache-size, --cache-theta and --cache-lambda"),
    ("poem", ("--cache-auto", *CACHE[:2]), "--cache-auto chooses"),
    ("poem", ("--cache-size", "0", *CACHE[2:]), "the cache size is a whole number"),
    ("poem", (*CACHE[:4], "--cache-lambda", "1"), "lambda (weight) lies strictly between 0 and 1"),
    ("poem", (*CACHE, "--cache-write-lambda", "-0.1"), "--cache-write-lambda is the cache's weight when writing"),
])
def test_scratch_generate_refuses_cache_flags_as_export_does_in_one_line(gru_runs, which, flags, fragment, tmp_path,
                                                                         capsys):
    from scratch import generate as scratch_generate

    errors = []
    for main, extra in ((scratch_generate.main, ()), (export_onnx.main, ("--out", str(tmp_path / "m.onnx")))):
        with pytest.raises(SystemExit) as stop:
            main(["--run", str(gru_runs[which]), *extra, *flags])
        captured = capsys.readouterr()
        assert stop.value.code == 2 and captured.out == "", captured
        errors.append([line for line in captured.err.splitlines() if "error:" in line])
    assert len(errors[0]) == 1 and fragment in errors[0][0]
    assert errors[0] == errors[1]  # the same line as export.onnx: one validation
    assert not (tmp_path / "m.onnx").exists()


def test_scratch_generate_applies_the_cache_the_flags_give(tmp_path):
    """--cache-size/--cache-theta/--cache-lambda on a poem run: the text of the file exported with the same flags;
    and with --cache-write-lambda, the file's writing cache: another text, the same in both runtimes."""
    model = make_model(tmp_path, "lstm", context="poem")
    run_dir = tmp_path / "run-lstm-embedding-poem"
    export(run_dir, tmp_path / "cached.onnx", *CACHE)
    export(run_dir, tmp_path / "write.onnx", *CACHE, *WRITE)
    args = ("--prompt", "the sea is calm , my love", "--words", "40", "--strategy", "greedy")
    numpy = run_module("scratch.generate", "--run", str(run_dir), *CACHE, *args)
    assert numpy.returncode == 0, numpy.stderr
    assert numpy.stdout == run_module("export.generate", "--model", str(tmp_path / "cached.onnx"), *args).stdout
    assert numpy.stdout != run_module("export.generate", "--model", str(model), *args).stdout  # the cache counted
    sampled = ("--prompt", "the sea is calm , my love", "--words", "40", "--seed", "1", "--num-samples", "2")
    numpy = run_module("scratch.generate", "--run", str(run_dir), *CACHE, *WRITE, *sampled)
    assert numpy.returncode == 0, numpy.stderr
    assert numpy.stdout == run_module("export.generate", "--model", str(tmp_path / "write.onnx"), *sampled).stdout
    assert numpy.stdout != run_module("export.generate", "--model", str(tmp_path / "cached.onnx"), *sampled).stdout

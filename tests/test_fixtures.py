"""Run folders outlive the version that wrote them.

``tests/fixtures/run-v<N>/`` is a tiny run folder written by the version whose config.json format was N
(``tests/fixtures/make_run_fixture.py``), committed and never rewritten. Every later version must load it,
generate from it in every framework, resume it and export it to ONNX. The config.json variants below are
made from it: an earlier format (version 1: no ``format_version``, none of the ``since(2, ...)`` settings),
a newer one, and settings this version does not know.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest
from conftest import ROOT, assert_usage_error, run_module, window_logits
from threadpoolctl import threadpool_limits

from export import generate as export_generate
from export import onnx as export_onnx
from scratch import generate as scratch_generate
from wordrnn.core.config import FORMAT_VERSION, Config
from wordrnn.core.sampling import SamplerSettings
from wordrnn.frameworks import IMPLS, make_backend
from wordrnn.run.folder import CONFIG, SAMPLES, load_run, read_metrics
from wordrnn.run.generation import generate_text
from wordrnn.run.loop import SAMPLE_PROMPTS, SAMPLE_TOKENS, train

FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("run-v*"))
# JAX compiles each new shape: seconds of CPU, so its variants are in the slow set
WITH_JAX_SLOW = [pytest.param(i, marks=pytest.mark.slow) if i == "jax" else i for i in IMPLS]
GREEDY = ["--strategy", "greedy", "--prompt", "the sea", "--words", "12"]


@pytest.fixture(scope="module", autouse=True)
def one_compute_thread():
    """One thread for BLAS and torch, as ``--threads 1`` gives (see docs/PERFORMANCE.md, "--threads")."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def test_this_format_version_has_its_fixture():
    assert ROOT / "tests" / "fixtures" / f"run-v{FORMAT_VERSION}" in FIXTURES


@pytest.fixture(params=FIXTURES, ids=[p.name for p in FIXTURES])
def fixture_run(request, tmp_path: Path) -> Path:
    """A copy of one committed fixture (tests write into it, the committed folder stays as it was)."""
    return Path(shutil.copytree(request.param, tmp_path / "run"))


def greedy_block(samples: str) -> str:
    return samples.split("\n\n")[0]


def edit_config(run_dir: Path, **changes) -> None:
    """Rewrite the copy's config.json: a value of ``None`` removes the key."""
    raw = json.loads((run_dir / CONFIG).read_text())
    raw.update({k: v for k, v in changes.items() if v is not None})
    for key in [k for k, v in changes.items() if v is None]:
        raw.pop(key, None)
    (run_dir / CONFIG).write_text(json.dumps(raw))


def test_the_fixture_loads(fixture_run):
    run = load_run(fixture_run)
    assert run.config.vocab_size == len(run.vocab) > 10
    assert run.framework == "numpy" and run.config.hidden_size == 4
    assert [row["epoch"] for row in read_metrics(fixture_run)] == list(range(1, run.config.epochs + 1))


@pytest.mark.parametrize("impl", WITH_JAX_SLOW)
def test_every_framework_generates_what_the_writing_version_did(fixture_run, impl):
    """The loop's greedy sample (what samples.txt holds first), from the weights loaded by ``impl``."""
    run = load_run(fixture_run)
    backend = make_backend(impl, "cpu")
    state = backend.init(run.params, run.config)
    text = generate_text(lambda x: window_logits(backend, state, x), run.vocab, run.config.seq_len, SAMPLE_PROMPTS[0],
                         SAMPLE_TOKENS, SamplerSettings("greedy"))
    assert greedy_block((fixture_run / SAMPLES).read_text()).endswith("---\n" + text)


def test_generation_and_the_onnx_export_agree(fixture_run, tmp_path, capsys):
    assert scratch_generate.main(["--run", str(fixture_run), *GREEDY]) == 0
    ours = capsys.readouterr().out
    assert ours.strip() and ours.strip() in greedy_block((fixture_run / SAMPLES).read_text())
    assert export_onnx.main(["--run", str(fixture_run), "--out", str(tmp_path / "model.onnx")]) == 0
    capsys.readouterr()
    assert export_generate.main(["--model", str(tmp_path / "model.onnx"), *GREEDY]) == 0
    assert capsys.readouterr().out == ours


@pytest.mark.parametrize("impl", WITH_JAX_SLOW)
def test_the_fixture_resumes_in_every_framework(fixture_run, impl, monkeypatch):
    monkeypatch.chdir(ROOT)  # config.json names the corpus relative to the repository root
    saved = load_run(fixture_run).config
    result = train(replace(saved, epochs=saved.epochs + 1), make_backend(impl, "cpu"), fixture_run, resume=True,
                   quiet=True, write_samples=False)
    assert result.exit_code == 0
    assert [row["epoch"] for row in read_metrics(fixture_run)] == list(range(1, saved.epochs + 2))


@pytest.mark.parametrize("fixture_run", [p for p in FIXTURES if p.name == "run-v2"], indirect=True,
                         ids=lambda p: p.name)
def test_a_version_1_config_loads_with_the_old_behaviour_defaults(fixture_run):
    """Every setting added since version 1 reads its old-behaviour default. (On run-v2, whose weights a version-1
    model could have: a later fixture is a tied model, whose weights no untied configuration fits.)"""
    added = [f for f in fields(Config) if f.metadata.get("since", 1) > 1]
    assert added  # the settings version 2 added
    edit_config(fixture_run, format_version=None, **{f.name: None for f in added})
    config = load_run(fixture_run).config
    for f in added:
        assert getattr(config, f.name) == f.default, f.name
    assert (config.context, config.bptt) == ("window", 35)
    result = run_module("scratch.generate", "--run", str(fixture_run), *GREEDY)
    assert result.returncode == 0, result.stderr


def test_a_newer_format_version_is_refused_naming_both_versions(fixture_run):
    edit_config(fixture_run, format_version=FORMAT_VERSION + 1)
    result = run_module("scratch.generate", "--run", str(fixture_run), *GREEDY)
    assert_usage_error(result, f"format version {FORMAT_VERSION + 1}", f"versions up to {FORMAT_VERSION}")


@pytest.mark.parametrize("setting, value", [("cell", "nosuch"), ("optimizer", "rmsprop"), ("model", "bag")])
def test_an_unknown_choice_in_config_json_is_one_clear_line(fixture_run, setting, value):
    edit_config(fixture_run, **{setting: value})
    result = run_module("scratch.generate", "--run", str(fixture_run), *GREEDY)
    assert_usage_error(result, f"{setting} is {value!r}", "does not know")


def test_a_setting_its_version_always_records_must_be_there(fixture_run):
    version = json.loads((fixture_run / CONFIG).read_text())["format_version"]
    edit_config(fixture_run, hidden_size=None)
    result = run_module("scratch.generate", "--run", str(fixture_run), *GREEDY)
    assert_usage_error(result, "lacks hidden_size", f"format version {version}")

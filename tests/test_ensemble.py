"""Ensembles: N members from seeds seed .. seed+N-1 in one run folder, their probabilities averaged in
evaluation, in one exported graph, and in generation from it in every runtime."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import window_reference as scratch_model
from conftest import assert_usage_error, run_module, the_page
from test_web import NODE, NODE_MODULES, node
from threadpoolctl import threadpool_limits

from data.dataset import load_dataset
from data.vocab import Vocab
from export import onnx as export_onnx
from export.graph import build_graph
from export.metadata import KEY_ENSEMBLE, ModelCard, to_props
from export.session import load
from scratch import sequence as scratch_sequence
from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.metrics import average_probabilities, evaluate
from wordrnn.core.params import init_params
from wordrnn.core.sampling import SamplerSettings
from wordrnn.frameworks import make_backend
from wordrnn.run.folder import (
    VOCAB,
    WEIGHTS,
    atomic_write_text,
    load_arrays,
    load_run,
    member_dir,
    read_metrics,
    save_params,
    write_config,
)
from wordrnn.run.generation import generate_text
from wordrnn.run.loop import ensemble_source, train

needs_node = pytest.mark.skipif(NODE is None or not NODE_MODULES.is_dir(),
                                reason="needs node and node_modules/onnxruntime-node (npm ci)")
TINY = ("--hidden-size", "8", "--embed-dim", "6", "--min-freq", "1", "--seq-len", "3", "--batch-size", "16",
        "--quiet")
WORDS = ["<unk>", "\n", "the", "sea", "moon", "night", "love", "is", "calm", ",", "."]


# ---------------------------------------------------------------- the average

def test_average_probabilities_is_the_log_of_the_members_mean_probability():
    a = np.array([[0.0, math.log(3.0)]], np.float32)  # probabilities 1/4, 3/4
    b = np.array([[0.0, 0.0]], np.float32)  # 1/2, 1/2
    got = average_probabilities([a, b])
    np.testing.assert_allclose(got, np.log([[3 / 8, 5 / 8]]), rtol=0, atol=1e-6)
    assert got.dtype == np.float32
    # averaging the logits instead would give softmax([0, ln(3)/2]), a different distribution
    assert not np.allclose(np.exp(got), np.exp([0, math.log(3) / 2]) / np.exp([0, math.log(3) / 2]).sum())


def test_average_probabilities_is_stable_where_every_probability_but_one_underflows():
    a = np.array([[1000.0, 0.0, -1000.0]])
    b = np.array([[0.0, 1000.0, -1000.0]])
    got = average_probabilities([a, b])
    np.testing.assert_allclose(got[0, :2], [math.log(0.5)] * 2, atol=1e-12)
    assert np.isfinite(got).all()  # the third word keeps a (tiny) probability, not log 0
    sequence = np.stack([a, b], axis=1)  # [B, T, V]: the average runs over the last axis of any shape
    np.testing.assert_allclose(average_probabilities([sequence, sequence]), sequence - np.log(
        np.exp(sequence - sequence.max(-1, keepdims=True)).sum(-1, keepdims=True)) - sequence.max(-1, keepdims=True))


# ---------------------------------------------------------------- training

def train_args(corpus: Path, out: Path, *flags: str) -> tuple[str, ...]:
    return ("--data", str(corpus), "--out", str(out), *TINY, *flags)


@contextmanager
def one_thread():
    """BLAS and, where loaded, PyTorch on one thread for the block; restored afterwards."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    with threadpool_limits(1):
        if torch:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch:
                torch.set_num_threads(before)


@pytest.mark.parametrize("trainer, framework", [("scratch.train", "numpy"), ("torchmodels.train", "torch")])
def test_the_members_are_the_single_runs_of_seeds_seed_and_seed_plus_one(trainer, framework, tiny_corpus, tmp_path):
    out = tmp_path / "ensemble"
    result = run_module(trainer, *train_args(tiny_corpus, out, "--ensemble", "2", "--seed", "3", "--epochs", "1"))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["ensemble"] == 2
    # the two single runs, on the ensemble's split and vocabulary (those of seed 3)
    config = Config(data=str(tiny_corpus), hidden_size=8, embed_dim=6, min_freq=1, seq_len=3, batch_size=16,
                    epochs=1, seed=3, extra={})
    dataset = load_dataset(**config.dataset_args())
    backend = make_backend(framework, device="cpu")
    members = []
    for k in range(2):
        single = Config(**{**config.to_dict(), "seed": 3 + k})
        with one_thread():  # as the trainer's default --threads 1: two threads sum in another order
            train(single, backend, tmp_path / f"single-{k}", quiet=True, dataset=dataset, write_samples=False)
        want, _ = load_arrays(tmp_path / f"single-{k}" / WEIGHTS)
        got, _ = load_arrays(member_dir(out, k) / WEIGHTS)
        assert json.loads((member_dir(out, k) / "config.json").read_text())["seed"] == 3 + k
        assert sorted(got) == sorted(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        members.append(got)
    assert not np.array_equal(members[0]["rnn.w_hh"], members[1]["rnn.w_hh"])  # two seeds, two models
    # the ensemble's validation figure: the members' probabilities averaged, not their losses
    row = read_metrics(out)[-1]
    ensemble = evaluate(lambda x: average_probabilities([scratch_model.logits(p, x) for p in members]),
                        dataset.val_x, dataset.val_y)
    assert row["val_loss"] == pytest.approx(ensemble["val_loss"], abs=1e-5)
    assert row["member_val_loss"] == [pytest.approx(r[-1]["val_loss"]) for r in
                                      (read_metrics(member_dir(out, k)) for k in range(2))]
    assert row["val_loss"] != pytest.approx(np.mean(row["member_val_loss"]), abs=1e-6)
    assert (out / "samples.txt").read_text().strip()
    assert len(load_run(out).members) == 2


def test_resume_trains_the_unfinished_members_only(tiny_corpus, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for out in (whole, cut):
        assert run_module("scratch.train", *train_args(tiny_corpus, out, "--ensemble", "3", "--epochs", "2")
                          ).returncode == 0
    # member 1 stopped after its first epoch (its checkpoint and metrics as they were then), member 2 never began
    first = tmp_path / "first"
    assert run_module("scratch.train", *train_args(tiny_corpus, first, "--ensemble", "2", "--epochs", "1")
                      ).returncode == 0
    for name in ("checkpoint.safetensors", "weights.safetensors", "metrics.jsonl"):
        member_dir(cut, 1).joinpath(name).write_bytes(member_dir(first, 1).joinpath(name).read_bytes())
    untouched = member_dir(cut, 0).joinpath(WEIGHTS).stat().st_mtime_ns
    for name in ("checkpoint.safetensors", "weights.safetensors", "metrics.jsonl"):
        member_dir(cut, 2).joinpath(name).unlink()
    result = run_module("scratch.train", "--data", str(tiny_corpus), "--out", str(cut), "--resume", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "member 0 (seed 0): finished" in result.stdout
    assert member_dir(cut, 0).joinpath(WEIGHTS).stat().st_mtime_ns == untouched
    for k in range(3):
        want, _ = load_arrays(member_dir(whole, k) / WEIGHTS)
        got, _ = load_arrays(member_dir(cut, k) / WEIGHTS)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"member {k} {name}")
    assert read_metrics(cut)[-1]["val_loss"] == pytest.approx(read_metrics(whole)[-1]["val_loss"])


def test_an_ensemble_is_replaced_only_with_overwrite_and_a_smaller_one_leaves_no_stale_member(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_module("scratch.train", *train_args(tiny_corpus, out, "--ensemble", "3", "--epochs", "1")
                      ).returncode == 0
    assert_usage_error(run_module("scratch.train", *train_args(tiny_corpus, out, "--epochs", "1")),
                       "already holds a run")
    assert run_module("scratch.train", *train_args(tiny_corpus, out, "--ensemble", "2", "--epochs", "1",
                                                   "--overwrite")).returncode == 0
    assert sorted(p.name for p in (out / "members").iterdir()) == ["0", "1"]
    assert run_module("scratch.train", *train_args(tiny_corpus, out, "--epochs", "1", "--overwrite")).returncode == 0
    assert not (out / "members").exists() and load_run(out).members == ()


def test_resume_keeps_the_ensembles_settings_and_needs_a_complete_epoch(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_module("scratch.train", *train_args(tiny_corpus, out, "--ensemble", "2", "--epochs", "1")
                      ).returncode == 0
    resume = ("--data", str(tiny_corpus), "--out", str(out), "--resume", "--epochs", "2")
    assert_usage_error(run_module("scratch.train", *resume, "--ensemble", "3"), "--ensemble 3 (saved: 2)")
    assert_usage_error(run_module("scratch.train", *resume, "--hidden-size", "16"), "--hidden-size 16 (saved: 8)")
    # a member whose config is not member k of the ensemble's (another seed) is refused where the run is read
    config = member_dir(out, 1) / "config.json"
    config.write_text(config.read_text().replace('"seed": 1', '"seed": 7'))
    with pytest.raises(UsageError, match="is not member 1 of the ensemble .* differs in seed"):
        load_run(out)
    for k in range(2):
        member_dir(out, k).joinpath("checkpoint.safetensors").unlink()
    assert_usage_error(run_module("scratch.train", *resume), "nothing to resume", "no member")


def test_compare_refuses_an_ensemble_before_any_work(tmp_path):
    result = run_module("wordrnn.bench.compare", "--ensemble", "2", "--out", str(tmp_path / "report"))
    assert_usage_error(result, "--ensemble 2", "wordrnn.bench.quality --ensemble")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("flags, fragment", [
    (("--ensemble", "0"), "--ensemble must be a positive whole number"),
    (("--ensemble", "-2"), "--ensemble must be a positive whole number"),
    (("--ensemble", "two"), "--ensemble"),
])
def test_a_bad_ensemble_size_is_refused(flags, fragment, tiny_corpus, tmp_path):
    assert_usage_error(run_module("scratch.train", *train_args(tiny_corpus, tmp_path / "x", *flags)), fragment)
    assert not (tmp_path / "x").exists()


def test_an_ensemble_cannot_start_from_another_runs_weights(tiny_corpus, tmp_path):
    assert run_module("scratch.train", *train_args(tiny_corpus, tmp_path / "one", "--epochs", "1")).returncode == 0
    result = run_module("scratch.train", *train_args(tiny_corpus, tmp_path / "two", "--ensemble", "2",
                                                     "--init-from", str(tmp_path / "one")))
    assert_usage_error(result, "--init-from", "--ensemble")


# ---------------------------------------------------------------- export and generation

def ensemble_folder(folder: Path, n: int, words: list[str] = WORDS, sharpen: float = 1.0, **settings
                    ) -> tuple[Path, Config, list[dict[str, np.ndarray]]]:
    """An ensemble run folder of ``n`` members with seeded (untrained) weights over ``words``: what export reads.
    ``sharpen`` scales the output weights, so that the text depends on more than the last token."""
    config = Config(**{"model": "embedding", "vocab_size": len(words), "hidden_size": 6, "embed_dim": 5,
                       "ensemble": n, **settings})
    vocab = Vocab(words)
    members = []
    for k, where in [(None, folder), *((k, member_dir(folder, k)) for k in range(n))]:
        write_config(where, config if k is None else config.member(k), "numpy")
        atomic_write_text(where / VOCAB, vocab.to_json() + "\n")
        if k is not None:
            params = init_params(config.member(k))
            params["out.weight"] = params["out.weight"] * sharpen
            save_params(where / WEIGHTS, params)
            members.append(params)
    return folder, config, members


def reference(members, config: Config, x: np.ndarray, state=None):
    """The averaged members, each from its slice of the state, computed here from the NumPy reference."""
    H = config.state_size  # one member's state: its layers side by side
    if config.context == "window":
        return average_probabilities([scratch_model.logits(p, x, config.cell) for p in members]), ()
    outs = [scratch_sequence.forward(p, x, config.cell, state=None if state is None else
                                     tuple(s[:, k * H:(k + 1) * H] for s in state))[:2]
            for k, p in enumerate(members)]
    return (average_probabilities([o[0] for o in outs]),
            tuple(np.concatenate([o[1][i] for o in outs], axis=1) for i in range(len(outs[0][1]))))


@pytest.mark.parametrize("context, cell, layers", [("window", "rnn", 1), ("window", "lstm", 1), ("poem", "rnn", 1),
                                                   ("poem", "lstm", 1), ("poem", "mingru", 1), ("window", "gru", 2),
                                                   ("poem", "lstm", 2), ("poem", "gru", 3)])
def test_the_exported_ensemble_gives_the_averaged_members_logits_and_carries_every_state(context, cell, layers,
                                                                                         tmp_path):
    run, config, members = ensemble_folder(tmp_path / "run", 3, context=context, cell=cell, layers=layers)
    out = tmp_path / "ensemble.onnx"
    assert export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy"]) == 0
    lm = load(out)
    assert lm.session.get_modelmeta().custom_metadata_map[KEY_ENSEMBLE] == "3"
    rng = np.random.default_rng(1)
    x = rng.integers(0, len(WORDS), (4, 7), dtype=np.int64)
    if context == "window":
        np.testing.assert_allclose(lm.logits(x), reference(members, config, x)[0], atol=1e-5)
        return
    width = 3 * layers * 6  # N*L*H: the members side by side, each its layers side by side
    widths = [(i.name, i.shape[1]) for i in lm.session.get_inputs()[1:]]
    assert widths == [(f"{s}0", width) for s in get_cell(cell).states]
    start = tuple(rng.standard_normal((4, width)).astype(np.float32) for _ in get_cell(cell).states)
    got_logits, got_state = lm.run(x, start)
    want_logits, want_state = reference(members, config, x, start)
    np.testing.assert_allclose(got_logits, want_logits, atol=1e-5)
    for got, want in zip(got_state, want_state, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    single = reference(members[:1], config, x, tuple(s[:, :layers * 6] for s in start))[0]
    assert np.abs(got_logits - single).max() > 1e-3  # not just member 0


def test_export_refuses_a_graph_that_does_not_average_probabilities(tmp_path, monkeypatch, capsys):
    run, _, _ = ensemble_folder(tmp_path / "run", 2)
    real = export_onnx.ensemble_reference
    # a reference averaging the members' logits: the graph (which averages probabilities) must disagree with it
    monkeypatch.setattr(export_onnx, "ensemble_reference", lambda config, members, reference: (
        "logit average", lambda x: np.mean([real(config, [p], reference)[1](x) for p in members], axis=0)))
    with pytest.raises(SystemExit) as exit_:
        export_onnx.main(["--run", str(run), "--out", str(tmp_path / "m.onnx"), "--reference", "numpy"])
    assert exit_.value.code == 1
    assert "nothing written" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def lying_ensemble(folder: Path) -> Path:
    """A single model's graph (state width H) under the card of an ensemble of 2 (width 2H)."""
    single = Config(model="embedding", vocab_size=len(WORDS), hidden_size=6, embed_dim=5, context="poem",
                    cell="gru")
    card = ModelCard(Config(**{**single.to_dict(), "ensemble": 2}), Vocab(WORDS), {"framework": "numpy"})
    path = folder / "lying.onnx"
    path.write_bytes(build_graph(init_params(single), single, metadata=to_props(card)).SerializeToString())
    return path


def test_a_stacked_file_whose_state_is_not_its_layers_width_is_refused(tmp_path):
    """A one-layer graph (state width H) under the card of a 2-layer model (width 2H): every client refuses it."""
    single = Config(model="embedding", vocab_size=len(WORDS), hidden_size=6, embed_dim=5, context="poem", cell="gru")
    card = ModelCard(Config(**{**single.to_dict(), "layers": 2}), Vocab(WORDS), {"framework": "numpy"})
    path = tmp_path / "lying.onnx"
    path.write_bytes(build_graph(init_params(single), single, metadata=to_props(card)).SerializeToString())
    with pytest.raises(UsageError, match=r"h0 float \[\?, 6\] but its metadata describes"):
        load(path)
    assert_usage_error(run_module("export.generate", "--model", str(path)), "h0 float [?, 12]", "export it again")


def test_a_file_whose_state_is_not_the_ensembles_width_is_refused(tmp_path):
    path = lying_ensemble(tmp_path)
    with pytest.raises(UsageError, match=r"h0 float \[\?, 6\] but its metadata describes"):
        load(path)
    assert_usage_error(run_module("export.generate", "--model", str(path)), "h0 float [?, 12]", "export it again")


@pytest.mark.parametrize("context, cell", [("window", "gru"), ("poem", "lstm")])
def test_greedy_generation_from_an_ensemble_file_is_the_same_in_python_node_and_the_run_folder(context, cell,
                                                                                            tmp_path):
    run, config, members = ensemble_folder(tmp_path / "run", 2, context=context, cell=cell)
    out = tmp_path / "ensemble.onnx"
    assert export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy"]) == 0
    args = ("--prompt", "the sea", "--words", "30", "--strategy", "greedy")
    python = run_module("export.generate", "--model", str(out), *args)
    assert python.returncode == 0, python.stderr
    # the run folder read through the loop's own ensemble source (the NumPy backend), token for token
    backend = make_backend("numpy")
    source = ensemble_source(backend, [backend.init(p, config.member(k)) for k, p in enumerate(members)], config)
    text = generate_text(source, Vocab(WORDS), config.seq_len, "the sea", 30, SamplerSettings("greedy"))
    assert python.stdout == text + "\n"
    folder = run_module("scratch.generate", "--run", str(run), *args)  # the NumPy reference, as the run says
    assert folder.stdout == python.stdout, folder.stderr
    if NODE is not None and NODE_MODULES.is_dir():
        js = node("web/generate.mjs", "--model", str(out), *args)
        assert js.returncode == 0 and js.stdout == python.stdout, js.stderr


@needs_node
def test_node_refuses_a_file_whose_state_is_not_the_ensembles_width(tmp_path):
    path = lying_ensemble(tmp_path)
    assert_usage_error(node("web/generate.mjs", "--model", str(path)), "h0 float [?, 12]")


# ---------------------------------------------------------------- the quality benchmark

@pytest.mark.parametrize("context", ["window", "poem"])
def test_the_quality_recipe_row_as_an_ensemble_averages_the_probabilities_of_its_seeds(context, tmp_path):
    pytest.importorskip("torch")
    from test_quality import tiny_poems

    from data.tokenizer import tokenize
    from wordrnn.bench.folds import build_folds
    from wordrnn.bench.quality import TrainedRNN

    tokens = [tokenize(p) for p in tiny_poems(8, length=40)]
    fold = build_folds(tokens, 2, 3, 1)[0]
    config = Config(hidden_size=8, embed_dim=6, min_freq=1, seq_len=3, batch_size=16, epochs=1, seed=5,
                    context=context, bptt=8)
    ds = fold.dataset

    def scored(rnn: TrainedRNN) -> np.ndarray:
        return rnn.target_log_prob(fold.test_x, fold.test_y, fold.test_ids)

    ensemble = TrainedRNN(Config(**{**config.to_dict(), "ensemble": 2}), fold, tmp_path / "ensemble")
    singles = [scored(TrainedRNN(Config(**{**config.to_dict(), "seed": 5 + k}), fold, tmp_path / f"single{k}"))
               for k in range(2)]
    got = scored(ensemble)
    np.testing.assert_allclose(got, np.log(np.mean(np.exp(singles), axis=0)), atol=1e-5)
    assert not np.allclose(got, np.mean(singles, axis=0), atol=1e-5)  # not the members' mean loss
    assert len(got) == len(fold.test_y) and len(ds.val_y) > 0


def test_a_file_whose_ensemble_key_disagrees_with_its_config_is_refused_by_every_client(tmp_path):
    import onnx

    run, _, _ = ensemble_folder(tmp_path / "run", 2)
    out = tmp_path / "ensemble.onnx"
    assert export_onnx.main(["--run", str(run), "--out", str(out), "--reference", "numpy"]) == 0
    model = onnx.load(str(out))
    for prop in model.metadata_props:
        if prop.key == KEY_ENSEMBLE:
            prop.value = "3"
    lying = tmp_path / "lying.onnx"
    onnx.save(model, str(lying))
    python = run_module("export.generate", "--model", str(lying))
    assert_usage_error(python, "wordrnn.ensemble is '3' but the config says ensemble 2")
    if NODE is not None and NODE_MODULES.is_dir():
        js = node("web/generate.mjs", "--model", str(lying))
        assert_usage_error(js, "wordrnn.ensemble is '3'")
        assert js.stderr == python.stderr


@pytest.mark.slow
def test_the_page_writes_pythons_greedy_poem_from_a_poem_ensemble(tmp_path):
    """The page in headless Chromium (as tests/test_web_browser.py drives it) learns the N*H state from the file."""
    page_of, write, _ = the_page()
    run, config, _ = ensemble_folder(tmp_path / "run", 3, context="poem", cell="lstm")
    model = tmp_path / "ensemble.onnx"
    assert export_onnx.main(["--run", str(run), "--out", str(model), "--reference", "numpy"]) == 0
    case = {"prompt": "the sea", "words": 25, "strategy": "greedy", "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "seed": 0, "allow_unk": False, "no_repeat_ngram": 0, "repetition_penalty": 1.0}
    expected = generate_text(load(model).source, Vocab(WORDS), config.seq_len, "the sea", 25,
                             SamplerSettings("greedy"))
    with page_of(model, tmp_path / "site") as page:
        text, _ = write(page, case)
        assert page.text_content("#message") == ""
        assert text == expected

"""The poem context end to end: streams and chunks, training in every framework, exact resume, evaluation on
the window context's targets, refusals, and stateful generation that writes the same text everywhere."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, run_module, write_tiny_corpus
from safetensors.numpy import load_file

from data.dataset import load_dataset
from data.streams import epoch_chunks, lay_streams, stream_arrays
from scratch import sequence
from scratch import train as scratch_train
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.metrics import evaluate, evaluate_poems
from wordrnn.core.params import init_params
from wordrnn.core.sampling import SamplerSettings, Stateful, generate
from wordrnn.frameworks import IMPLS, make_backend
from wordrnn.run.folder import load_run
from wordrnn.run.loop import generation_source, train

TRAINERS = {"numpy": "scratch.train", "torch": "torchmodels.train", "jax": "jaxmodels.train"}


def poems_of(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 30, size=n) for n in lengths]


# -- streams and chunks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("streams, bptt", [(1, 4), (3, 5), (4, 50), (7, 3)])
def test_chunks_cover_every_training_target_exactly_once(streams: int, bptt: int) -> None:
    poems = poems_of([5, 1, 12, 3, 9, 2, 30, 7])
    chunks = epoch_chunks(poems, streams, bptt, seed=3, epoch=2)
    seen = []
    for c in chunks:
        assert c.x.shape == (streams, bptt)
        for b, t in zip(*np.nonzero(c.weights), strict=True):
            seen.append((int(c.x[b, t]), int(c.y[b, t])))
    wanted = [(int(p[j]), int(p[j + 1])) for p in poems for j in range(len(p) - 1)]
    assert sorted(seen) == sorted(wanted)
    assert sum(c.targets for c in chunks) == sum(len(p) - 1 for p in poems)


def test_every_poem_starts_with_a_reset_and_stays_in_one_stream() -> None:
    poems = poems_of([4, 6, 2, 8, 5])
    whole = stream_arrays(poems, 2, 4)
    assert int(whole.reset.sum()) == len(poems)
    laid = lay_streams(poems, 2)
    for b, row in enumerate(laid):
        np.testing.assert_array_equal(whole.x[b, :sum(map(len, row))], np.concatenate(row))
    assert abs(sum(map(len, laid[0])) - sum(map(len, laid[1]))) <= max(map(len, poems))


def test_the_epoch_order_is_seeded() -> None:
    poems = poems_of([3, 4, 5, 6, 7, 8])
    first = [c.x for c in epoch_chunks(poems, 2, 4, seed=0, epoch=1)]
    again = [c.x for c in epoch_chunks(poems, 2, 4, seed=0, epoch=1)]
    other = [c.x for c in epoch_chunks(poems, 2, 4, seed=0, epoch=2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=False))


# -- evaluation --------------------------------------------------------------------------------------------------

def test_poem_evaluation_scores_the_window_context_targets(tiny_corpus: Path) -> None:
    """A poem model evaluated whole scores the same targets as the windows: with a one-step model
    (no recurrence: W_hh = 0) the two contexts give the same numbers."""
    config = Config(data=str(tiny_corpus), min_freq=1, seq_len=3, hidden_size=6, embed_dim=4, context="poem")
    dataset = load_dataset(**config.dataset_args())
    config.vocab_size = len(dataset.vocab)
    params = init_params(config, dtype=np.float64)
    params["rnn.w_hh"][:] = 0
    windows = evaluate(lambda x: sequence.forward(params, x, last_only=True)[0], dataset.val_x, dataset.val_y)
    poems = evaluate_poems(lambda x, carry: sequence.forward(params, x, state=carry)[:2], dataset.val_ids,
                           config.seq_len)
    for key in ("val_loss", "val_top1", "val_top5", "val_ppl_known"):
        assert poems[key] == pytest.approx(windows[key], rel=1e-12), key
    assert poems["val_ppl_all"] != pytest.approx(poems["val_ppl"])  # a different, labelled set of targets


# -- training in every framework ---------------------------------------------------------------------------------

def poem_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(corpus), "--out", str(out), "--context", "poem", "--bptt", "6", "--seq-len", "3",
            "--hidden-size", "10", "--embed-dim", "6", "--batch-size", "3", "--min-freq", "1", "--lr", "0.01",
            "--threads", "1", "--quiet", *extra]


@pytest.mark.parametrize("framework", [pytest.param(f, marks=pytest.mark.slow) if f == "jax" else f for f in IMPLS])
def test_every_trainer_trains_a_poem_model(framework: str, tiny_corpus: Path, tmp_path: Path) -> None:
    result = run_module(TRAINERS[framework], *poem_args(tiny_corpus, tmp_path / "run", "--cell", "gru",
                                                        "--epochs", "3", "--dropout", "0.2"),
                        *(("--accelerator", "cpu") if framework == "jax" else ()))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert "val_ppl_all" in rows[0]
    run = load_run(tmp_path / "run")
    assert run.config.context == "poem" and run.config.bptt == 6


@pytest.mark.parametrize("cell", [c if c == "lstm" else pytest.param(c, marks=pytest.mark.slow) for c in CELLS])
def test_the_three_frameworks_train_a_poem_model_alike(cell: str, tiny_corpus: Path, tmp_path: Path) -> None:
    """Same start, same chunks: the same losses epoch by epoch (each framework's own poem step)."""
    config = Config(data=str(tiny_corpus), min_freq=1, seq_len=3, hidden_size=8, embed_dim=5, batch_size=3,
                    bptt=5, epochs=2, context="poem", cell=cell, lr=0.01)
    dataset = load_dataset(**config.dataset_args())
    rows = {}
    for framework in IMPLS:
        result = train(replace(config), make_backend(framework), tmp_path / framework, quiet=True,
                       dataset=dataset, write_samples=False)
        rows[framework] = [(r["train_loss"], r["val_loss"]) for r in result.metrics]
    for framework in IMPLS[1:]:
        np.testing.assert_allclose(rows[framework], rows["numpy"], rtol=0, atol=1e-4)


def test_poem_resume_equals_an_uninterrupted_run(tiny_corpus: Path, tmp_path: Path) -> None:
    settings = ("--cell", "lstm", "--dropout", "0.2")
    whole, split = tmp_path / "whole", tmp_path / "split"
    for out, extra in ((whole, ("--epochs", "2")), (split, ("--epochs", "1")), (split, ("--epochs", "2", "--resume"))):
        assert scratch_train.main(poem_args(tiny_corpus, out, *settings, *extra)) == 0
    for name in ("weights.safetensors", "checkpoint.safetensors"):
        a, b = load_file(whole / name), load_file(split / name)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")


# -- refusals --------------------------------------------------------------------------------------------------

def test_bptt_must_be_positive(tiny_corpus: Path, tmp_path: Path) -> None:
    assert_usage_error(run_module("scratch.train", *poem_args(tiny_corpus, tmp_path / "r", "--bptt", "0")),
                       "--bptt")


def test_a_bptt_longer_than_every_poem_still_trains(tiny_corpus: Path, tmp_path: Path) -> None:
    """Streams run on from one poem into the next, so a chunk longer than any poem is fine."""
    result = run_module("scratch.train", *poem_args(tiny_corpus, tmp_path / "r", "--epochs", "1"), "--bptt", "500")
    assert result.returncode == 0, result.stderr


def test_init_from_across_contexts_names_both(tiny_corpus: Path, tmp_path: Path) -> None:
    window = run_module("scratch.train", "--data", str(tiny_corpus), "--out", str(tmp_path / "w"), "--epochs", "1",
                        "--seq-len", "3", "--hidden-size", "6", "--embed-dim", "4", "--min-freq", "1", "--quiet")
    assert window.returncode == 0, window.stderr
    seeded = run_module("scratch.train", *poem_args(tiny_corpus, tmp_path / "p", "--epochs", "1",
                                                    "--init-from", str(tmp_path / "w")))
    assert_usage_error(seeded, "window-context", "--context poem")


def test_resume_with_another_context_is_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    first = run_module("scratch.train", *poem_args(tiny_corpus, tmp_path / "p", "--epochs", "1"))
    assert first.returncode == 0, first.stderr
    again = run_module("scratch.train", "--data", str(tiny_corpus), "--out", str(tmp_path / "p"), "--epochs", "2",
                       "--resume", "--context", "window", "--quiet")
    assert_usage_error(again, "--context window", "poem")


def test_one_token_poems_are_refused(tmp_path: Path) -> None:
    corpus = write_tiny_corpus(tmp_path, ["sea", "moon", "rose", "tide"])
    assert_usage_error(run_module("scratch.train", *poem_args(corpus, tmp_path / "r")), "too short")


# -- generation --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", list(CELLS))
def test_stateful_generation_is_the_same_in_every_framework(cell: str, tiny_corpus: Path, tmp_path: Path) -> None:
    config = Config(data=str(tiny_corpus), min_freq=1, seq_len=3, hidden_size=8, embed_dim=5, context="poem",
                    cell=cell)
    dataset = load_dataset(**config.dataset_args())
    config.vocab_size = len(dataset.vocab)
    params = init_params(config)
    # the NumPy reference run whole, token by token: what every runtime's stateful source must give
    reference = Stateful(lambda x, carry: sequence.forward(params, x, cell, carry)[:2])
    for settings in (SamplerSettings("greedy"), SamplerSettings(seed=4, temperature=0.9)):
        want = generate(reference, [1, 2, 3], 30, config.seq_len, settings)
        for framework in IMPLS:
            backend = make_backend(framework)
            source = generation_source(backend, backend.init(params, config), config)
            assert generate(source, [1, 2, 3], 30, config.seq_len, settings) == want, framework


def test_a_poem_models_token_sees_the_whole_text() -> None:
    """The stateful feed reads each token once and keeps everything: its logits equal the whole text's."""
    config = Config(vocab_size=12, hidden_size=5, embed_dim=4, context="poem", cell="lstm")
    params = init_params(config, dtype=np.float64)
    text = []
    source = Stateful(lambda x, carry: (text.extend(x[0].tolist()), sequence.forward(params, x, "lstm", carry)[:2])[1])
    ids = generate(source, [3, 4], 10, config.seq_len, SamplerSettings("greedy"))
    assert text == [3, 4, *ids[:-1]]  # the prompt once, then each new token once
    whole = sequence.forward(params, np.array([[3, 4, *ids[:-1]]]), "lstm")[0]
    assert int(np.argmax(whole[0, -1])) == ids[-1]

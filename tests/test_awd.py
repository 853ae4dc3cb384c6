"""NT-ASGD (``--optimizer ntasgd``, ``--nonmono``) and variable-length BPTT (``--bptt-jitter``): AWD-LSTM's rule for
when averaging begins, its chunk lengths, their bad input, and a run that evaluates, saves and resumes the average
(tests/parity/test_awd.py holds them to each other across frameworks)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_usage_error, run_module

from data.dataset import load_dataset
from data.streams import SHORTEST_CHUNK, epoch_chunks, jittered_lengths, lay_streams, stream_arrays
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.optimizers import get_optimizer, nonmonotone_trigger
from wordrnn.core.params import init_params
from wordrnn.frameworks import make_backend
from wordrnn.run import loop
from wordrnn.run.folder import CHECKPOINT, WEIGHTS, check_optimizer_arrays, load_arrays, load_run, read_metrics

NTASGD = get_optimizer("ntasgd")


# -- when averaging begins

@pytest.mark.parametrize("losses, nonmono, starts", [
    ([5.0, 4.0, 3.0], 1, False),  # still improving
    ([5.0, 4.0, 4.5], 1, False),  # worse than the last, better than the one before it
    ([5.0, 4.0, 4.5, 4.2], 1, True),  # worse than 4.0, evaluated more than one epoch before
    ([5.0, 4.0, 4.5, 3.9], 1, False),  # a new best
    ([2.0, 3.0, 3.0, 3.0, 3.0, 3.0], 5, False),  # five earlier evaluations: not enough to judge
    ([2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0], 5, True),
    ([3.0, 2.0, 2.5, 2.5, 2.5, 2.5, 2.5], 5, False),  # only 3.0 lies more than five back
    ([4.0], 1, False),
])
def test_averaging_begins_by_awd_lstms_nonmonotone_rule(losses, nonmono, starts):
    assert nonmonotone_trigger(losses, nonmono) is starts


# -- chunk lengths

def awd_lengths(seed: int, bptt: int, total: int) -> list[int]:
    """AWD-LSTM's draw written out plainly: base bptt with probability 0.95, else bptt / 2; then
    max(5, int(normal(base, 5)))."""
    rng = np.random.default_rng(seed)
    out = []
    while sum(out) < total:
        base = bptt if rng.random() < 0.95 else bptt / 2
        out.append(max(5, int(rng.normal(base, 5))))
    return out


def test_chunk_lengths_are_drawn_as_awd_lstm_draws_them():
    lengths = jittered_lengths(np.random.default_rng(7), 35, 20_000)
    assert lengths == awd_lengths(7, 35, 20_000)
    assert min(lengths) == SHORTEST_CHUNK and sum(lengths[:-1]) < 20_000 <= sum(lengths)
    half = np.mean(np.array(lengths) < 25)  # the draws around bptt / 2 (those around bptt lie under 25 only at -2 sd)
    assert 0.03 < half < 0.09 and 30 < np.median(lengths) < 36


def test_jittered_chunks_cut_the_same_streams_into_drawn_lengths_each_target_once():
    rng = np.random.default_rng(0)
    poems = [rng.integers(0, 30, size=int(rng.integers(3, 40))) for _ in range(40)]
    chunks = epoch_chunks(poems, 4, 12, seed=5, epoch=2, jitter=True)
    again = epoch_chunks(poems, 4, 12, seed=5, epoch=2, jitter=True)
    assert [c.x.tolist() for c in chunks] == [c.x.tolist() for c in again]

    draw = np.random.default_rng([5, 2])
    order = draw.permutation(len(poems))  # the epoch's shuffle comes first, then the lengths
    laid = lay_streams([poems[i] for i in order], 4)
    lengths = jittered_lengths(draw, 12, max(sum(len(p) for p in row) for row in laid))
    assert [c.x.shape[1] for c in chunks] == lengths[:len(chunks)] and len(set(lengths)) > 3
    whole = stream_arrays([poems[i] for i in order], 4, 1)  # the same streams, unpadded
    joined = np.concatenate([c.x for c in chunks], axis=1)
    assert np.array_equal(joined[:, :whole.x.shape[1]], whole.x)
    assert sum(c.targets for c in chunks) == sum(len(p) - 1 for p in poems)
    plain = epoch_chunks(poems, 4, 12, seed=5, epoch=2)
    assert {c.x.shape[1] for c in plain} == {12} and np.array_equal(
        np.concatenate([c.x for c in plain], axis=1)[:, :whole.x.shape[1]], whole.x)


def test_the_step_learning_rate_is_scaled_by_length_over_bptt_only_with_jitter():
    config = Config(context="poem", bptt=20, lr=0.5, bptt_jitter=True).validate()
    assert config.step_lr(10) == 0.25 and config.step_lr(30) == 0.75
    assert replace(config, bptt_jitter=False).step_lr(10) == 0.5


# -- bad input

def test_nonmono_must_be_a_positive_number_of_evaluations():
    with pytest.raises(UsageError, match="--nonmono must be a positive whole number of evaluations, got 0"):
        Config(optimizer="ntasgd", nonmono=0).validate()


def test_bptt_jitter_is_refused_with_the_window_context():
    with pytest.raises(UsageError, match="--bptt-jitter varies the length of the poem context's chunks"):
        Config(bptt_jitter=True).validate()


@pytest.mark.parametrize("flags, fragments", [
    (["--optimizer", "ntasgd", "--nonmono", "0"], ["--nonmono must be a positive whole number", "got 0"]),
    (["--bptt-jitter"], ["--bptt-jitter varies", "--context window", "add --context poem"]),
    (["--nonmono", "3"], ["--nonmono says when NT-ASGD starts averaging", "--optimizer adam",
                          "add --optimizer ntasgd"]),
])
def test_the_trainer_refuses_them_in_one_line(flags, fragments, tmp_path, tiny_corpus):
    result = run_module("scratch.train", "--data", str(tiny_corpus), "--epochs", "1", "--hidden-size", "4",
                        "--out", str(tmp_path / "run"), *flags, timeout=120)
    assert_usage_error(result, *fragments)
    assert not (tmp_path / "run" / CHECKPOINT).exists()


@pytest.mark.parametrize("t0, why", [(np.array(11), "to ntasgd.step (10)"), (np.array(-2), "from -1"),
                                     (np.array(3.0, np.float32), "float32")])
def test_a_checkpoint_whose_trigger_step_cannot_be_is_refused(t0, why):
    config = replace(Config(optimizer="ntasgd", hidden_size=4, embed_dim=3), vocab_size=6)
    backend = make_backend("numpy")
    state = backend.init(init_params(config), config)
    arrays = {**backend.optimizer_arrays(state), "ntasgd.step": np.array(10), "ntasgd.t0": t0}
    with pytest.raises(UsageError, match=f"ntasgd.t0 is .*{re.escape(why)}"):
        check_optimizer_arrays(arrays, config)


# -- a run: the average is evaluated, saved as the best weights, and resumed

def tiny_config(corpus, epochs: int) -> Config:
    return Config(model="embedding", cell="lstm", context="poem", bptt=6, bptt_jitter=True, hidden_size=6,
                  embed_dim=4, min_freq=1, batch_size=2, epochs=epochs, lr=0.5, optimizer="ntasgd", nonmono=1,
                  seed=3, data=str(corpus), val_fraction=0.34)


@pytest.fixture
def after_the_first_epoch(monkeypatch):
    """Averaging begins after epoch 1, whatever the validation losses (the rule is tested above)."""
    monkeypatch.setattr(loop, "nonmonotone_trigger", lambda losses, nonmono: len(losses) == 1)


@pytest.mark.parametrize("framework", ["numpy", pytest.param("torch", marks=pytest.mark.slow),
                                       pytest.param("jax", marks=pytest.mark.slow)])
def test_evaluation_and_the_best_weights_are_the_average_and_resume_continues_it(framework, tmp_path, tiny_corpus,
                                                                                 after_the_first_epoch):
    backend = make_backend(framework)
    straight = tmp_path / "straight"
    loop.train(tiny_config(tiny_corpus, 3), backend, straight, quiet=True, write_samples=False)
    arrays, counters = load_arrays(straight / CHECKPOINT)
    first_epoch_steps = read_checkpoint_steps(tmp_path, tiny_corpus, backend)
    assert int(arrays["ntasgd.t0"]) == first_epoch_steps < int(arrays["ntasgd.step"]) == counters["step"]

    # the last epoch was evaluated on the average, not on the weights training reached
    vocab = load_run(straight).vocab
    config = replace(tiny_config(tiny_corpus, 3), vocab_size=len(vocab))
    dataset = load_dataset(**config.dataset_args(), vocab=vocab)
    average = NTASGD.averaged_weights(arrays)
    last = {k[len("param."):]: v for k, v in arrays.items() if k.startswith("param.")}
    rows = read_metrics(straight)
    on_average = loop.evaluate_run(backend, backend.init(average, config), dataset, config)["val_loss"]
    on_last = loop.evaluate_run(backend, backend.init(last, config), dataset, config)["val_loss"]
    assert rows[-1]["val_loss"] == pytest.approx(on_average, rel=1e-6) and abs(on_average - on_last) > 1e-4
    best, _ = load_arrays(straight / WEIGHTS)
    if rows[-1]["best_epoch"] == 3:
        assert all(np.array_equal(best[k], average[k]) for k in average)

    # two epochs, then --resume for the third: the same weights, average and trigger step
    resumed = tmp_path / "resumed"
    loop.train(tiny_config(tiny_corpus, 2), backend, resumed, quiet=True, write_samples=False)
    loop.train(tiny_config(tiny_corpus, 3), make_backend(framework), resumed, resume=True, quiet=True,
               write_samples=False, given={"epochs"})
    again, _ = load_arrays(resumed / CHECKPOINT)
    assert sorted(again) == sorted(arrays)
    assert max(float(np.max(np.abs(again[k].astype(np.float64) - arrays[k]))) for k in arrays) <= 1e-6


def read_checkpoint_steps(tmp_path, corpus, backend) -> int:
    """The steps of the first epoch: a one-epoch run's step counter."""
    one = tmp_path / "one"
    loop.train(tiny_config(corpus, 1), backend, one, quiet=True, write_samples=False)
    return load_arrays(one / CHECKPOINT)[1]["step"]

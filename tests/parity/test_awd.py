"""NT-ASGD and variable-length BPTT in every framework: trajectories that agree, the average each keeps, and a
run resumed in the middle of its average (in the same framework and in another one)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from data.streams import epoch_chunks
from wordrnn.core import tolerances
from wordrnn.core.config import Config
from wordrnn.core.optimizers import get_optimizer
from wordrnn.run.folder import check_optimizer_arrays
from wordrnn.testing import parity as pc

NTASGD = get_optimizer("ntasgd")
STEPS, AVERAGE_FROM, RESUME_AT = 20, 6, 12  # averaging begins after step AVERAGE_FROM; the resumed run stops mid-way
LR = 0.5
WRITER_READER = [("numpy", "numpy"), ("torch", "torch"), ("jax", "jax"),
                 ("numpy", "torch"), ("torch", "jax"), ("jax", "numpy")]


def ntasgd_problem(small: dict[str, int]) -> tuple[Config, dict, list]:
    base = pc.random_problem("embedding", **small)
    config = replace(base.config, optimizer="ntasgd", lr=LR, weight_decay=1e-3)
    config, batches = pc.trajectory_problem(config, base.params, STEPS)
    return config, base.params, batches


def train(backend, state, config: Config, batches, start: int, average_from: int | None = AVERAGE_FROM):
    """Steps ``start ..`` on ``batches``; averaging begins after step ``average_from`` as the loop begins it
    (the optimizer state's ``t0`` set through its named arrays). Returns the state, the losses and the weights
    after every step."""
    losses, iterates = [], []
    for step, chunk in enumerate(pc.as_chunks(batches), start=start):
        if step == average_from:
            state = backend.load_optimizer_arrays(state, NTASGD.start_averaging(backend.optimizer_arrays(state)))
        state, loss, _ = backend.train_step(state, chunk, None, step)
        losses.append(float(loss))
        iterates.append(backend.canonical(state))
    return state, losses, iterates


def averaged(backend, state) -> dict[str, np.ndarray]:
    weights = NTASGD.averaged_weights(backend.optimizer_arrays(state))
    assert weights is not None, "averaging never began"
    return weights


def worst(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert sorted(a) == sorted(b)
    return max(pc.max_abs_diff(a[k], b[k]) for k in a)


def test_ntasgd_trajectories_and_averages_agree_and_each_average_is_the_mean_since_the_trigger(small):
    config, params, batches = ntasgd_problem(small)
    runs = {}
    for framework in pc.FRAMEWORKS:
        backend = pc.backend_for(framework)
        state, losses, iterates = train(backend, backend.init(pc._cast(params, np.float32), config), config,
                                        batches, 0)
        runs[framework] = (np.array(losses), backend.canonical(state), averaged(backend, state))
        since = iterates[AVERAGE_FROM:]  # the weights after steps AVERAGE_FROM + 1 .. STEPS
        mean = {k: np.mean([w[k].astype(np.float64) for w in since], axis=0) for k in since[0]}
        assert worst(runs[framework][2], mean) <= 1e-6, framework  # a float32 running mean against the mean
        assert worst(runs[framework][2], runs[framework][1]) > 100 * tolerances.TRAJECTORY  # not the last weights
    for a, b in [("numpy", "torch"), ("numpy", "jax"), ("torch", "jax")]:
        assert pc.max_abs_diff(runs[a][0], runs[b][0]) <= tolerances.TRAJECTORY, (a, b)
        assert worst(runs[a][1], runs[b][1]) <= tolerances.TRAJECTORY, (a, b)
        assert worst(runs[a][2], runs[b][2]) <= tolerances.TRAJECTORY, (a, b)


@pytest.mark.parametrize("writer, reader", WRITER_READER, ids=[f"{a}-to-{b}" for a, b in WRITER_READER])
def test_a_run_resumed_mid_average_ends_where_an_uninterrupted_one_does(writer, reader, small):
    config, params, batches = ntasgd_problem(small)
    first = pc.backend_for(writer)
    state, _, _ = train(first, first.init(pc._cast(params, np.float32), config), config, batches[:RESUME_AT], 0)
    arrays = check_optimizer_arrays(first.optimizer_arrays(state), config)  # what a checkpoint gives back
    assert int(arrays["ntasgd.t0"]) == AVERAGE_FROM and int(arrays["ntasgd.step"]) == RESUME_AT
    second = pc.backend_for(reader)
    resumed = second.load_optimizer_arrays(second.init(first.canonical(state), config), arrays)
    resumed, _, _ = train(second, resumed, config, batches[RESUME_AT:], RESUME_AT)

    straight = pc.backend_for(reader)
    whole, _, _ = train(straight, straight.init(pc._cast(params, np.float32), config), config, batches, 0)
    exact = 0.0 if writer == reader else tolerances.TRAJECTORY
    assert worst(second.canonical(resumed), straight.canonical(whole)) <= exact
    assert worst(averaged(second, resumed), averaged(straight, whole)) <= exact
    # the average mattered: resumed without it, the run averages only the steps after the resume
    fresh, _, _ = train(second, second.load_optimizer_arrays(second.init(first.canonical(state), config),
                                                             {**arrays, **{k: np.zeros_like(v) for k, v in
                                                                           arrays.items() if ".ax." in k}}),
                        config, batches[RESUME_AT:], RESUME_AT)
    assert worst(averaged(second, fresh), averaged(straight, whole)) > 100 * tolerances.TRAJECTORY


# -- variable-length BPTT

def jitter_problem(cell: str, small: dict[str, int]) -> tuple[Config, dict]:
    problem = pc.random_poem_problem("embedding", **small, cell=cell, bptt=10)
    return replace(problem.config, bptt_jitter=True, lr=1e-2), problem.params


@pytest.mark.slow  # JAX compiles a step per length bucket (about a minute on a loaded box)
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_jittered_poem_trajectories_agree(cell, small):
    config, params = jitter_problem(cell, small)
    poems = pc.random_poems(config.vocab_size, 2 * config.batch_size, np.random.default_rng([0, 13]))  # the checks'
    lengths = [c.x.shape[1] for epoch in range(1, 11)
               for c in epoch_chunks(poems, config.batch_size, config.bptt, 0, epoch, jitter=True)][:20]
    assert len(set(lengths)) >= 3 and any(n % 8 for n in lengths), lengths  # several lengths, not all a bucket's
    checks = pc.poem_trajectory_checks(config, params)
    assert [str(c) for c in checks if not c.passed] == []


@pytest.mark.parametrize("framework", [pytest.param("jax", marks=pytest.mark.slow), "numpy", "torch"])
def test_a_jittered_step_takes_the_learning_rate_scaled_by_length_over_bptt(framework, small):
    config, params = jitter_problem("lstm", small)
    config = replace(config, optimizer="sgd")
    poems = pc.random_poems(config.vocab_size, 2 * config.batch_size, np.random.default_rng(3))
    chunk = next(c for epoch in range(1, 10) for c in epoch_chunks(poems, config.batch_size, config.bptt, 0, epoch,
                                                                     jitter=True)
                 if c.x.shape[1] != config.bptt and c.x.shape[1] % 8)  # JAX pads it to a multiple of 8
    backend = pc.backend_for(framework)
    jittered, _, carry = backend.train_step(backend.init(pc._cast(params, np.float32), config), chunk, None, 0)
    plain = replace(config, bptt_jitter=False, lr=config.lr * chunk.x.shape[1] / config.bptt)
    same, _, plain_carry = backend.train_step(backend.init(pc._cast(params, np.float32), plain), chunk, None, 0)
    unscaled, _, _ = backend.train_step(backend.init(pc._cast(params, np.float32), replace(plain, lr=config.lr)),
                                        chunk, None, 0)
    assert worst(backend.canonical(jittered), backend.canonical(same)) <= 1e-7
    assert worst(backend.canonical(jittered), backend.canonical(unscaled)) > 1e-4
    # the state the next chunk reads is the one after the chunk's last real position (JAX pads the chunk)
    assert max(pc.max_abs_diff(np.asarray(a), np.asarray(b)) for a, b in zip(carry, plain_carry)) <= 1e-6


@pytest.mark.slow  # JAX compiles a step per length bucket, three layers deep
def test_a_three_layer_lstm_with_every_lever_trains_to_the_same_weights_and_average(small):
    """The depth work's target: a 3-layer poem LSTM with AR and TAR, dropout between its layers and on its inputs
    and output, NT-ASGD averaging from step 6 and variable-length chunks, trained 20 steps in NumPy, PyTorch and
    JAX: the same losses, weights and average within the trajectories' tolerance."""
    problem = pc.random_poem_problem("embedding", **small, cell="lstm", bptt=10, layers=3, ar=2.0, tar=1.0,
                                     dropout=0.2)
    config = replace(problem.config, optimizer="ntasgd", lr=LR, bptt_jitter=True, dropout=0.2, dropout_between=0.2)
    poems = pc.random_poems(config.vocab_size, 2 * config.batch_size, np.random.default_rng([0, 13]))
    chunks = [c for epoch in range(1, 11) for c in epoch_chunks(poems, config.batch_size, config.bptt, 0, epoch,
                                                                  jitter=True)][:STEPS]
    runs = {}
    for framework in pc.FRAMEWORKS:
        backend = pc.backend_for(framework)
        state, carry, losses = backend.init(pc._cast(problem.params, np.float32), config), None, []
        for step, chunk in enumerate(chunks):
            if step == AVERAGE_FROM:
                state = backend.load_optimizer_arrays(state, NTASGD.start_averaging(backend.optimizer_arrays(state)))
            state, loss, carry = backend.train_step(state, chunk, carry, step)
            losses.append(float(loss))
        runs[framework] = (np.array(losses), backend.canonical(state), averaged(backend, state))
    assert {"rnn.w_ih_l2", "rnn.w_hh_l2"} <= set(runs["numpy"][1])
    for a, b in [("numpy", "torch"), ("numpy", "jax"), ("torch", "jax")]:
        assert pc.max_abs_diff(runs[a][0], runs[b][0]) <= tolerances.TRAJECTORY, (a, b)
        assert worst(runs[a][1], runs[b][1]) <= tolerances.TRAJECTORY, (a, b)
        assert worst(runs[a][2], runs[b][2]) <= tolerances.TRAJECTORY, (a, b)

"""The neural cache's arithmetic against a direct computation of its definition, whole poem and step by step."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from generation_reference import cache_log_probs

from wordrnn.core.cache import (
    CacheSettings,
    NeuralCache,
    cache_target_log_q,
    logaddexp,
    mix_targets,
    row_log_softmax,
)
from wordrnn.core.errors import UsageError


def by_hand(hidden, tokens, log_probs, size, theta, lam):
    """p = (1 - lam) p_model + lam p_cache, one position and one word at a time, straight from the definition."""
    T, V = log_probs.shape
    out = np.array(log_probs, np.float64)
    for t in range(T):
        window = [i for i in range(T) if t - size <= i < t]
        if not window:
            continue
        scores = {i: math.exp(theta * float(np.dot(hidden[t], hidden[i]))) for i in window}
        total = sum(scores.values())
        for w in range(V):
            p_cache = sum(s for i, s in scores.items() if tokens[i + 1] == w) / total
            out[t, w] = math.log((1 - lam) * math.exp(log_probs[t, w]) + lam * p_cache)
    return out


def poem(T=7, V=5, H=3, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((T, H))
    tokens = rng.integers(0, V, size=T)
    logits = rng.standard_normal((T, V)) * 2
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return hidden, tokens, log_probs


@pytest.mark.parametrize("size, theta, lam", [(1, 0.5, 0.3), (3, 1.0, 0.1), (100, 0.0, 0.5), (2, 4.0, 0.9)])
def test_a_whole_poem_mixes_as_the_definition_says(size, theta, lam):
    hidden, tokens, log_probs = poem()
    got = cache_log_probs(hidden, tokens, log_probs, CacheSettings(size, theta, lam))
    np.testing.assert_allclose(got, by_hand(hidden, tokens, log_probs, size, theta, lam), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[0], log_probs[0])  # nothing to recall at the first position
    np.testing.assert_allclose(np.exp(got).sum(axis=1), 1.0, rtol=1e-12)


def test_the_targets_alone_are_those_of_the_whole_mixture():
    hidden, tokens, log_probs = poem(T=9, V=4)
    settings = CacheSettings(4, 0.7, 0.25)
    full = cache_log_probs(hidden, tokens, log_probs, settings)
    log_q, has = cache_target_log_q(hidden, tokens, settings.size, settings.theta)
    targets = np.arange(len(tokens) - 1), tokens[1:]
    got = mix_targets(log_probs[targets], log_q, has, settings.lam)
    np.testing.assert_allclose(got, full[targets], rtol=1e-12)
    assert not has[0] and has[1:].all()
    np.testing.assert_array_equal(mix_targets(log_probs[targets], log_q, has, 0.0), log_probs[targets])


def test_step_by_step_is_the_whole_poem_one_position_at_a_time():
    hidden, tokens, log_probs = poem(T=12, V=6, H=4, seed=2)
    settings = CacheSettings(5, 0.8, 0.2)
    full = cache_log_probs(hidden, tokens, log_probs, settings)
    cache = NeuralCache(settings)
    for t in range(len(tokens)):
        cache.read(int(tokens[t]), hidden[t][None])
        np.testing.assert_allclose(cache.mix(log_probs[t] + 3.0), full[t], rtol=1e-12, atol=1e-12)
    assert len(cache.keys) == settings.size


def test_a_repeated_word_is_recalled_and_a_huge_theta_stays_finite():
    hidden = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]) * 50
    tokens = np.array([3, 2, 3])  # at t = 2 the state is that of t = 0, after which came 2
    log_probs = np.log(np.full((3, 4), 0.25))
    got = cache_log_probs(hidden, tokens, log_probs, CacheSettings(10, 100.0, 0.5))
    assert np.isfinite(got).all()
    assert got[2, 2] == pytest.approx(math.log(0.5 * 0.25 + 0.5), rel=1e-12)  # the recall is all on position 0
    assert got[2, 1] == pytest.approx(math.log(0.5 * 0.25), rel=1e-12)


def test_logaddexp_keeps_a_value_exactly_where_the_other_side_is_empty():
    a = np.array([-3.2, -np.inf, -700.0, 0.1])
    b = np.array([-np.inf, -np.inf, -701.0, 0.2])
    got = logaddexp(a, b)
    assert got[0] == a[0] and got[1] == -np.inf
    np.testing.assert_allclose(got[2:], np.logaddexp(a[2:], b[2:]), rtol=1e-15)
    np.testing.assert_allclose(row_log_softmax(np.array([1.0, 2.0, 3.0], np.float32)),
                               np.log(np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum()), rtol=1e-12)


@pytest.mark.parametrize("size, theta, lam, fragment", [
    (0, 0.1, 0.1, "size"), (2.5, 0.1, 0.1, "size"), (5, -1.0, 0.1, "theta"), (5, float("inf"), 0.1, "theta"),
    (5, 0.1, 0.0, "lambda"), (5, 0.1, 1.0, "lambda"),
])
def test_bad_settings_are_one_line(size, theta, lam, fragment):
    with pytest.raises(UsageError, match=fragment):
        CacheSettings(size, theta, lam).validate()
    with pytest.raises(UsageError, match="export it again"):
        CacheSettings.from_json({"size": 5, "theta": 0.1}, "m.onnx")


def test_the_grid_picks_a_cache_where_the_poem_repeats_itself_and_none_where_it_cannot_help():
    from scratch.cache_choice import PoemStates, cached_log_prob, choose_cache

    rng = np.random.default_rng(0)
    tokens = np.tile(np.array([5, 6, 7, 8]), 10)  # a refrain, ten times
    hidden = np.eye(9)[tokens] + rng.standard_normal((40, 9)) * 0.01  # the state names the token just read
    poem = PoemStates(hidden, tokens, np.arange(1, 40) >= 2)
    log_p = np.full(int(poem.scored.sum()), math.log(1 / 50))  # a model that knows nothing: 1 in 50 each
    choice = choose_cache([poem], log_p)
    assert choice.lam > 0.3 and choice.inner_loss < 0.5 * -log_p.mean()
    np.testing.assert_allclose(-cached_log_prob([poem], log_p, choice).mean(), choice.inner_loss)
    sure = np.zeros_like(log_p)  # a model already certain of every target: the cache can only cost
    assert choose_cache([poem], sure).lam == 0.0


def repeating_corpus(folder: Path) -> Path:
    """Poems that repeat a refrain of their own: what only a cache of the poem at hand can know."""
    rng = np.random.default_rng(4)
    words = [f"w{i}" for i in range(40)]
    poems = []
    for _ in range(30):
        refrain = " ".join(rng.choice(words, 4))
        lines = [" ".join(rng.choice(words, 4)) if k % 2 else refrain for k in range(8)]
        poems.append("\n".join(lines))
    path = folder / "refrains.txt"
    path.write_text("\n\n\n".join(poems) + "\n", encoding="utf-8")
    return path


def test_export_chooses_a_cache_on_the_runs_validation_poems(tmp_path):
    import onnx
    from conftest import assert_usage_error, run_module

    from data.dataset import load_dataset
    from scratch.cache_choice import choose_for_run
    from wordrnn.run.folder import load_run

    corpus = repeating_corpus(tmp_path)
    run = tmp_path / "run"
    trained = run_module("torchmodels.train", "--data", str(corpus), "--context", "poem", "--bptt", "8",
                         "--batch-size", "4", "--cell", "lstm", "--epochs", "3", "--min-freq", "1", "--lr", "1e-2",
                         "--hidden-size", "16", "--embed-dim", "8", "--val-fraction", "0.2", "--quiet",
                         "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "m.onnx"
    result = run_module("export.onnx", "--run", str(run), "--out", str(out), "--cache-auto")
    assert result.returncode == 0, result.stderr
    assert "neural cache: size" in result.stdout and "validation poems" in result.stdout
    saved = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}["wordrnn.cache"])
    # the same choice, made here from the run folder and its validation poems
    loaded = load_run(run)
    ds = load_dataset(**{**loaded.config.dataset_args(), "data": str(corpus)}, vocab=loaded.vocab)
    choice = choose_for_run(loaded.member_params, "lstm", ds.val_ids, loaded.config.seq_len)
    assert choice.lam > 0 and saved == {"size": choice.size, "theta": choice.theta, "lambda": choice.lam}
    # and the weight for writing, chosen apart: the scoring cache's size and theta, a weight no larger, or none
    assert "neural cache for writing: " in result.stdout
    writing = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}["wordrnn.cache.write"])
    assert writing is None or (writing["size"], writing["theta"]) == (choice.size, choice.theta)
    assert writing is None or 0 < writing["lambda"] <= choice.lam

    both = run_module("export.onnx", "--run", str(run), "--out", str(tmp_path / "n.onnx"), "--cache-auto",
                      "--cache-size", "10")
    assert_usage_error(both, "--cache-auto chooses")
    corpus.write_text(corpus.read_text() + "\n\n\nan added poem\nof two lines\n")
    changed = run_module("export.onnx", "--run", str(run), "--out", str(tmp_path / "o.onnx"), "--cache-auto")
    assert_usage_error(changed, "SHA-256")

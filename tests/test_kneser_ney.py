"""The Kneser-Ney baseline: proper distributions, a hand-computed bigram, and the real corpus."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from wordrnn.bench.kneser_ney import FALLBACK_DISCOUNT, KneserNey, modified_discounts, select_order


def tiny_corpus(seed: int = 0) -> list[np.ndarray]:
    """Poems over ids 1..9 with some structure (repeated phrases) so higher orders have something to learn."""
    rng = np.random.default_rng(seed)
    phrases = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [2, 5, 7]]
    poems = []
    for _ in range(6):
        words: list[int] = []
        for _ in range(rng.integers(3, 7)):
            words += phrases[rng.integers(len(phrases))]
            if rng.random() < 0.3:
                words.append(int(rng.integers(1, 10)))
        poems.append(np.array(words, dtype=np.int64))
    return poems


def windows(poems: list[np.ndarray], T: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (T tokens -> next token) window inside each poem, as the RNN's dataset builds them."""
    xs = [p[i : i + T] for p in poems for i in range(len(p) - T)]
    ys = [p[i + T] for p in poems for i in range(len(p) - T)]
    return np.array(xs), np.array(ys)


V = 11  # ids 0..10: 0 (<unk>) and 10 never occur in the tiny corpus


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("discount", [None, 0.75])
def test_distribution_sums_to_one_and_is_positive(order, discount):
    model = KneserNey(order, discount=discount).fit(tiny_corpus(), V)
    contexts = [[1, 2, 3], [4, 5, 6], [0, 0, 0], [10, 10, 10], [9, 2, 5], [3, 4, 5]]
    short = [[], [2], [4, 5]]  # shorter than order-1 tokens: the highest order they allow
    for context in short:
        p = model.distribution(context)
        assert math.isclose(p.sum(), 1.0, rel_tol=0, abs_tol=1e-12) and (p > 0).all()
    for context in contexts:
        p = model.distribution(context)
        assert p.shape == (V,)
        assert math.isclose(p.sum(), 1.0, rel_tol=0, abs_tol=1e-12), (context, p.sum())
        assert (p > 0).all()
        # the per-target path computes the same numbers as the whole-row path
        lp = model.log_prob(np.array([context] * V), np.arange(V))
        np.testing.assert_allclose(np.exp(lp), p, rtol=1e-12)


def test_modified_discounts_are_estimated_for_real_counts():
    """A corpus with nonzero count-of-counts gets three different discounts, each below its count."""
    model = KneserNey(2).fit(tiny_corpus(), V)
    for level in model.levels:
        assert level.discounts != (FALLBACK_DISCOUNT,) * 3
        assert all(0 < d < j for j, d in enumerate(level.discounts, start=1))


def test_unigram_with_hand_computed_modified_discounts():
    # ids 1..4 once each (n1 = 4), 5 and 6 twice (n2 = 2), 7 three times (n3 = 1), 8 four times (n4 = 1)
    poem = [1, 2, 3, 4, 5, 5, 6, 6, 7, 7, 7, 8, 8, 8, 8]
    # Y = 4 / (4 + 2*2) = 0.5; D1 = 1 - 2*0.5*2/4 = 0.5; D2 = 2 - 3*0.5*1/2 = 1.25; D3+ = 3 - 4*0.5*1/1 = 1
    assert modified_discounts(counts_of(poem)) == pytest.approx((0.5, 1.25, 1.0))
    model = KneserNey(1).fit([np.array(poem)], 9)
    total = 15
    freed = (0.5 * 4 + 1.25 * 2 + 1.0 * 2) / total  # D1 N1 + D2 N2 + D3+ N3+, over c = 15
    expected = {
        0: freed / 9,
        1: (1 - 0.5) / total + freed / 9,
        5: (2 - 1.25) / total + freed / 9,
        7: (3 - 1.0) / total + freed / 9,
        8: (4 - 1.0) / total + freed / 9,
    }
    got = np.exp(model.log_prob(np.zeros((5, 0), dtype=np.int64), np.array(list(expected))))
    np.testing.assert_allclose(got, list(expected.values()), rtol=1e-12)


def counts_of(tokens: list[int]) -> list[int]:
    return [tokens.count(t) for t in sorted(set(tokens))]


def test_bigram_matches_hand_computation():
    """Two poems 'a b a c' and 'b a b' (a=1, b=2, c=3), V = 4, fixed discount D = 0.75."""
    model = KneserNey(2, discount=0.75).fit([np.array([1, 2, 1, 3]), np.array([2, 1, 2])], 4)
    D = 0.75
    # unigram level, continuation counts (distinct left neighbours; a poem start is one more):
    # a: left {b} + poem start = 2;  b: left {a} + poem start = 2;  c: left {a} = 1;  <unk>: 0;  total 5
    gamma0 = D * 3 / 5  # three word types with a nonzero count, each discounted by D
    p1 = {
        1: (2 - D) / 5 + gamma0 / 4,
        2: (2 - D) / 5 + gamma0 / 4,
        3: (1 - D) / 5 + gamma0 / 4,
        0: gamma0 / 4,
    }
    assert sum(p1.values()) == pytest.approx(1.0)
    # bigram level, raw counts: after a: b twice, c once (c(a) = 3); after b: a twice (c(b) = 2);
    # after c: nothing
    gamma_a = D * 2 / 3
    gamma_b = D * 1 / 2
    cases = {
        (1, 2): (2 - D) / 3 + gamma_a * p1[2],
        (1, 3): (1 - D) / 3 + gamma_a * p1[3],
        (1, 1): gamma_a * p1[1],
        (2, 1): (2 - D) / 2 + gamma_b * p1[1],
        (2, 0): gamma_b * p1[0],
        (3, 2): p1[2],  # 'c' never has a successor: its row is the unigram distribution
        (0, 3): p1[3],
    }
    contexts = np.array([[h] for h, _ in cases])
    targets = np.array([w for _, w in cases])
    np.testing.assert_allclose(np.exp(model.log_prob(contexts, targets)), list(cases.values()), rtol=1e-12)
    # a wider context window uses only its last token
    wide = np.concatenate([np.full((len(cases), 3), 3), contexts], axis=1)
    np.testing.assert_allclose(model.log_prob(wide, targets), model.log_prob(contexts, targets), rtol=1e-12)


def test_counts_stay_inside_each_poem():
    """'1 2' ends one poem and '3' opens the next: the pair (2, 3) must not be counted."""
    joined = KneserNey(2, discount=0.75).fit([np.array([1, 2, 3, 1])], 5)
    split = KneserNey(2, discount=0.75).fit([np.array([1, 2]), np.array([3, 1])], 5)
    assert 3 in joined.levels[1].discounted[(2,)]
    assert (2,) not in split.levels[1].total
    assert split.distribution([2])[3] < joined.distribution([2])[3]


def test_higher_order_fits_training_data_better():
    poems = tiny_corpus()
    x, y = windows(poems, T=4)
    ppl = [KneserNey(n).fit(poems, V).perplexity(x, y) for n in (1, 2, 3, 4)]
    assert all(a > b for a, b in zip(ppl, ppl[1:], strict=False)), ppl
    assert ppl[-1] > 1.0


def test_select_order_returns_the_lowest_perplexity():
    train, val = tiny_corpus(0), tiny_corpus(1)
    x, y = windows(val, T=4)
    best, ppl = select_order(train, x, y, V)
    assert sorted(ppl) == [1, 2, 3, 4]
    assert ppl[best] == min(ppl.values())
    assert all(np.isfinite(v) and v > 1 for v in ppl.values())


def test_evaluate_agrees_with_perplexity_and_ranks():
    poems = tiny_corpus()
    x, y = windows(poems, T=4)
    model = KneserNey(3).fit(poems, V)
    metrics = model.evaluate(x, y)
    assert metrics["val_loss"] == pytest.approx(-model.log_prob(x, y).mean(), rel=1e-12)
    assert metrics["val_ppl"] == pytest.approx(model.perplexity(x, y), rel=1e-12)
    dists = [model.distribution(c) for c in x]
    rank = np.array([(p > p[t]).sum() for p, t in zip(dists, y, strict=True)])
    assert metrics["val_top1"] == pytest.approx(np.mean(rank == 0))
    assert metrics["val_top5"] == pytest.approx(np.mean(rank < 5))
    assert 0 < metrics["val_top1"] < metrics["val_top5"] <= 1.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        KneserNey(0)
    with pytest.raises(ValueError):
        KneserNey(2).fit([np.array([1, 5])], 5)
    model = KneserNey(3).fit(tiny_corpus(), V)
    with pytest.raises(ValueError):
        model.log_prob(np.zeros((2, 1), dtype=np.int64), np.zeros(2, dtype=np.int64))


@pytest.mark.skipif(not os.environ.get("WORDRNN_DATA"), reason="WORDRNN_DATA is not set")
def test_real_corpus_orders():
    """Per-order validation perplexity on the default split (an earlier bigram scored about 495)."""
    from data.dataset import load_dataset
    from wordrnn.core.config import Config

    ds = load_dataset(**Config(data=os.environ["WORDRNN_DATA"]).dataset_args())
    V = len(ds.vocab)
    best, ppl = select_order(ds.train_ids, ds.val_x, ds.val_y, V)
    print(f"\nKneser-Ney validation perplexity (V={V}, {len(ds.val_y)} targets):")
    for n, value in ppl.items():
        print(f"  order {n}: {value:.1f}{'  <- best' if n == best else ''}")
    assert all(math.isfinite(v) and 1 < v < V for v in ppl.values())
    assert ppl[2] < ppl[1]


# ------------------------------------------------------------------ Kneser-Ney + a cache of the poem so far


def repetitive_poems(n: int, seed: int, themes: int = 3, length: int = 40) -> list[np.ndarray]:
    """Poems over ids 1..30 in which each poem keeps coming back to its own few theme words (a refrain, a name):
    what a cache of the poem so far can recall and the corpus-wide n-gram counts cannot."""
    rng = np.random.default_rng(seed)
    poems = []
    for _ in range(n):
        theme = rng.choice(np.arange(1, 31), size=themes, replace=False)
        words = [int(rng.choice(theme)) if rng.random() < 0.6 else int(rng.integers(1, 31)) for _ in range(length)]
        poems.append(np.array(words, dtype=np.int64))
    return poems


def distinct_poems(n: int, seed: int, length: int = 20) -> list[np.ndarray]:
    """Poems in which no id occurs twice: a cache of the poem so far never holds the next word."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.arange(1, 31))[:length].astype(np.int64) for _ in range(n)]


VC = 32  # ids 0..31 for the cache tests
SEQ = 4  # tokens before each target, as --seq-len


def test_the_cache_lowers_perplexity_where_poems_repeat_themselves():
    from wordrnn.bench.ngram_cache import CachedKneserNey, choose_cache

    train, val, test = repetitive_poems(40, 0), repetitive_poems(8, 1), repetitive_poems(8, 2)
    models = {n: KneserNey(n).fit(train, VC) for n in (1, 2, 3)}
    (vx, vy), (tx, ty) = windows(val, SEQ), windows(test, SEQ)
    choice = choose_cache({n: m.log_prob(vx, vy) for n, m in models.items()}, val, SEQ)
    assert choice.weight > 0
    kn = min(models.values(), key=lambda m: m.perplexity(vx, vy))
    cached = CachedKneserNey(models[choice.order], choice.half_life, choice.weight)
    kn_ppl = kn.perplexity(tx, ty)
    cached_ppl = math.exp(-cached.target_log_prob(tx, ty, test, SEQ).mean())
    assert cached_ppl < 0.9 * kn_ppl, (cached_ppl, kn_ppl)


@pytest.mark.parametrize("half_life", [5.0, 50.0, math.inf])
def test_the_cached_distribution_sums_to_one_and_each_target_is_its_row(half_life):
    from wordrnn.bench.ngram_cache import CachedKneserNey

    poems = repetitive_poems(12, 3)
    model = CachedKneserNey(KneserNey(3).fit(poems, VC), half_life, 0.3)
    poem = repetitive_poems(1, 4, length=25)[0]
    logp = model.target_log_prob(*windows([poem], SEQ), [poem], SEQ)
    for t in range(SEQ, len(poem)):
        p = model.distribution(poem[:t])
        assert math.isclose(p.sum(), 1.0, rel_tol=0, abs_tol=1e-12) and (p > 0).all()
        assert math.isclose(math.exp(logp[t - SEQ]), p[poem[t]], rel_tol=1e-12)


def test_the_cache_never_looks_ahead():
    """The probability of every candidate for position t, read off the per-target path with that candidate
    written at t and anything at all after it, is the row of the text before t: the cache holds neither the word it
    predicts nor any after it."""
    from wordrnn.bench.ngram_cache import CachedKneserNey

    model = CachedKneserNey(KneserNey(2).fit(repetitive_poems(12, 5), VC), 10.0, 0.5)
    prefix = repetitive_poems(1, 6, length=12)[0]
    rng = np.random.default_rng(7)
    for t in (SEQ, 8, 12):
        row = np.empty(VC)
        for w in range(VC):
            poem = np.concatenate([prefix[:t], [w], rng.integers(0, VC, size=6)])
            row[w] = math.exp(model.target_log_prob(*windows([poem], SEQ), [poem], SEQ)[t - SEQ])
        assert math.isclose(row.sum(), 1.0, rel_tol=0, abs_tol=1e-12)
        np.testing.assert_allclose(row, model.distribution(prefix[:t]), rtol=1e-12)


def test_the_decayed_cache_by_hand():
    from wordrnn.bench.ngram_cache import cache_distribution, decay_of, poem_cache_probs

    d = decay_of(1.0)
    assert d == 0.5 and decay_of(math.inf) == 1.0
    # "a b a c": at t = 3 (predicting c) the weights of positions 0, 1, 2 are 1/4, 1/2, 1 -> a 5/7, b 2/7
    np.testing.assert_allclose(cache_distribution([1, 2, 1], 4, d), [0, 5 / 7, 2 / 7, 0], rtol=1e-12)
    np.testing.assert_allclose(poem_cache_probs([1, 2, 1, 1], d), [0, 0, 1 / 3, 5 / 7], rtol=1e-12)
    with pytest.raises(ValueError):
        decay_of(0.0)


def fold_where(inner_val, heldout):
    """Fold 1 of 4 over 16 poems whose inner validation poems are ``inner_val(seed)`` and held-out poems
    ``heldout(seed)`` (the split is seeded, so it is known before the poems are written)."""
    from wordrnn.bench.folds import build_folds, fold_split, inner_split

    n, k = 16, 4
    held = fold_split(n, k, seed=0)[0]
    _, val = inner_split(np.setdiff1d(np.arange(n), held), seed=0)
    ids = {}
    for j in range(n):
        make = inner_val if j in val else heldout if j in held else (repetitive_poems if j % 2 else distinct_poems)
        ids[j] = make(1, j)[0]
    tokens = [[f"w{i}" for i in ids[j]] for j in range(n)]
    fold = build_folds(tokens, k, SEQ, min_freq=1, seed=0)[0]
    assert set(fold.inner_val) == set(val) and set(fold.heldout) == set(held)
    return fold


def test_the_cache_and_the_strongest_ngram_are_chosen_on_inner_validation_only():
    """Held-out poems that repeat themselves and inner validation poems that never do: a choice that looked at the
    held-out poems would take the cache; one made on inner validation takes Kneser-Ney alone. And the other way
    round: the cache chosen on inner validation stays chosen though it scores the held-out poems worse."""
    from wordrnn.bench.quality import ngram_for_fold

    fold = fold_where(inner_val=distinct_poems, heldout=repetitive_poems)
    ngram = ngram_for_fold(fold, SEQ)
    assert ngram.choice["kneser_ney_cache"]["weight"] == 0.0
    assert ngram.choice["strongest_ngram"] == "kneser-ney"
    np.testing.assert_array_equal(ngram.test["strongest-ngram"], ngram.test["kneser-ney"])
    # the held-out poems would have paid for a cache
    from wordrnn.bench.ngram_cache import CachedKneserNey

    helpful = CachedKneserNey(ngram.kn, 20.0, 0.3).target_log_prob(fold.test_x, fold.test_y, fold.test_ids, SEQ)
    assert helpful.mean() > ngram.test["kneser-ney"].mean()

    fold = fold_where(inner_val=repetitive_poems, heldout=distinct_poems)
    ngram = ngram_for_fold(fold, SEQ)
    assert ngram.choice["kneser_ney_cache"]["weight"] > 0
    assert ngram.choice["strongest_ngram"] == "kneser-ney-cache"
    assert ngram.test["strongest-ngram"].mean() < ngram.test["kneser-ney"].mean()  # worse on held-out, kept

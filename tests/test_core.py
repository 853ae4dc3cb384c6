"""The framework-neutral core: config, initializer, sampler, run folders, and the training loop
(driven here by a tiny bigram backend, so these tests need no framework)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_tiny_corpus

from data.dataset import load_dataset
from data.vocab import Vocab
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.metrics import evaluate
from wordrnn.core.params import check_params, init_params, param_shapes
from wordrnn.core.sampling import SamplerSettings, SplitMix64, generate, next_token
from wordrnn.run.folder import load_run, read_metrics
from wordrnn.run.generation import prompt_to_ids
from wordrnn.run.loop import Diverged, train


class BigramBackend:
    """logits = W[last token]: small enough to differentiate by hand, enough to drive the loop."""

    framework = "bigram"
    process_index = 0

    def __init__(self, explode_at: int | None = None):
        self.explode_at = explode_at

    def init(self, params, config):
        return {"p": {k: v.copy() for k, v in params.items()}, "lr": config.lr, "V": config.vocab_size}

    def _table(self, state):
        return state["p"]["out.weight"][:, :state["V"]].T  # reuse a [V, V] slice of canonical weights

    def train_step(self, state, chunk, carry, step):
        W = self._table(state)
        x, y = chunk.x, chunk.y  # windows only: the last token, its target
        z = W[x[:, -1]]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y]).mean()
        p[np.arange(len(y)), y] -= 1
        np.subtract.at(W, x[:, -1], state["lr"] * p / len(y))
        if self.explode_at is not None and step >= self.explode_at:
            loss = np.nan
        return state, loss, None

    def logits(self, state, x, carry=None, last_only=False):
        return self._table(state)[x[:, -1]], None

    def canonical(self, state):
        return {k: v.copy() for k, v in state["p"].items()}

    def optimizer_arrays(self, state):
        return {}

    def load_optimizer_arrays(self, state, arrays):
        return state


def tiny_config(corpus, **overrides) -> Config:
    # hidden_size >= V so that out.weight [V, H] holds a [V, V] bigram table
    values = dict(data=str(corpus), seq_len=3, min_freq=1, val_fraction=0.34, hidden_size=128, epochs=3,
                  batch_size=8, lr=0.5, optimizer="sgd")  # the bigram backend steps like SGD: no state
    values.update(overrides)
    return Config(**values).validate()


# ---------------------------------------------------------------- config and parameters

@pytest.mark.parametrize("field, value, flag", [
    ("hidden_size", 0, "--hidden-size"), ("lr", -1.0, "--lr"), ("val_fraction", 1.0, "--val-fraction"),
    ("model", "lstm", "--model"), ("dropout", 1.0, "--dropout"), ("batch_size", -3, "--batch-size"),
])
def test_config_rejects_nonsense(field, value, flag):
    with pytest.raises(UsageError, match=flag):
        Config(**{field: value}).validate()


def test_config_round_trips_through_a_dict():
    config = Config(model="onehot", hidden_size=7, extra={"device": "cpu"})
    assert Config.from_dict({**config.to_dict(), "framework": "x"}) == config


def test_initializer_is_seeded_and_shaped_like_torch():
    config = Config(model="embedding", vocab_size=50, hidden_size=16, embed_dim=8, seed=3)
    a, b = init_params(config), init_params(config)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert {k: v.shape for k, v in a.items()} == param_shapes(config)
    assert all(v.dtype == np.float32 for v in a.values())
    bound = 1 / np.sqrt(16)
    assert np.abs(a["rnn.w_hh"]).max() <= bound and np.abs(a["out.bias"]).max() <= bound
    assert not np.array_equal(a["rnn.w_hh"], init_params(config, seed=4)["rnn.w_hh"])
    onehot = Config(model="onehot", vocab_size=50, hidden_size=16)
    assert "embedding" not in init_params(onehot) and init_params(onehot)["rnn.w_ih"].shape == (16, 50)


def test_check_params_names_the_mismatch():
    config = Config(model="onehot", vocab_size=10, hidden_size=4)
    params = init_params(config)
    params["out.weight"] = params["out.weight"][:9]
    with pytest.raises(UsageError, match="out.weight"):
        check_params(params, config)


# ---------------------------------------------------------------- metrics and sampler

def test_evaluate_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((40, 9))
    y = rng.integers(0, 9, 40)
    m = evaluate(lambda xb: logits[xb[:, 0]], np.arange(40)[:, None], y, batch_size=7)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -logp[np.arange(40), y]
    assert m["val_loss"] == pytest.approx(nll.mean())
    assert m["val_ppl"] == pytest.approx(np.exp(nll.mean()))
    assert m["val_ppl_known"] == pytest.approx(np.exp(nll[y != 0].mean()))
    assert m["val_top1"] == pytest.approx(np.mean(logits.argmax(1) == y))
    top5 = np.argsort(-logits, 1)[:, :5]
    assert m["val_top5"] == pytest.approx(np.mean([y[i] in top5[i] for i in range(40)]))


def test_sampler_greedy_topk_topp_and_seed():
    logits = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1]))
    rng = SplitMix64(0)
    assert next_token(logits, SamplerSettings("greedy"), rng) == 1
    assert next_token(logits, SamplerSettings("greedy", allow_unk=True), rng) == 1
    draws = {next_token(logits, SamplerSettings(top_k=2), rng) for _ in range(200)}
    assert draws == {1, 2}
    draws = {next_token(logits, SamplerSettings(top_p=0.75), rng) for _ in range(300)}
    assert draws == {1, 2, 3}  # 0.4/0.95 + 0.3/0.95 < 0.75 <= ... + 0.15/0.95
    draws = {next_token(logits, SamplerSettings(), rng) for _ in range(300)}
    assert 0 not in draws and draws == {1, 2, 3, 4}


def test_generate_is_deterministic_for_a_seed_and_uses_the_last_seq_len_tokens():
    seen = []

    def logits_fn(context):
        seen.append(context.shape[1])
        return np.tile(np.linspace(0, 1, 7), (1, 1))

    a = generate(logits_fn, [3], 6, seq_len=4, settings=SamplerSettings(seed=5))
    b = generate(logits_fn, [3], 6, seq_len=4, settings=SamplerSettings(seed=5))
    assert a == b and seen[:6] == [1, 2, 3, 4, 4, 4]


def test_prompt_errors():
    vocab = Vocab(["<unk>", "the", "sea"])
    assert prompt_to_ids("The SEA", vocab) == [1, 2]
    with pytest.raises(UsageError, match="empty"):
        prompt_to_ids("  ", vocab)
    with pytest.raises(UsageError, match="<unk>"):
        prompt_to_ids("zebra quartz", vocab)


# ---------------------------------------------------------------- the loop

def test_loop_writes_a_complete_run_folder(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    result = train(tiny_config(corpus), BigramBackend(), tmp_path / "run", quiet=True)
    run = load_run(tmp_path / "run")
    assert run.framework == "bigram" and run.config.vocab_size == len(run.vocab)
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_ppl", "val_top1", "val_top5", "seconds", "best_epoch"} <= set(rows[0])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result.best_epoch == min(rows, key=lambda r: r["val_loss"])["epoch"]
    assert (tmp_path / "run" / "samples.txt").read_text().count("--- prompt") == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["versions"]["numpy"]
    assert not list((tmp_path / "run").glob(".*tmp"))


def test_resume_equals_an_uninterrupted_run(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    train(tiny_config(corpus, epochs=3), BigramBackend(), tmp_path / "full", quiet=True)
    train(tiny_config(corpus, epochs=1), BigramBackend(), tmp_path / "part", quiet=True)
    train(tiny_config(corpus, epochs=3), BigramBackend(), tmp_path / "part", resume=True, quiet=True)
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "full")) == strip(read_metrics(tmp_path / "part"))
    full, part = load_run(tmp_path / "full").params, load_run(tmp_path / "part").params
    assert all(np.array_equal(full[k], part[k]) for k in full)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_epoch(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    config = tiny_config(corpus, epochs=5)
    steps_per_epoch = -(-len(load_dataset(**config.dataset_args()).train_x) // config.batch_size)  # the last short
    with pytest.raises(Diverged, match=f"step {steps_per_epoch + 2} \\(epoch 2\\)"):
        train(config, BigramBackend(explode_at=steps_per_epoch + 2), tmp_path / "run", quiet=True)
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]
    load_run(tmp_path / "run")  # still complete


def test_an_existing_run_is_not_overwritten_silently(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    train(tiny_config(corpus, epochs=1), BigramBackend(), tmp_path / "run", quiet=True)
    with pytest.raises(UsageError, match="--resume"):
        train(tiny_config(corpus, epochs=1), BigramBackend(), tmp_path / "run", quiet=True)
    with pytest.raises(UsageError, match="already trained 1 epoch;"):
        train(tiny_config(corpus, epochs=1), BigramBackend(), tmp_path / "run", resume=True, quiet=True)
    with pytest.raises(UsageError, match="nothing to resume"):
        train(tiny_config(corpus), BigramBackend(), tmp_path / "empty", resume=True, quiet=True)


def test_init_from_reuses_the_source_vocabulary_and_weights(tmp_path):
    corpus = write_tiny_corpus(tmp_path)
    train(tiny_config(corpus, epochs=1), BigramBackend(), tmp_path / "a", quiet=True)
    source = load_run(tmp_path / "a")
    result = train(tiny_config(corpus, epochs=1, min_freq=2, hidden_size=200), BigramBackend(), tmp_path / "b",
                   init_from=tmp_path / "a", quiet=True, given={"epochs"})
    b = load_run(tmp_path / "b")
    assert b.vocab.tokens == source.vocab.tokens and result.config.hidden_size == 128


def test_sample_prompts_fall_back_to_a_word_the_vocabulary_knows():
    from data.vocab import Vocab
    from wordrnn.run.loop import SAMPLE_PROMPTS, sample_prompts

    poems = [["stone", "and", "stone", ",", "\n", "the", "dust"]]
    vocab = Vocab.build(poems, min_freq=1, tokenizer="default")
    prompts = sample_prompts(vocab)
    assert SAMPLE_PROMPTS == ("the sea", "my love", "the night")
    assert prompts == ["the sea", "stone", "the night"]  # no word of "my love" is known: the most frequent word
    only_punctuation = Vocab.build([[",", "\n"]], min_freq=1, tokenizer="default")
    assert sample_prompts(only_punctuation) == []

"""The generation contract in Python (docs/GENERATION.md): SplitMix64, the sampler, the tokenizer, linear streaming."""

from __future__ import annotations

import io
import re
import sys
import unicodedata

import numpy as np
import pytest
from generation_reference import draw_margin
from hypothesis import given, settings
from hypothesis import strategies as st

from data import tokenizer as tokenizer_module
from data.tokenizer import NEWLINE, Detokenizer, detokenize, tokenize
from data.vocab import Vocab
from wordrnn.core.errors import UsageError
from wordrnn.core.sampling import (
    SamplerSettings,
    SplitMix64,
    generate,
    masked_logits,
    next_token,
    pick,
    probabilities,
)
from wordrnn.run.generation import generate_text

# ---------------------------------------------------------------- SplitMix64

def test_splitmix64_is_the_published_generator():
    # The first outputs for seed 0 of Vigna's reference splitmix64.c.
    rng = SplitMix64(0)
    assert [rng.next_u64() for _ in range(4)] == [
        0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC]


def test_a_draw_is_the_top_53_bits_over_2_to_the_53():
    a, b = SplitMix64(2**64 - 1), SplitMix64(2**64 - 1)
    for _ in range(100):
        u, x = a.random(), b.next_u64()
        assert 0.0 <= u < 1.0 and u == (x >> 11) / 2**53
    with pytest.raises(UsageError, match="seed"):
        SplitMix64(2**64)
    with pytest.raises(UsageError, match="seed"):
        SamplerSettings(seed=-1).validate()


# ---------------------------------------------------------------- the sampler, step by step

LOGITS = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1], dtype=np.float32))


def test_unk_is_never_written_unless_allowed():
    assert masked_logits(LOGITS, SamplerSettings())[0] == -np.inf
    assert masked_logits(LOGITS, SamplerSettings(allow_unk=True))[0] == LOGITS[0]
    assert masked_logits(LOGITS[:1], SamplerSettings())[0] == LOGITS[0]  # a one-token vocabulary keeps it


def test_greedy_takes_the_lowest_id_of_equal_maxima_and_no_draw():
    rng = SplitMix64(0)
    assert next_token(np.array([0.0, 2.0, 1.0, 2.0]), SamplerSettings("greedy"), rng) == 1
    assert rng.state == 0


def test_top_k_keeps_ties_with_the_kth_value():
    z = masked_logits(np.log(np.array([0.1, 0.3, 0.2, 0.2, 0.2])), SamplerSettings())
    p = probabilities(z, SamplerSettings(top_k=2))
    assert p[0] == 0 and np.all(p[1:] > 0)  # the 2nd largest value, 0.2, is shared by three tokens
    p = probabilities(z, SamplerSettings(top_k=1))
    assert np.flatnonzero(p).tolist() == [1] and p[1] == 1.0


def test_top_p_keeps_the_smallest_most_likely_set_that_reaches_p_then_renormalizes():
    z = masked_logits(LOGITS, SamplerSettings())
    p = probabilities(z, SamplerSettings(top_p=0.75))
    assert np.flatnonzero(p).tolist() == [1, 2, 3]  # 0.4/0.95 + 0.3/0.95 < 0.75 <= ... + 0.15/0.95
    assert np.cumsum(p)[-1] == pytest.approx(1.0, abs=1e-15)
    assert p[1] / p[2] == pytest.approx(0.4 / 0.3, rel=1e-6)


def test_pick_is_the_first_cumulative_sum_above_the_draw_and_never_a_zero():
    p = np.array([0.0, 0.25, 0.0, 0.5, 0.25])
    assert [pick(p, u) for u in (0.0, 0.2499, 0.25, 0.74, 0.75, 0.999999)] == [1, 1, 3, 3, 4, 4]
    assert pick(np.array([0.5, 0.5, 0.0]), np.nextafter(1.0, 0.0)) == 1
    assert draw_margin(p, 0.2499) == pytest.approx(1e-4)


def test_temperature_sharpens_and_draws_follow_the_distribution():
    rng = SplitMix64(0)
    counts = np.bincount([next_token(LOGITS, SamplerSettings(), rng) for _ in range(4000)], minlength=5)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / 4000, np.array([0.4, 0.3, 0.15, 0.1]) / 0.95, atol=0.03)
    p_cold = probabilities(masked_logits(LOGITS, SamplerSettings()), SamplerSettings(temperature=0.5))
    assert p_cold[1] == pytest.approx(0.4**2 / (0.4**2 + 0.3**2 + 0.15**2 + 0.1**2), rel=1e-6)


def test_the_same_seed_gives_the_same_tokens_and_the_context_is_the_last_seq_len():
    seen = []

    def logits_fn(context):
        seen.append(context.shape[1])
        return np.linspace(0, 1, 7)[None]

    a = generate(logits_fn, [3], 6, seq_len=4, settings=SamplerSettings(seed=5))
    assert a == generate(logits_fn, [3], 6, seq_len=4, settings=SamplerSettings(seed=5))
    assert a != generate(logits_fn, [3], 6, seq_len=4, settings=SamplerSettings(seed=6))
    assert seen[:6] == [1, 2, 3, 4, 4, 4]


# ---------------------------------------------------------------- tokenizer

def test_word_characters_are_exactly_the_unicode_letters_and_numbers():
    word = re.compile(r"[^\W_]")
    for code in range(sys.maxunicode + 1):
        c = chr(code)
        assert bool(word.match(c)) == (unicodedata.category(c)[0] in "LN"), hex(code)


def test_whitespace_is_the_contracts_list():
    listed = [0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
              0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
    assert [c for c in range(sys.maxunicode + 1) if re.match(r"\s", chr(c))] == listed


def test_tokenizer_folds_nfc_and_collapses_newlines():
    assert tokenize("Cafe\u0301 CAF\u00c9") == ["caf\u00e9", "caf\u00e9"]
    assert tokenize("\n\n a \n \n\n\n b\nc \n\n") == ["a", NEWLINE, NEWLINE, "b", NEWLINE, "c"]


# ---------------------------------------------------------------- detokenizer: incremental == batch, linear

def batch_detokenize(tokens: list[str]) -> str:
    """The batch join as it was written before streaming became incremental (the reference)."""
    out: list[str] = []
    for token in tokens:
        if token == NEWLINE:
            while out and out[-1] == " ":
                out.pop()
            out.append(NEWLINE)
            continue
        if (out and out[-1] != NEWLINE and out[-1][-1] not in tokenizer_module.NO_SPACE_AFTER
                and token not in tokenizer_module.NO_SPACE_BEFORE):
            out.append(" ")
        out.append(token)
    return re.sub(r"[^\S\n]+", " ", "".join(out)).strip(" ")


TOKENS = st.lists(st.sampled_from(["the", "sea", NEWLINE, ",", ".", "(", ")", "'", "'s", "n't", "[", "o'er", "<unk>"]),
                  max_size=60)


@given(TOKENS)
@settings(max_examples=300, deadline=None)
def test_incremental_pieces_join_to_the_batch_text(tokens):
    detok = Detokenizer()
    pieces = [detok.push(t) for t in tokens]
    assert "".join(pieces) == batch_detokenize(tokens) == detokenize(tokens)


def test_streaming_detokenizes_each_token_once(monkeypatch):
    vocab = Vocab(["<unk>", NEWLINE, "the", "sea", ","])
    calls = []
    original = Detokenizer.push
    monkeypatch.setattr(Detokenizer, "push", lambda self, token: calls.append(token) or original(self, token))

    def logits_fn(context):  # a line break after every other token: many lines, the old quadratic case
        return np.array([[0.0, 5.0, 0.0, 0.0, 0.0]]) if context[0, -1] != 1 else np.array([[0.0, 0.0, 5.0, 5.0, 0.0]])

    stream = io.StringIO()
    n = 5000
    text = generate_text(logits_fn, vocab, 5, "the sea", n, SamplerSettings(seed=1), stream=stream)
    assert len(calls) == 2 + n  # the prompt's two tokens and each new token, once
    assert stream.getvalue() == text + "\n" and text.count(NEWLINE) >= n // 3

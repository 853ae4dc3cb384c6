"""The data pipeline: tokenizer, vocabulary, split, windows, batches, corpus location, bad input."""

from __future__ import annotations

import hashlib
import http.server
import threading

import numpy as np
import pytest
from conftest import TINY_POEMS, assert_usage_error, run_module, write_tiny_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from data.batches import batch_indices
from data.corpus import read_poems
from data.dataset import build_dataset, make_windows, split_poems
from data.locate import locate_corpus
from data.tokenizer import NEWLINE, detokenize, tokenize
from data.vocab import UNK, Vocab
from wordrnn.core.errors import UsageError

# ---------------------------------------------------------------- tokenizer

TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ éü'\u2019\u201c\u201d\",.;:!?-()\n\r\t 7_")), max_size=80)


@given(TEXT)
@settings(max_examples=300, deadline=None)
def test_detokenize_round_trips(text):
    tokens = tokenize(text)
    assert tokenize(detokenize(tokens)) == tokens


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_tokens_are_lowercase_words_marks_or_newlines(text):
    for token in tokenize(text):
        assert token == NEWLINE or not any(c.isspace() for c in token)
        assert token == token.lower()
        assert "\u2019" not in token and "\u201c" not in token


def test_tokenizer_keeps_verse_and_punctuation():
    tokens = tokenize("O my Luve\u2019s like a red, red rose\r\nThat\u2019s newly sprung;\n\n\n\nNew stanza")
    assert tokens == ["o", "my", "luve's", "like", "a", "red", ",", "red", "rose", NEWLINE,
                      "that's", "newly", "sprung", ";", NEWLINE, NEWLINE, "new", "stanza"]
    assert detokenize(tokens) == "o my luve's like a red, red rose\nthat's newly sprung;\n\nnew stanza"


def test_whitespace_mode_is_the_lab_reports_split():
    text = "The Sea,  is CALM\ntonight."
    assert tokenize(text, "whitespace") == text.lower().split()


# ---------------------------------------------------------------- vocabulary

def test_vocab_min_freq_unk_and_json_round_trip():
    poems = [["b", "a", "a", "c"], ["a", "b", "d"]]
    vocab = Vocab.build(poems, min_freq=2)
    assert vocab.tokens == [UNK, "a", "b"]
    assert vocab.encode(["a", "c", "zzz", "b"]).tolist() == [1, 0, 0, 2]
    again = Vocab.from_json(vocab.to_json())
    assert again.tokens == vocab.tokens and again.min_freq == 2 and again.tokenizer == "default"
    assert Vocab.build(poems, min_freq=1).tokens == [UNK, "a", "b", "c", "d"]


# ---------------------------------------------------------------- split, windows, batches

def test_windows_never_cross_a_poem():
    poems = [np.arange(0, 7), np.arange(100, 103), np.arange(200, 206)]
    x, y = make_windows(poems, seq_len=3)
    assert len(x) == (7 - 3) + 0 + (6 - 3)
    for window, target in zip(x, y):
        seq = np.append(window, target)
        assert np.all(np.diff(seq) == 1), seq  # consecutive ids = the same poem


def test_split_is_seeded_disjoint_and_complete():
    train, val = split_poems(50, 0.2, seed=3)
    again = split_poems(50, 0.2, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert len(val) == 10 and set(train) | set(val) == set(range(50)) and not set(train) & set(val)
    assert not np.array_equal(val, split_poems(50, 0.2, seed=4)[1])


def test_batches_are_seeded_and_cover_every_window_once():
    first = list(batch_indices(103, 10, seed=1, epoch=2))
    assert [len(b) for b in first] == [10] * 10 + [3]
    assert sorted(np.concatenate(first).tolist()) == list(range(103))
    again = list(batch_indices(103, 10, seed=1, epoch=2))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other_epoch = np.concatenate(list(batch_indices(103, 10, seed=1, epoch=3)))
    assert not np.array_equal(np.concatenate(first), other_epoch)


def test_dataset_vocab_comes_from_training_poems_only():
    ds = build_dataset(TINY_POEMS, seq_len=2, min_freq=1, val_fraction=0.34, seed=0)
    train_words = {t for ids in ds.train_ids for t in ds.vocab.decode(ids)}
    assert set(ds.vocab.tokens) == train_words | {UNK}
    assert len(ds.train_x) == sum(len(p) - 2 for p in ds.train_ids)
    assert ds.val_x.dtype == np.int64 and ds.val_x.shape[1] == 2


# ---------------------------------------------------------------- reading files

def test_reads_csv_with_crlf_and_other_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b'id,poem\r\n1,"line one\r\nline two"\r\n2,second\r\n')
    assert read_poems(path, "poem") == ["line one\nline two", "second"]


def test_reads_txt_poems_separated_by_blank_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("first poem\nline\n\nsecond poem\n")
    assert read_poems(path) == ["first poem\nline", "second poem\n"]
    path.write_text("one\n\nstanza two\n\n\npoem two")
    assert read_poems(path) == ["one\n\nstanza two", "poem two"]


def test_real_corpus_has_100_poems(real_corpus):
    assert len(read_poems(real_corpus)) == 100


# ---------------------------------------------------------------- locating and downloading

class _Server:
    def __init__(self, payload: bytes):
        handler = type("H", (http.server.BaseHTTPRequestHandler,), {
            "do_GET": lambda self: (self.send_response(200), self.send_header("Content-Length", str(len(payload))),
                                    self.end_headers(), self.wfile.write(payload)),
            "log_message": lambda *a: None,
        })
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/poems-100.csv"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("WORDRNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "wordrnn" / "poems-100.csv"


def test_download_with_right_checksum_is_cached_and_used(no_local_copy):
    payload = b"text\nhello world\n"
    server = _Server(payload)
    try:
        found = locate_corpus(None, url=server.url, sha256=hashlib.sha256(payload).hexdigest())
    finally:
        server.close()
    assert found == no_local_copy and found.read_bytes() == payload
    digest = hashlib.sha256(payload).hexdigest()
    assert locate_corpus(None, url="http://127.0.0.1:9/never", sha256=digest) == no_local_copy  # cache hit


def test_a_truncated_cached_copy_is_fetched_again(no_local_copy, capsys):
    payload = b"text\nhello world\n"
    no_local_copy.parent.mkdir(parents=True)
    no_local_copy.write_bytes(payload[:7])
    server = _Server(payload)
    try:
        found = locate_corpus(None, url=server.url, sha256=hashlib.sha256(payload).hexdigest())
    finally:
        server.close()
    assert found.read_bytes() == payload
    assert "damaged or truncated" in capsys.readouterr().err


def test_download_with_wrong_checksum_is_not_kept(no_local_copy):
    server = _Server(b"tampered")
    try:
        with pytest.raises(UsageError, match="SHA-256"):
            locate_corpus(None, url=server.url, sha256="0" * 64)
    finally:
        server.close()
    assert not no_local_copy.parent.exists() or not any(no_local_copy.parent.iterdir())


def test_offline_without_a_copy_says_how_to_supply_it(no_local_copy):
    with pytest.raises(UsageError, match="--data PATH"):
        locate_corpus(None, url="http://127.0.0.1:9/poems-100.csv", sha256="0" * 64)


def test_env_var_is_used_before_the_cache(tmp_path, monkeypatch):
    corpus = write_tiny_corpus(tmp_path)
    monkeypatch.setenv("WORDRNN_DATA", str(corpus))
    assert locate_corpus(None) == corpus
    assert locate_corpus(str(corpus)) == corpus


# ---------------------------------------------------------------- bad input, from the command line

def test_stats_command_prints_statistics(tiny_corpus):
    result = run_module("data", "--data", str(tiny_corpus), "--min-freq", "1", "--val-fraction", "0.3")
    assert result.returncode == 0, result.stderr
    assert "poems (train / validation)            6 (4 / 2)" in result.stdout


@pytest.mark.parametrize("make, args, fragment", [
    (lambda d: d / "missing.csv", [], "not a file"),
    (lambda d: (d / "empty.txt").write_text("") and None or d / "empty.txt", [], "no text"),
    (lambda d: (d / "c.csv").write_text("poem\nhello\n") and None or d / "c.csv", [], "no column 'text'"),
    (lambda d: (d / "b.txt").write_bytes(b"caf\xe9\xff") and None or d / "b.txt", [], "not UTF-8"),
    (lambda d: write_tiny_corpus(d), ["--seq-len", "400"], "too short"),
    (lambda d: write_tiny_corpus(d), ["--val-fraction", "1.5"], "--val-fraction"),
    (lambda d: write_tiny_corpus(d), ["--seq-len", "0"], "--seq-len"),
    (lambda d: write_tiny_corpus(d), ["--min-freq", "-1"], "--min-freq"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, args, fragment):
    path = make(tmp_path)
    result = run_module("data", "--data", str(path), *args)
    assert_usage_error(result, fragment)

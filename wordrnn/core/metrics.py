"""Evaluation from logits, in NumPy, the same for every framework."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def average_probabilities(logits: Sequence[np.ndarray]) -> np.ndarray:
    """The logits of an ensemble: ``log(mean_k softmax(logits_k))`` over the last axis, in the dtype of the first.

    Averaging probabilities, not logits, is what makes an ensemble a mixture: a word one member finds likely
    keeps a share of that probability however sure the others are that it is not. Computed stably, as the
    log-sum-exp of the members' log-softmaxes minus log N, so that no probability underflows to zero.
    """
    logp = np.stack([_log_softmax_last(np.asarray(z, dtype=np.float64)) for z in logits])
    top = logp.max(axis=0)
    mixed = top + np.log(np.exp(logp - top).sum(axis=0)) - np.log(len(logits))
    return mixed.astype(np.asarray(logits[0]).dtype)


def _log_softmax_last(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def ensemble_window(members: Sequence[Callable[[np.ndarray], np.ndarray]]) -> Callable[[np.ndarray], np.ndarray]:
    """A window model's logits function for the ensemble of ``members`` (one logits function each)."""
    if len(members) == 1:
        return members[0]
    return lambda x: average_probabilities([logits(x) for logits in members])


def score_rows(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target: the negative log-likelihood (nats), whether it ranked first, whether it ranked in the top 5."""
    logp = log_softmax(np.asarray(logits))
    target = logp[np.arange(len(y)), y]
    rank = (logp > target[:, None]).sum(axis=1)  # how many tokens score strictly higher
    return -target, rank < 1, rank < 5


def summarize(nll: np.ndarray, top1: np.ndarray, top5: np.ndarray, y: np.ndarray, unk_id: int = 0
              ) -> dict[str, float]:
    """Validation loss (nats), perplexity over all targets and over in-vocabulary targets, top-1/top-5.

    ``val_ppl`` counts every target, ``<unk>`` included (the headline);
    ``val_ppl_known`` only targets that are real words of the vocabulary (not ``unk_id``,
    ``data.vocab.Vocab.unk_id``: this base layer does not import ``data``).
    """
    known = y != unk_id
    loss = float(nll.mean())
    with np.errstate(over="ignore"):  # a diverging model has an infinite perplexity, not a warning
        return {
            "val_loss": loss,
            "val_ppl": float(np.exp(loss)),
            "val_ppl_known": float(np.exp(nll[known].mean())) if known.any() else float("nan"),
            "val_top1": float(top1.mean()),
            "val_top5": float(top5.mean()),
        }


def evaluate(logits_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
             batch_size: int = 1024, unk_id: int = 0) -> dict[str, float]:
    """``summarize`` of a window model over windows ``x`` [N, T] and their targets ``y`` [N]."""
    scores = [score_rows(logits_fn(x[start:start + batch_size]), y[start:start + batch_size])
              for start in range(0, len(y), batch_size)]
    nll, top1, top5 = (np.concatenate(parts) for parts in zip(*scores, strict=True))
    return summarize(nll, top1, top5, y, unk_id)


SequenceLogits = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]  # (x [B, T], carry) -> (logits [B, T, V], carry)


def ensemble_sequence(members: Sequence[SequenceLogits]) -> SequenceLogits:
    """A poem model's ``SequenceLogits`` for the ensemble of ``members``: its carry is the members' carries
    side by side (a tuple, None at the start), its logits their averaged probabilities."""
    if len(members) == 1:
        return members[0]

    def run(x: np.ndarray, carry: Any) -> tuple[np.ndarray, Any]:
        outs = [member(x, None if carry is None else own) for member, own in
                zip(members, carry if carry is not None else members, strict=True)]
        return average_probabilities([logits for logits, _ in outs]), tuple(own for _, own in outs)

    return run


def poem_target_logits(sequence_logits: SequenceLogits, poems: list[np.ndarray], min_context: int,
                       streams: int = 64, chunk: int = 128) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Read each poem whole from a zero state and yield (logits [N, V], targets [N], scored [N] bool) in
    pieces, poem by poem and in order: every target after a poem's first token, ``scored`` where it has at
    least ``min_context`` tokens before it (the window context's targets, so the two are compared on the
    same tokens). Poems are read ``streams`` at a time, ``chunk`` positions per call, the state carried."""
    for first in range(0, len(poems), streams):
        group = poems[first:first + streams]
        length = max(len(p) for p in group)
        x = np.zeros((len(group), length), np.int64)
        for row, ids in enumerate(group):
            x[row, :len(ids)] = ids
        carry = None
        pieces: list[list[np.ndarray]] = [[] for _ in group]
        for start in range(0, length - 1, chunk):
            logits, carry = sequence_logits(x[:, start:start + chunk], carry)
            for row, ids in enumerate(group):
                stop = min(start + chunk, len(ids) - 1)  # position p predicts token p + 1
                if stop > start:
                    pieces[row].append(logits[row, :stop - start])
        for row, ids in enumerate(group):
            if len(ids) > 1:
                positions = np.arange(1, len(ids))
                yield np.concatenate(pieces[row]), ids[1:], positions >= min_context


def evaluate_poems(sequence_logits: SequenceLogits, poems: list[np.ndarray], min_context: int,
                   unk_id: int = 0) -> dict[str, float]:
    """``summarize`` of a poem model over the window context's targets, plus ``val_ppl_all``: the perplexity
    over every token after a poem's first (more context-free tokens than the window context scores)."""
    parts = [(*score_rows(logits, y), y, scored) for logits, y, scored in
             poem_target_logits(sequence_logits, poems, min_context)]
    nll, top1, top5, y, scored = (np.concatenate(column) for column in zip(*parts, strict=True))
    row = summarize(nll[scored], top1[scored], top5[scored], y[scored], unk_id)
    with np.errstate(over="ignore"):
        row["val_ppl_all"] = float(np.exp(nll.mean()))
    return row

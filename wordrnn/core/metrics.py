"""Evaluation from logits, in NumPy, the same for every framework."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def evaluate(logits_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
             batch_size: int = 1024, unk_id: int = 0) -> dict[str, float]:
    """Validation loss (nats), perplexity over all targets and over in-vocabulary targets, top-1/top-5.

    ``val_ppl`` counts every target, ``<unk>`` included (the headline);
    ``val_ppl_known`` only targets that are real words of the vocabulary (not ``unk_id``,
    ``data.vocab.Vocab.unk_id``: this base layer does not import ``data``).
    """
    nll = np.empty(len(y))
    top1 = np.empty(len(y), dtype=bool)
    top5 = np.empty(len(y), dtype=bool)
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logp = log_softmax(np.asarray(logits_fn(xb)))
        target = logp[np.arange(len(yb)), yb]
        nll[start:start + len(yb)] = -target
        rank = (logp > target[:, None]).sum(axis=1)  # how many tokens score strictly higher
        top1[start:start + len(yb)] = rank < 1
        top5[start:start + len(yb)] = rank < 5
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

"""The NumPy reference on batches of windows, with the window-shaped signatures many tests were written against.

A batch of windows is the chunk from a zero state scored at its last position (``last_only``): each function
here is one call of ``scratch.sequence``, the one model of both contexts.
"""

from __future__ import annotations

import numpy as np

from scratch import sequence
from wordrnn.core.dropout import Masks
from wordrnn.core.params import Params


def forward(params: Params, x: np.ndarray, masks: Masks | None = None, cell: str = "rnn") -> tuple[np.ndarray, dict]:
    """Logits [B, V] of windows ``x`` [B, T] and the backward's cache."""
    logits, _, cache = sequence.forward(params, x, cell, masks=masks, last_only=True)
    return logits, cache


def logits(params: Params, x: np.ndarray, cell: str = "rnn") -> np.ndarray:
    return sequence.window_logits(params, x, cell)


def loss(params: Params, x: np.ndarray, y: np.ndarray, masks: Masks | None = None, cell: str = "rnn") -> float:
    return sequence.loss(params, x, y, cell=cell, masks=masks, last_only=True)


def loss_and_grads(params: Params, x: np.ndarray, y: np.ndarray, masks: Masks | None = None, cell: str = "rnn"
                   ) -> tuple[float, Params]:
    loss_value, grads, _ = sequence.loss_and_grads(params, x, y, cell=cell, masks=masks, last_only=True)
    return loss_value, grads

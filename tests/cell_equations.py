"""The cells' equations written out in NumPy float64, one line per gate: the reference loop the framework tests
hold every implementation to (docs/DESIGN.md's equations, independent of the NumPy reference in ``scratch``)."""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def cell_step(cell: str, h: np.ndarray, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of docs/DESIGN.md's cell equations, from a = x W_ih^T + b_ih and b = h W_hh^T + b_hh."""
    if cell == "rnn":
        return np.tanh(a + b), c
    if cell == "rnn_relu":
        return np.maximum(a + b, 0), c
    if cell == "mingru":  # b is 0: the cell has no recurrent weights
        a_z, h_tilde = np.split(a, 2, axis=1)
        z = sigmoid(a_z)
        return (1 - z) * h + z * h_tilde, c
    if cell == "lstm":
        i, f, g, o = np.split(a + b, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    if cell != "gru":
        raise KeyError(f"tests/cell_equations.py has no equations for the {cell} cell: write them here")
    (a_r, a_z, a_n), (b_r, b_z, b_n) = np.split(a, 3, axis=1), np.split(b, 3, axis=1)
    r, z = sigmoid(a_r + b_r), sigmoid(a_z + b_z)
    n = np.tanh(a_n + r * b_n)
    return (1 - z) * n + z * h, c


def design_logits(params: dict[str, np.ndarray], x: np.ndarray, masks: dict | None = None,
                  cell: str = "rnn") -> np.ndarray:
    """docs/DESIGN.md's equations written out directly, in float64, one-hot vectors materialized."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    masks = masks or {}
    if "embedding" in p:
        inputs = p["embedding"][x]
        if masks.get("input") is not None:
            inputs = inputs * masks["input"]
    else:
        inputs = np.eye(p["rnn.w_ih"].shape[1])[x]
    if masks.get("recurrent") is not None:  # weight-drop: every step reads the thinned w_hh
        p["rnn.w_hh"] = p["rnn.w_hh"] * masks["recurrent"]
    h = c = np.zeros((x.shape[0], p["out.weight"].shape[1]))
    for t in range(x.shape[1]):
        a = inputs[:, t] @ p["rnn.w_ih"].T + p["rnn.b_ih"]
        b = h @ p["rnn.w_hh"].T + p["rnn.b_hh"] if "rnn.w_hh" in p else 0.0
        h, c = cell_step(cell, h, c, a, b)
    if masks.get("hidden") is not None:
        h = h * masks["hidden"][:, 0]  # [B, 1, H]: one per row
    return h @ p["out.weight"].T + p["out.bias"]

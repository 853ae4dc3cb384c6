"""The model over a chunk of a stream, with the state carried in and out: the NumPy reference of both contexts.

Shapes: B streams, T steps, V vocabulary, E embedding width, H hidden size. ``reset`` [B, T] is True where a
poem starts: the state is zeroed before that token is read, wherever in the chunk it falls. For every step t:

    u_t = onehot(x_t)  or  emb[x_t] * m_in          (m_in: the input dropout mask, one per stream, locked)
    s_{t-1} = s_{t-1} * (1 - reset_t)               (s is h, or (h, c) for the LSTM; s_{-1} = the state in)
    a_t = u_t W_ih^T + b_ih
    s_t = cell(a_t, s_{t-1})                         (scratch.cells; W_hh * m_rec under weight-drop)
    logits_t = (h_t * m_out) W_out^T + b_out         (m_out: the output dropout mask, locked; tied: W_out = emb P)
    loss = sum_{b,t} w_bt CE(logits_bt, y_bt) / sum_{b,t} w_bt

The weights ``w`` are 1 for a real target and 0 where there is none (the last token of a poem, padding).
Backpropagation runs the same lines in reverse; the gradient stops at the state in (truncated BPTT).
A window model is the same recurrence from a zero state, scored at its last step only (``last_only``).
"""

from __future__ import annotations

import numpy as np

from scratch.cells import STEPS, State
from wordrnn.core.cells import get_cell
from wordrnn.core.dropout import Masks
from wordrnn.core.params import Params, output_weight

Array = np.ndarray


def with_output_weight(params: Params) -> Params:
    """``params`` with an ``out.weight``: a tied model's made from the embedding (``output_weight``), for the
    output layer to read; an untied model's ``params`` itself."""
    return params if "out.weight" in params else {**params, "out.weight": output_weight(params)}


def thinned(params: Params, masks: Masks | None) -> Params:
    """The recurrent weights a step reads: under weight-drop ``w_hh * m_rec`` (one DropConnect mask for the whole
    step); else ``params`` itself."""
    m_rec = None if not masks else masks.get("recurrent")
    if m_rec is None:
        return params
    return {**params, "rnn.w_hh": params["rnn.w_hh"] * np.asarray(m_rec, params["rnn.w_hh"].dtype)}


def tie_gradient(g: Params, params: Params) -> None:
    """A tied model's gradients from that of the output weight it made, in place: W_out = emb P (or emb), so
    dL/demb += dL/dW_out P^T and dL/dP = emb^T dL/dW_out; ``out.weight`` leaves ``g``. Untied: nothing to do."""
    if "out.weight" in params:
        return
    d_out = g.pop("out.weight")
    if "out.proj" in params:
        g["embedding"] += d_out @ params["out.proj"].T
        g["out.proj"] = params["embedding"].T @ d_out
    else:
        g["embedding"] += d_out


def thin_gradient(g: Params, masks: Masks | None) -> None:
    """The gradient of the stored ``w_hh`` from that of the thinned one, in place: w = w_hh * m_rec, so
    dL/dw_hh = dL/dw * m_rec."""
    m_rec = None if not masks else masks.get("recurrent")
    if m_rec is not None:
        g["rnn.w_hh"] *= np.asarray(m_rec, g["rnn.w_hh"].dtype)


def zero_state(params: Params, cell: str, batch: int) -> State:
    H, dtype = params["rnn.w_ih"].shape[0] // get_cell(cell).num_gates, params["rnn.w_ih"].dtype
    return tuple(np.zeros((batch, H), dtype) for _ in get_cell(cell).states)


def _inputs(params: Params, x: Array, masks: Masks | None) -> tuple[Array | None, Array]:
    """u_t for every step, time-major (None for one-hot), and a = u W_ih^T + b_ih [T, B, G*H]."""
    w_ih, b_ih = params["rnn.w_ih"], params["rnn.b_ih"]
    m_in = None if not masks else masks.get("input")
    if "embedding" not in params:
        if m_in is not None:
            raise ValueError("the one-hot model has no input dropout (masks['input'] must be None)")
        return None, w_ih.T[x.T] + b_ih  # onehot(k) W_ih^T is column k of W_ih, exactly
    u = params["embedding"][x.T]  # [T, B, E], gathered time-major: contiguous for the one product below
    if m_in is not None:
        u = u * m_in.transpose(1, 0, 2)  # [B, 1, E] locked, or [B, T, E]
    # one [T*B, E] x [E, G*H] product: numpy runs a [T, B, E] operand as T small ones (docs/PERFORMANCE.md)
    return u, (u.reshape(-1, u.shape[-1]) @ w_ih.T).reshape(*u.shape[:2], -1) + b_ih


def forward(params: Params, x: Array, cell: str = "rnn", state: State | None = None, reset: Array | None = None,
            masks: Masks | None = None, last_only: bool = False) -> tuple[Array, State, dict]:
    """Logits [B, T, V] (or [B, V] with ``last_only``), the state after the last step, and the backward's cache."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must be a [batch, time] array of token ids with both sizes >= 1, got {x.shape}")
    B, T = x.shape
    if cell not in STEPS:
        raise ValueError(f"unknown cell {cell!r}; the NumPy reference has {', '.join(STEPS)}")
    steps = STEPS[cell]
    params = thinned(with_output_weight(params), masks)
    dtype = params["out.weight"].dtype  # the arithmetic stays in the parameters' dtype, whatever the masks'
    masks = None if not masks else {k: None if m is None else np.asarray(m, dtype) for k, m in masks.items()}
    state = zero_state(params, cell, B) if state is None else tuple(np.asarray(s, params["out.weight"].dtype)
                                                                      for s in state)
    keep = None if reset is None else (1 - np.asarray(reset, params["out.weight"].dtype)).T[:, :, None]  # [T, B, 1]
    u, a = _inputs(params, x, masks)
    hs, h_prev, saved = [], [], []
    for t in range(T):
        if keep is not None:
            state = tuple(s * keep[t] for s in state)
        h_prev.append(state[0])  # what W_hh reads at step t
        state, keep_t = steps.forward(params, a[t], state)
        hs.append(state[0])
        saved.append(keep_t)
    m_out = None if not masks else masks.get("hidden")
    top = np.stack(hs[-1:] if last_only else hs, axis=1)  # [B, T or 1, H]
    if m_out is not None:
        top = top * (m_out if m_out.ndim == 3 else m_out[:, None, :])
    logits = _output_layer(top, params["out.weight"].T) + params["out.bias"]
    cache = {"cell": cell, "params": params, "x": x, "u": u, "saved": saved, "keep": keep, "top": top, "h_prev": h_prev,
             "m_in": None if not masks else masks.get("input"), "m_out": m_out, "last_only": last_only}
    return (logits[:, 0] if last_only else logits), state, cache


def _output_layer(top: Array, w: Array) -> Array:
    """``top`` [B, T, K] times ``w`` [K, N] as one [B*T, K] product: one BLAS call, where a stacked matmul
    makes one small call per stream (docs/PERFORMANCE.md)."""
    return (top.reshape(-1, top.shape[-1]) @ w).reshape(*top.shape[:-1], w.shape[-1])


def cross_entropy(logits: Array, y: Array, weights: Array | None = None) -> tuple[float, Array]:
    """The weighted mean cross-entropy of logits [..., V] and targets [...], and its gradient wrt the logits.

    With z = logits - max, s = sum(exp z) and c = w / sum(w): loss = -sum c (z_y - log s), and
    d_logits = c (exp(z) / s - onehot(y)). One exponential per logit, computed in place: the [B*T, V] array
    is the largest a poem-context step touches.
    """
    y = np.asarray(y)[..., None]
    w = np.ones(y.shape[:-1], logits.dtype) if weights is None else np.asarray(weights, logits.dtype)
    z = logits - logits.max(axis=-1, keepdims=True)
    z_y = np.take_along_axis(z, y, axis=-1)[..., 0]
    e = np.exp(z, out=z)
    s = e.sum(axis=-1, keepdims=True)
    c = w / w.sum()
    loss = float(-(c * (z_y - np.log(s[..., 0]))).sum())
    d_logits = e
    d_logits *= c[..., None] / s  # c * softmax
    np.put_along_axis(d_logits, y, np.take_along_axis(d_logits, y, axis=-1) - c[..., None], axis=-1)
    return loss, d_logits


def loss_and_grads(params: Params, x: Array, y: Array, weights: Array | None = None, cell: str = "rnn",
                   state: State | None = None, reset: Array | None = None, masks: Masks | None = None,
                   last_only: bool = False) -> tuple[float, Params, State]:
    """The weighted mean cross-entropy, its gradient for every parameter, and the state after the chunk."""
    own = params
    logits, state_out, cache = forward(params, x, cell, state, reset, masks, last_only)
    params = cache["params"]  # the weights the forward pass read (the output weight made, w_hh thinned)
    loss, d_logits = cross_entropy(logits, y, weights)
    if last_only:
        d_logits = d_logits[:, None]
    g: Params = {}
    top = cache["top"]
    # logits = top W_out^T + b_out
    g["out.weight"] = d_logits.reshape(-1, d_logits.shape[-1]).T @ top.reshape(-1, top.shape[-1])
    g["out.bias"] = d_logits.sum(axis=(0, 1))
    d_top = _output_layer(d_logits, params["out.weight"])  # [B, T or 1, H]
    # top = h * m_out
    if cache["m_out"] is not None:
        d_top = d_top * (cache["m_out"] if cache["m_out"].ndim == 3 else cache["m_out"][:, None, :])
    d_a = _backward_through_time(params, g, cache, d_top)  # [T, B, G*H]
    _input_grads(params, g, cache, d_a)
    thin_gradient(g, masks)
    tie_gradient(g, own)
    return loss, {name: g[name] for name in own}, state_out


def loss(params: Params, x: Array, y: Array, weights: Array | None = None, cell: str = "rnn",
         state: State | None = None, reset: Array | None = None, masks: Masks | None = None,
         last_only: bool = False) -> float:
    """The weighted mean cross-entropy alone (the gradient check's numerical side: no backward pass)."""
    return cross_entropy(forward(params, x, cell, state, reset, masks, last_only)[0], y, weights)[0]


def window_logits(params: Params, x: Array, cell: str = "rnn") -> Array:
    """A window model's logits [B, V] for windows ``x`` [B, T]: the chunk from a zero state, its last position."""
    return forward(params, x, cell, last_only=True)[0]


def _backward_through_time(params: Params, g: Params, cache: dict, d_top: Array) -> Array:
    """The cell's backward steps from the last step to the first; returns dL/da [T, B, G*H]. The recurrent
    weights' gradients are summed over the steps at the end, each as one product: dW_hh = sum_t db_t^T h_{t-1}."""
    steps, saved, keep = STEPS[cache["cell"]], cache["saved"], cache["keep"]
    T = len(saved)
    d_h_out = np.zeros((T, *d_top.shape[::2]), d_top.dtype)  # dL/dh_t from the output layer, [T, B, H]
    if cache["last_only"]:
        d_h_out[-1] = d_top[:, 0]
    else:
        d_h_out[:] = d_top.transpose(1, 0, 2)
    d_state = tuple(np.zeros_like(d_h_out[0]) for _ in get_cell(cache["cell"]).states)
    d_a, d_b = [], []
    for t in range(T - 1, -1, -1):
        full = (d_h_out[t] + d_state[0], *d_state[1:])  # h_t feeds the output layer and step t+1
        da_t, db_t, d_state = steps.backward(params, saved[t], full)
        # s_{t-1} = s_{t-1} * keep_t: no gradient flows into the state a reset erased
        if keep is not None:
            d_state = tuple(d * keep[t] for d in d_state)
        d_a.append(da_t)
        d_b.append(db_t)
    if "rnn.w_hh" in params:
        # b_t = h_{t-1} W_hh^T + b_hh
        db = np.concatenate(d_b[::-1])  # [T*B, G*H], time-major like h_prev
        g["rnn.w_hh"] = db.T @ np.concatenate(cache["h_prev"])
        g["rnn.b_hh"] = db.sum(axis=0)
    return np.stack(d_a[::-1])


def _input_grads(params: Params, g: Params, cache: dict, d_a: Array) -> None:
    """dW_ih, db_ih and the embedding's gradient from dL/da [T, B, G*H]."""
    T, B, GH = d_a.shape
    flat = d_a.reshape(T * B, GH)
    # a = u W_ih^T + b_ih
    g["rnn.b_ih"] = flat.sum(axis=0)
    tokens = cache["x"].T.reshape(-1)  # time-major, as the rows of flat
    if cache["u"] is None:
        ids, sums = sum_rows_by_id(tokens, flat)
        g["rnn.w_ih"] = np.zeros_like(params["rnn.w_ih"])
        g["rnn.w_ih"][:, ids] = sums.T  # the column gather's transpose
        return
    g["rnn.w_ih"] = flat.T @ cache["u"].reshape(T * B, -1)
    d_u = (flat @ params["rnn.w_ih"]).reshape(T, B, -1)  # [T, B, E]
    # u = emb[x] * m_in
    if cache["m_in"] is not None:
        d_u = d_u * cache["m_in"].transpose(1, 0, 2)
    ids, sums = sum_rows_by_id(tokens, d_u.reshape(T * B, -1))
    g["embedding"] = np.zeros_like(params["embedding"])
    g["embedding"][ids] = sums


def sum_rows_by_id(ids: Array, rows: Array) -> tuple[Array, Array]:
    """The distinct ``ids`` [U] and, for each, the sum of the ``rows`` [n, D] that ``ids`` [n] gives it: the
    transpose of a gather, the gradient of a table lookup. The rows are sorted by id and each run summed with one
    ``np.add.reduceat``, several times faster than ``np.add.at`` (docs/PERFORMANCE.md); only the order of each
    sum differs."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    return sorted_ids[starts], np.add.reduceat(rows[order], starts, axis=0)

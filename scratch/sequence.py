"""The model over a chunk of a stream, with the state carried in and out: the NumPy reference of both contexts.

Shapes: B streams, T steps, V vocabulary, E embedding width, H hidden size, L layers. ``reset`` [B, T] is True
where a poem starts: every layer's state is zeroed before that token is read, wherever in the chunk it falls.
For every step t and layer l:

    u0_t = onehot(x_t)  or  emb[x_t] * m_in         (m_in: the input dropout mask, one per stream, locked)
    ul_t = h(l-1)_t * m_between(l)                  (l >= 1: the layer below's output, its own locked mask)
    s_{t-1} = s_{t-1} * (1 - reset_t)               (s is h, or (h, c) for the LSTM; s_{-1} = the state in)
    a_t = ul_t W_ih^T + b_ih                         (layer l's weights: rnn.w_ih_l{l}, layer 0 rnn.w_ih)
    s_t = cell(a_t, s_{t-1})                         (scratch.cells; W_hh * m_rec under weight-drop)
    logits_t = (h(L-1)_t * m_out) W_out^T + b_out    (m_out: the output dropout mask, locked; tied: W_out = emb P)
    loss = sum_{b,t} w_bt CE(logits_bt, y_bt) / sum_{b,t} w_bt  (+ AR and TAR, ``activation_penalties``)

The weights ``w`` are 1 for a real target and 0 where there is none (the last token of a poem, padding).
Backpropagation runs the same lines in reverse, the top layer first; the gradient stops at the state in
(truncated BPTT). A window model is the same recurrence from a zero state, scored at its last step only
(``last_only``). A stacked model's state is its layers' states side by side, [B, L*H], layer 0 first.
"""

from __future__ import annotations

import numpy as np

from scratch.cells import STEPS, State
from wordrnn.core.cells import get_cell
from wordrnn.core.dropout import Masks
from wordrnn.core.params import Params, layer_name, layer_params, layer_slice, num_layers, output_weight

Array = np.ndarray


def with_output_weight(params: Params) -> Params:
    """``params`` with an ``out.weight``: a tied model's made from the embedding (``output_weight``), for the
    output layer to read; an untied model's ``params`` itself."""
    return params if "out.weight" in params else {**params, "out.weight": output_weight(params)}


def thinned(weights: Params, m_rec: Array | None) -> Params:
    """One layer's recurrent weights as its steps read them: under weight-drop ``w_hh * m_rec`` (one DropConnect
    mask for the whole step); else ``weights`` itself."""
    if m_rec is None:
        return weights
    return {**weights, "rnn.w_hh": weights["rnn.w_hh"] * m_rec}


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


def hidden_size(params: Params, cell: str) -> int:
    return params["rnn.w_ih"].shape[0] // get_cell(cell).num_gates


def zero_state(params: Params, cell: str, batch: int) -> State:
    width = hidden_size(params, cell) * num_layers(params)
    return tuple(np.zeros((batch, width), params["rnn.w_ih"].dtype) for _ in get_cell(cell).states)


def _inputs(params: Params, x: Array, masks: Masks | None) -> tuple[Array | None, Array]:
    """Layer 0's u_t for every step, time-major (None for one-hot), and a = u W_ih^T + b_ih [T, B, G*H]."""
    w_ih, b_ih = params["rnn.w_ih"], params["rnn.b_ih"]
    m_in = None if not masks else masks.get("input")
    if "embedding" not in params:
        if m_in is not None:
            raise ValueError("the one-hot model has no input dropout (masks['input'] must be None)")
        return None, w_ih.T[x.T] + b_ih  # onehot(k) W_ih^T is column k of W_ih, exactly
    u = params["embedding"][x.T]  # [T, B, E], gathered time-major: contiguous for the one product below
    if m_in is not None:
        u = u * m_in.transpose(1, 0, 2)  # [B, 1, E] locked, or [B, T, E]
    return u, _project(u, w_ih, b_ih)


def _project(u: Array, w_ih: Array, b_ih: Array) -> Array:
    """u W_ih^T + b_ih for time-major u [T, B, I] as one [T*B, I] product: numpy runs a [T, B, I] operand as T
    small ones (docs/PERFORMANCE.md)."""
    return (u.reshape(-1, u.shape[-1]) @ w_ih.T).reshape(*u.shape[:2], -1) + b_ih


def _recur(steps, weights: Params, a: Array, state: State, keep: Array | None) -> tuple[Array, State, dict]:
    """One layer over time: every h_t [T, B, H] (time-major), the state after the last step, the backward's
    cache of the layer (the steps' saved values and the h_{t-1} that W_hh read)."""
    hs, h_prev, saved = [], [], []
    for t in range(a.shape[0]):
        if keep is not None:
            state = tuple(s * keep[t] for s in state)
        h_prev.append(state[0])
        state, saved_t = steps.forward(weights, a[t], state)
        hs.append(state[0])
        saved.append(saved_t)
    return np.stack(hs), state, {"weights": weights, "saved": saved, "h_prev": h_prev}


def forward(params: Params, x: Array, cell: str = "rnn", state: State | None = None, reset: Array | None = None,
            masks: Masks | None = None, last_only: bool = False) -> tuple[Array, State, dict]:
    """Logits [B, T, V] (or [B, V] with ``last_only``), the state after the last step, and the backward's cache."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must be a [batch, time] array of token ids with both sizes >= 1, got {x.shape}")
    B, T = x.shape
    if cell not in STEPS:
        raise ValueError(f"unknown cell {cell!r}; the NumPy reference has {', '.join(STEPS)}")
    params = with_output_weight(params)
    dtype = params["out.weight"].dtype  # the arithmetic stays in the parameters' dtype, whatever the masks'
    masks = {k: None if m is None else np.asarray(m, dtype) for k, m in (masks or {}).items()}
    H, L = hidden_size(params, cell), num_layers(params)
    state = zero_state(params, cell, B) if state is None else tuple(np.asarray(s, dtype) for s in state)
    keep = None if reset is None else (1 - np.asarray(reset, dtype)).T[:, :, None]  # [T, B, 1]
    u, a = _inputs(params, x, masks)
    m_rec, m_between = masks.get("recurrent"), masks.get("between")
    layers, finals, hs = [], [], None
    for layer in range(L):
        if layer:
            u = hs if m_between is None else hs * m_between[..., layer_slice(layer - 1, H)].transpose(1, 0, 2)
            weights = layer_params(params, layer)
            a = _project(u, weights["rnn.w_ih"], weights["rnn.b_ih"])
        weights = thinned(layer_params(params, layer), None if m_rec is None else m_rec[:, layer_slice(layer, H)])
        hs, final, saved = _recur(STEPS[cell], weights, a, tuple(s[:, layer_slice(layer, H)] for s in state), keep)
        layers.append({**saved, "u": u})
        finals.append(final)
    state = tuple(np.concatenate(parts, axis=1) for parts in zip(*finals))
    m_out = masks.get("hidden")
    top = (hs[-1:] if last_only else hs).transpose(1, 0, 2)  # [B, T or 1, H]
    if m_out is not None:
        top = top * (m_out if m_out.ndim == 3 else m_out[:, None, :])
    logits = _output_layer(top, params["out.weight"].T) + params["out.bias"]
    cache = {"cell": cell, "params": params, "x": x, "layers": layers, "hs": hs, "keep": keep, "top": top,
             "masks": masks, "last_only": last_only}
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


def activation_penalties(cache: dict, weights: Array | None, ar: float, tar: float
                         ) -> tuple[float, Array, Array]:
    """AR and TAR (Merity et al. 2018) on the last layer at the scored positions, and their gradients wrt the
    dropped output ``top`` [B, T or 1, H] and the undropped h_t [T, B, H].

    With w the target weights of the positions the head reads and n = H sum(w):

        AR  = ar  * sum_{b,t} w_bt |top_bt|^2 / n
        TAR = tar * sum_{b,t} v_bt |h_t - h_{t-1}|^2_b / (H sum(v))   (v_bt = w_bt where t >= 1 and no poem
                                                                        starts at t; a window: its last step)
    """
    top, hs, keep = cache["top"], cache["hs"], cache["keep"]
    T, B, H = hs.shape
    w = np.ones(top.shape[:2], top.dtype) if weights is None else np.asarray(weights, top.dtype).reshape(B, -1)
    value, d_top, d_hs = 0.0, np.zeros_like(top), np.zeros_like(hs)
    if ar:
        scale = ar / (H * w.sum())
        value += float(scale * (w[..., None] * top * top).sum())
        d_top = 2 * scale * w[..., None] * top
    if tar and T > 1:
        v = np.zeros((T, B), top.dtype)  # the weight of the change into step t, time-major
        if cache["last_only"]:
            v[-1] = w[:, 0]
        else:
            v[:] = w.T
        v[0] = 0
        if keep is not None:
            v *= keep[..., 0]
        if v.sum() > 0:
            change = hs[1:] - hs[:-1]
            scale = tar / (H * v.sum())
            value += float(scale * (v[1:, :, None] * change * change).sum())
            d_change = 2 * scale * v[1:, :, None] * change
            d_hs[1:] += d_change
            d_hs[:-1] -= d_change
    return value, d_top, d_hs


def loss_and_grads(params: Params, x: Array, y: Array, weights: Array | None = None, cell: str = "rnn",
                   state: State | None = None, reset: Array | None = None, masks: Masks | None = None,
                   last_only: bool = False, ar: float = 0.0, tar: float = 0.0) -> tuple[float, Params, State]:
    """The weighted mean cross-entropy (plus AR and TAR where ``ar``/``tar`` > 0), its gradient for every
    parameter, and the state after the chunk."""
    own = params
    logits, state_out, cache = forward(params, x, cell, state, reset, masks, last_only)
    params = cache["params"]  # the weights the forward pass read (the output weight made)
    loss, d_logits = cross_entropy(logits, y, weights)
    penalty, d_top_penalty, d_hs = activation_penalties(cache, weights, ar, tar)
    if last_only:
        d_logits = d_logits[:, None]
    g: Params = {}
    top = cache["top"]
    # logits = top W_out^T + b_out
    g["out.weight"] = d_logits.reshape(-1, d_logits.shape[-1]).T @ top.reshape(-1, top.shape[-1])
    g["out.bias"] = d_logits.sum(axis=(0, 1))
    d_top = _output_layer(d_logits, params["out.weight"]) + d_top_penalty  # [B, T or 1, H]
    # top = h * m_out
    m_out = cache["masks"].get("hidden")
    if m_out is not None:
        d_top = d_top * (m_out if m_out.ndim == 3 else m_out[:, None, :])
    d_hs[-d_top.shape[1]:] += d_top.transpose(1, 0, 2)  # the positions the head read
    _backward_layers(params, g, cache, d_hs)
    tie_gradient(g, own)
    return loss + penalty, {name: g[name] for name in own}, state_out


def loss(params: Params, x: Array, y: Array, weights: Array | None = None, cell: str = "rnn",
         state: State | None = None, reset: Array | None = None, masks: Masks | None = None,
         last_only: bool = False, ar: float = 0.0, tar: float = 0.0) -> float:
    """The loss of ``loss_and_grads`` alone (the gradient check's numerical side: no backward pass)."""
    logits, _, cache = forward(params, x, cell, state, reset, masks, last_only)
    return cross_entropy(logits, y, weights)[0] + activation_penalties(cache, weights, ar, tar)[0]


def window_logits(params: Params, x: Array, cell: str = "rnn") -> Array:
    """A window model's logits [B, V] for windows ``x`` [B, T]: the chunk from a zero state, its last position."""
    return forward(params, x, cell, last_only=True)[0]


def _backward_layers(params: Params, g: Params, cache: dict, d_hs: Array) -> None:
    """Every layer's gradients, the top layer first, from dL/dh_t of the top layer's output [T, B, H]."""
    masks, layers = cache["masks"], cache["layers"]
    m_rec, m_between = masks.get("recurrent"), masks.get("between")
    H = d_hs.shape[-1]
    for layer in range(len(layers) - 1, -1, -1):
        d_a = _backward_through_time(g, cache, layers[layer], layer, d_hs)  # [T, B, G*H]
        if m_rec is not None:  # w = w_hh * m_rec, so dL/dw_hh = dL/dw * m_rec
            g[layer_name("rnn.w_hh", layer)] *= m_rec[:, layer_slice(layer, H)]
        if layer == 0:
            _input_grads(params, g, cache, d_a)
            break
        weights, u = layers[layer]["weights"], layers[layer]["u"]
        flat = d_a.reshape(-1, d_a.shape[-1])
        # a = u W_ih^T + b_ih, u = h_below * m_between
        g[layer_name("rnn.w_ih", layer)] = flat.T @ u.reshape(-1, H)
        g[layer_name("rnn.b_ih", layer)] = flat.sum(axis=0)
        d_hs = (flat @ weights["rnn.w_ih"]).reshape(d_a.shape[0], d_a.shape[1], H)
        if m_between is not None:
            d_hs = d_hs * m_between[..., layer_slice(layer - 1, H)].transpose(1, 0, 2)


def _backward_through_time(g: Params, cache: dict, saved: dict, layer: int, d_h_out: Array) -> Array:
    """One layer's backward steps from the last step to the first, given dL/dh_t from above [T, B, H]; returns
    dL/da [T, B, G*H]. The recurrent weights' gradients are summed over the steps at the end, each as one
    product: dW_hh = sum_t db_t^T h_{t-1}."""
    steps, keep, weights = STEPS[cache["cell"]], cache["keep"], saved["weights"]
    T = len(saved["saved"])
    d_state = tuple(np.zeros_like(d_h_out[0]) for _ in get_cell(cache["cell"]).states)
    d_a, d_b = [], []
    for t in range(T - 1, -1, -1):
        full = (d_h_out[t] + d_state[0], *d_state[1:])  # h_t feeds the layer above (or the head) and step t+1
        da_t, db_t, d_state = steps.backward(weights, saved["saved"][t], full)
        # s_{t-1} = s_{t-1} * keep_t: no gradient flows into the state a reset erased
        if keep is not None:
            d_state = tuple(d * keep[t] for d in d_state)
        d_a.append(da_t)
        d_b.append(db_t)
    if "rnn.w_hh" in weights:
        # b_t = h_{t-1} W_hh^T + b_hh
        db = np.concatenate(d_b[::-1])  # [T*B, G*H], time-major like h_prev
        g[layer_name("rnn.w_hh", layer)] = db.T @ np.concatenate(saved["h_prev"])
        g[layer_name("rnn.b_hh", layer)] = db.sum(axis=0)
    return np.stack(d_a[::-1])


def _input_grads(params: Params, g: Params, cache: dict, d_a: Array) -> None:
    """Layer 0's dW_ih, db_ih and the embedding's gradient from dL/da [T, B, G*H]."""
    T, B, GH = d_a.shape
    flat = d_a.reshape(T * B, GH)
    u = cache["layers"][0]["u"]
    # a = u W_ih^T + b_ih
    g["rnn.b_ih"] = flat.sum(axis=0)
    tokens = cache["x"].T.reshape(-1)  # time-major, as the rows of flat
    if u is None:
        ids, sums = sum_rows_by_id(tokens, flat)
        g["rnn.w_ih"] = np.zeros_like(params["rnn.w_ih"])
        g["rnn.w_ih"][:, ids] = sums.T  # the column gather's transpose
        return
    g["rnn.w_ih"] = flat.T @ u.reshape(T * B, -1)
    d_u = (flat @ params["rnn.w_ih"]).reshape(T, B, -1)  # [T, B, E]
    # u = emb[x] * m_in
    m_in = cache["masks"].get("input")
    if m_in is not None:
        d_u = d_u * m_in.transpose(1, 0, 2)
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

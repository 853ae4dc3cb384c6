"""The fast window kernel: the window context's forward pass and BPTT in NumPy, for the rnn, LSTM and GRU.

It computes what ``scratch.sequence`` computes with ``last_only`` (a window from a zero state, scored at its
last step), from the same equations (``scratch.cells``, where they read one line each), arranged for speed:
arrays time-major ([T, B, ...]) so one step is one contiguous [B, ...] block, the gate work gate-major
([G, B, H]) and in place, the embedding gradient a 0/1 selection product. Together these make a window
training step 1.3-1.6 times faster than the plain steps (docs/PERFORMANCE.md); tests/test_scratch_sequence.py
holds the two to 1e-12. A cell without a kernel here runs the plain steps.

The parameters decide the input model (an ``embedding`` entry means the embedding model); ``cell`` names the
cell. All arithmetic stays in the parameters' dtype (float32 to train, float64 for the gradient check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from scratch import sequence
from wordrnn.core.cells import get_cell
from wordrnn.core.dropout import Masks
from wordrnn.core.params import Params

Array = np.ndarray
BackwardResult = tuple[Array | None, Array, Array | None]  # dL/dc_{t-1}, db, the direct part of dL/dh_{t-1}


def is_embedding(params: Params) -> bool:
    return "embedding" in params


# -- the cells -------------------------------------------------------------------------------------------------
#
# A forward step gets the step's pre-activations without biases, a = u_t W_ih^T and b = h_{t-1} W_hh^T (both
# gate-major [G, B, H], its own to overwrite), the biases (gate-major [G, 1, H]), the previous state and the
# [B, H] array to write h_t into. It returns the next cell state (None for cells without one) and what its
# backward step needs.
#
# A backward step gets dh = dL/dh_t, dc = dL/dc_t through c_{t+1} (None for cells without a cell state), what
# the forward step saved, and two gate-major [G, B, H] arrays to fill: da = dL/d(a + b_ih) and
# db = dL/d(b + b_hh). It returns dL/dc_{t-1}, the array that holds db (``da`` itself where the two coincide),
# and the part of dL/dh_{t-1} that does not pass through W_hh (None where there is none).


def _blocks(z: np.ndarray, cell: str, names: str) -> tuple[np.ndarray, ...]:
    """The gate blocks ``names`` (one letter each) of gate-major ``z`` [G, ...], in the registry's order."""
    gates = get_cell(cell).gates
    return tuple(z[gates.index(n)] for n in names)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """sigma(z) in place, as 0.5 tanh(z / 2) + 0.5: the same function as 1 / (1 + exp(-z)), with no overflow."""
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z


def rnn_forward(a: Array, b: Array, b_ih: Array, b_hh: Array, h_prev: Array, c_prev: Array | None,
                h: Array) -> tuple[Array | None, Any]:
    """h = tanh(a + b_ih + b_hh + b); keeps h, since tanh' = 1 - h^2."""
    a += b_ih + b_hh
    a += b
    (a_h,) = _blocks(a, "rnn", "h")
    np.tanh(a_h, out=h)
    return None, h


def rnn_backward(dh: Array, dc: Array | None, h: Array, da: Array, db: Array) -> BackwardResult:
    """da = db = dh * (1 - h^2)."""
    (da_h,) = _blocks(da, "rnn", "h")
    np.multiply(h, h, out=da_h)
    np.subtract(1, da_h, out=da_h)
    da_h *= dh
    return None, da, None


def lstm_forward(a: Array, b: Array, b_ih: Array, b_hh: Array, h_prev: Array, c_prev: Array | None,
                 h: Array) -> tuple[Array | None, Any]:
    """The gates in place of their pre-activations in ``a``; c = f * c_prev + i * g; h = o * tanh(c)."""
    a += b_ih + b_hh
    a += b
    z_i, z_f, z_g, z_o = _blocks(a, "lstm", "ifgo")
    i = _sigmoid(z_i)  # input gate
    f = _sigmoid(z_f)  # forget gate
    g = np.tanh(z_g, out=z_g)  # candidate cell
    o = _sigmoid(z_o)  # output gate
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    np.multiply(o, tanh_c, out=h)
    return c, (i, f, g, o, c_prev, tanh_c)


def lstm_backward(dh: Array, dc: Array, saved: tuple, da: Array, db: Array) -> BackwardResult:
    """dL/dc_t gathers both paths to c_t, then each gate's pre-activation gradient by the chain rule:

        dc     = dc_next + dh * o * (1 - tanh(c)^2)
        da_o   = dh * tanh(c) * o (1 - o)
        da_i   = dc * g * i (1 - i)
        da_g   = dc * i * (1 - g^2)
        da_f   = dc * c_prev * f (1 - f)
        dc_prev = dc * f
    """
    i, f, g, o, c_prev, tanh_c = saved
    da_i, da_f, da_g, da_o = _blocks(da, "lstm", "ifgo")
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    np.multiply(dh * tanh_c, o * (1 - o), out=da_o)
    np.multiply(dc * g, i * (1 - i), out=da_i)
    np.multiply(dc * i, 1 - g * g, out=da_g)
    np.multiply(dc * c_prev, f * (1 - f), out=da_f)
    return dc * f, da, None


def gru_forward(a: Array, b: Array, b_ih: Array, b_hh: Array, h_prev: Array, c_prev: Array | None,
                h: Array) -> tuple[Array | None, Any]:
    """The gates in place of their pre-activations in ``a``; h = (1 - z) * n + z * h_prev."""
    a += b_ih
    b += b_hh
    a_r, a_z, a_n = _blocks(a, "gru", "rzn")
    b_r, b_z, b_n = _blocks(b, "gru", "rzn")
    r = _sigmoid(np.add(a_r, b_r, out=a_r))  # reset gate
    z = _sigmoid(np.add(a_z, b_z, out=a_z))  # update gate
    n = np.tanh(a_n + r * b_n, out=a_n)  # new gate
    np.add((1 - z) * n, z * h_prev, out=h)
    return None, (r, z, n, b_n, h_prev)


def gru_backward(dh: Array, dc: Array | None, saved: tuple, da: Array, db: Array) -> BackwardResult:
    """Each gate's pre-activation gradient by the chain rule, the reset gate last since it acts through n:

        da_n = dh * (1 - z) * (1 - n^2)         db_n = r * da_n
        da_z = dh * (h_prev - n) * z (1 - z)     db_z = da_z
        da_r = da_n * b_n * r (1 - r)            db_r = da_r
        dh_prev = db W_hh + dh * z
    """
    r, z, n, b_n, h_prev = saved
    da_r, da_z, da_n = _blocks(da, "gru", "rzn")
    np.multiply(dh * (1 - z), 1 - n * n, out=da_n)
    np.multiply(dh * (h_prev - n), z * (1 - z), out=da_z)
    np.multiply(da_n * b_n, r * (1 - r), out=da_r)
    db[...] = da
    (db_n,) = _blocks(db, "gru", "n")
    db_n *= r
    return None, db, dh * z


class CellSteps(NamedTuple):
    forward: Callable
    backward: Callable


STEPS: dict[str, CellSteps] = {
    "rnn": CellSteps(rnn_forward, rnn_backward),
    "lstm": CellSteps(lstm_forward, lstm_backward),
    "gru": CellSteps(gru_forward, gru_backward),
}


def has_kernel(cell: str) -> bool:
    """Whether this fast window kernel has ``cell``; every other cell runs the plain steps of ``scratch.cells``
    (``scratch.sequence``), which compute the same numbers (tests/test_scratch_sequence.py)."""
    return cell in STEPS


# -- the model, the same for every cell ----------------------------------------------------------------------

def _gate_major(z: np.ndarray, G: int, out: np.ndarray | None = None) -> np.ndarray:
    """[..., B, G*H] as a contiguous [..., G, B, H] (into ``out`` if given)."""
    *lead, B, GH = z.shape
    view = z.reshape(*lead, B, G, GH // G).swapaxes(-3, -2)
    if out is None:
        return np.ascontiguousarray(view)
    np.copyto(out, view)
    return out


def _row_major(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Gate-major [..., G, B, H] back into the [..., B, G*H] layout of the products, in ``out``."""
    *lead, G, B, H = z.shape
    np.copyto(out.reshape(*lead, B, G, H), z.swapaxes(-3, -2))
    return out


def _mask(masks: Masks | None, key: str, dtype: np.dtype) -> np.ndarray | None:
    if not masks or masks.get(key) is None:
        return None
    return np.asarray(masks[key], dtype=dtype)


def forward(params: Params, x: np.ndarray, masks: Masks | None = None, cell: str = "rnn") -> tuple[np.ndarray, dict]:
    """Logits [B, V] for int [B, T] windows, and the cache that ``loss_and_grads`` needs.

    ``masks`` (training only): ``{"input": [B, T, E] or None, "hidden": [B, H] or None}`` and, under weight-drop,
    ``"recurrent"`` [G*H, H]: inverted-dropout masks whose values are 0 or 1/(1-p) (``wordrnn.core.dropout``);
    ``None`` means no dropout.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must be a [batch, time] array of token ids with both sizes >= 1, got {x.shape}")
    if not has_kernel(cell):
        return sequence.forward(params, x, cell, masks=masks, last_only=True)[::2]
    steps = STEPS[cell]
    params = sequence.thinned(sequence.with_output_weight(params), masks)
    w_ih, w_hh = params["rnn.w_ih"], params["rnn.w_hh"]
    dtype = w_hh.dtype
    m_in, m_h = _mask(masks, "input", dtype), _mask(masks, "hidden", dtype)
    xs = x.T  # [T, B]

    if is_embedding(params):
        inputs = params["embedding"][xs]  # [T, B, E], a fresh gathered copy
        if m_in is not None:
            inputs *= m_in.transpose(1, 0, 2)
        # a_t for every step in one [T*B, E] x [E, G*H] product (numpy would run a [T, B, E] operand as T products)
        a = (inputs.reshape(-1, inputs.shape[-1]) @ w_ih.T).reshape(*xs.shape, -1)  # [T, B, G*H]
    else:
        if m_in is not None:
            raise ValueError("the one-hot model has no input dropout (masks['input'] must be None)")
        inputs = None
        # Entry k of onehot(j) W_ih^T is 1 * W_ih[k, j] plus the products 0 * W_ih[k, i] (i != j),
        # which are exact zeros for finite weights; adding zeros changes nothing, so the sum is
        # exactly W_ih[k, j] in floating point. Gathering column j gives the same numbers, bit
        # for bit, without the [B, T, V] one-hot tensor and its O(V) product per token.
        a = w_ih.T[xs]  # [T, B, G*H]

    T, B = xs.shape
    G, H = get_cell(cell).num_gates, w_hh.shape[1]
    a = _gate_major(a, G)  # [T, G, B, H]
    b = np.empty_like(a)  # b_t = h_{t-1} W_hh^T, gate-major
    b[0] = 0  # h_{-1} = 0
    product = np.empty((B, G * H), dtype)  # h_{t-1} W_hh^T as the product leaves it
    b_ih, b_hh = params["rnn.b_ih"].reshape(G, 1, H), params["rnn.b_hh"].reshape(G, 1, H)
    hs = np.empty((T, B, H), dtype)
    h_prev = np.zeros((B, H), dtype)
    c = np.zeros((B, H), dtype) if get_cell(cell).has_cell_state else None
    saved = []
    for t in range(T):
        if t:
            np.matmul(h_prev, w_hh.T, out=product)
            _gate_major(product, G, out=b[t])
        c, keep = steps.forward(a[t], b[t], b_ih, b_hh, h_prev, c, hs[t])
        saved.append(keep)
        h_prev = hs[t]

    top = hs[-1] if m_h is None else hs[-1] * m_h  # what the output layer sees
    logits = top @ params["out.weight"].T
    logits += params["out.bias"]
    cache = {"cell": cell, "xs": xs, "inputs": inputs, "hs": hs, "saved": saved, "top": top, "w_hh": w_hh,
             "m_in": m_in, "m_h": m_h}
    return logits, cache


def logits(params: Params, x: np.ndarray, cell: str = "rnn") -> np.ndarray:
    """Logits [B, V] in evaluation mode (no dropout)."""
    return forward(params, x, cell=cell)[0]


def _exp_shifted(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The mean cross-entropy of logits ``z`` [B, V] and targets ``y`` [B].

    Overwrites ``z`` with e = exp(z - max_v z) and also returns the row sums
    of e: softmax(z) = e / sums, which ``loss_and_grads`` never divides out.
    """
    z -= z.max(axis=1, keepdims=True)  # softmax is shift-invariant; exp can no longer overflow
    picked = z[np.arange(len(y)), y]
    np.exp(z, out=z)
    sums = z.sum(axis=1)
    return float(np.mean(np.log(sums) - picked)), z, sums  # logsumexp(z) - z_y


def loss(params: Params, x: np.ndarray, y: np.ndarray, masks: Masks | None = None, cell: str = "rnn") -> float:
    """The mean cross-entropy (nats) of predicting ``y`` [B] from windows ``x`` [B, T]."""
    z, _ = forward(params, x, masks, cell)
    return _exp_shifted(z, np.asarray(y))[0]


def _group(ids: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``ids`` (U of them) and the [U, N] 0/1 matrix with a 1 where ``ids[n]`` is the u-th.

    ``select @ rows`` then sums the rows [N, D] that share an id: the
    transpose of a gather, without a V-sized one-hot matrix, and faster than
    ``np.add.at`` (docs/PERFORMANCE.md). With 0/1 weights every sum is exact
    up to summation order.
    """
    uniq, inverse = np.unique(ids, return_inverse=True)
    select = np.zeros((len(uniq), len(ids)), dtype)
    select[inverse.reshape(-1), np.arange(len(ids))] = 1
    return uniq, select


def _head_grads(params: Params, cache: dict, e: np.ndarray, sums: np.ndarray, y: np.ndarray,
                grads: Params) -> np.ndarray:
    """The output layer's gradients into ``grads``; returns dL/dh_{T-1} [B, H].

    logits = top W_out^T + b_out, with the softmax gradient fused in:
      dloss/dlogits = (softmax - onehot(y)) / B = r * e - onehot(y) / B,   r_b = 1 / (B sums_b)
    Neither the softmax nor that [B, V] difference is formed: r and 1/B scale the small [B, H]
    factors, and the one-hot part touches only the rows of the targets.
    """
    top, m_h, w_out = cache["top"], cache["m_h"], params["out.weight"]
    dtype = top.dtype
    inv_b = dtype.type(1.0 / len(y))
    r = inv_b / sums  # [B]
    targets, select = _group(y, dtype)
    grads["out.weight"] = e.T @ (top * r[:, None])  # [V, H]
    grads["out.weight"][targets] -= select @ (top * inv_b)
    grads["out.bias"] = e.T @ r
    grads["out.bias"][targets] -= select.sum(axis=1) * inv_b
    dh = e @ w_out  # dloss/dtop, [B, H]
    dh *= r[:, None]
    dh -= w_out[y] * inv_b
    if m_h is not None:
        dh *= m_h
    return dh


def _backward_through_time(params: Params, cache: dict, dh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the cell's backward steps from t = T-1 down to 0: da and db [T, B, G*H] (``db is da`` where equal)."""
    cell = cache["cell"]
    steps = STEPS[cell]
    hs, saved, w_hh = cache["hs"], cache["saved"], cache["w_hh"]
    (T, B, H), G = hs.shape, get_cell(cell).num_gates
    da = np.empty((T, G, B, H), dh.dtype)  # gate-major, as the cells fill them
    db = np.empty_like(da)
    db_rows = np.empty((T, B, G * H), dh.dtype)  # db in the layout of the products
    dc = np.zeros_like(dh) if get_cell(cell).has_cell_state else None
    shared = True
    for t in range(T - 1, -1, -1):
        da_t = da[t]
        dc, db_t, direct = steps.backward(dh, dc, saved[t], da_t, db[t])
        shared = db_t is da_t
        _row_major(db_t, out=db_rows[t])
        if t:
            dh = db_rows[t] @ w_hh
            if direct is not None:
                dh += direct
    return (db_rows if shared else _row_major(da, np.empty_like(db_rows))), db_rows


def loss_and_grads(params: Params, x: np.ndarray, y: np.ndarray, masks: Masks | None = None,
                   cell: str = "rnn") -> tuple[float, Params]:
    """The mean cross-entropy and its gradient for every parameter (same keys and shapes)."""
    if not has_kernel(cell):
        return sequence.loss_and_grads(params, x, y, cell=cell, masks=masks, last_only=True)[:2]
    y = np.asarray(y)
    own, params = params, sequence.with_output_weight(params)  # a tied model's out.weight, made once
    z, cache = forward(params, x, masks, cell)
    loss_value, e, sums = _exp_shifted(z, y)
    grads: Params = {}
    dh = _head_grads(params, cache, e, sums, y, grads)
    da, db = _backward_through_time(params, cache, dh)

    xs, hs, w_ih = cache["xs"], cache["hs"], params["rnn.w_ih"]
    T, B, H = hs.shape
    GH = da.shape[-1]
    da_flat = da.reshape(T * B, GH)
    # dW_hh = sum_t db_t^T h_{t-1} as one product over all steps (h_{-1} = 0 drops t = 0)
    grads["rnn.w_hh"] = db[1:].reshape(-1, GH).T @ hs[:-1].reshape(-1, H)
    grads["rnn.b_ih"] = da_flat.sum(axis=0)
    # its own array either way: optimizers update grads in place
    grads["rnn.b_hh"] = grads["rnn.b_ih"].copy() if db is da else db.reshape(T * B, GH).sum(axis=0)

    ids = xs.reshape(-1)
    if is_embedding(params):
        emb = params["embedding"]
        E = emb.shape[1]
        grads["rnn.w_ih"] = da_flat.T @ cache["inputs"].reshape(T * B, E)  # sum_t da_t^T u_t
        d_in = da_flat @ w_ih  # dloss/d(masked embedding rows), [T*B, E]
        if cache["m_in"] is not None:
            d_in *= cache["m_in"].transpose(1, 0, 2).reshape(T * B, E)
        grads["embedding"] = np.zeros_like(emb)
        uniq, select = _group(ids, da.dtype)
        grads["embedding"][uniq] = select @ d_in
    else:
        # dW_ih[:, k] = sum of da over the (t, b) whose token is k (the gather's transpose)
        grads["rnn.w_ih"] = np.zeros_like(w_ih)
        uniq, select = _group(ids, da.dtype)
        grads["rnn.w_ih"][:, uniq] = da_flat.T @ select.T
    sequence.thin_gradient(grads, masks)
    sequence.tie_gradient(grads, own)
    return loss_value, {name: grads[name] for name in own}

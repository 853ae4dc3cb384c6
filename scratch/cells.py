"""Each cell's step and its gradient, one line per equation (the reference every framework is checked against).

Every step gets ``a = u W_ih^T + b_ih`` [B, G*H] (the input side of every gate, computed for all steps at
once by the caller), the previous state and the parameters; it returns the new state and what its backward
needs. Every backward gets dL/d(new state) and returns dL/da, dL/db for the recurrent side of the gates
``b = h_prev W_hh^T + b_hh`` (None for a cell without recurrent weights; the caller turns the db of every step
into the gradients of W_hh and b_hh with one product, ``scratch.sequence``) and dL/d(previous state). The
gradient of each line sits under the line it inverts, in reverse order.

sigma is the logistic function, * is element-wise; the gate blocks are stacked in the registry's order
(``wordrnn.core.cells``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from wordrnn.core.params import Params

Array = np.ndarray
State = tuple[Array, ...]  # (h,), or (h, c) for the LSTM


def sigmoid(z: Array) -> Array:
    return 0.5 * np.tanh(0.5 * z) + 0.5  # = 1 / (1 + exp(-z)), without overflow for large -z


def rnn_forward(p: Params, a: Array, state: State) -> tuple[State, Any]:
    (h_prev,) = state
    h = np.tanh(a + h_prev @ p["rnn.w_hh"].T + p["rnn.b_hh"])
    return (h,), (h_prev, h)


def rnn_backward(p: Params, saved: Any, d_state: State) -> tuple[Array, Array | None, State]:
    h_prev, h = saved
    (dh,) = d_state
    dz = dh * (1 - h * h)  # through the tanh
    return dz, dz, (dz @ p["rnn.w_hh"],)


def rnn_relu_forward(p: Params, a: Array, state: State) -> tuple[State, Any]:
    (h_prev,) = state
    h = np.maximum(a + h_prev @ p["rnn.w_hh"].T + p["rnn.b_hh"], 0)
    return (h,), (h_prev, h)


def rnn_relu_backward(p: Params, saved: Any, d_state: State) -> tuple[Array, Array | None, State]:
    h_prev, h = saved
    (dh,) = d_state
    dz = dh * (h > 0)  # through the relu
    return dz, dz, (dz @ p["rnn.w_hh"],)


def lstm_forward(p: Params, a: Array, state: State) -> tuple[State, Any]:
    h_prev, c_prev = state
    z_i, z_f, z_g, z_o = np.split(a + h_prev @ p["rnn.w_hh"].T + p["rnn.b_hh"], 4, axis=1)
    i, f, g, o = sigmoid(z_i), sigmoid(z_f), np.tanh(z_g), sigmoid(z_o)
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    h = o * tanh_c
    return (h, c), (h_prev, c_prev, i, f, g, o, tanh_c)


def lstm_backward(p: Params, saved: Any, d_state: State) -> tuple[Array, Array | None, State]:
    h_prev, c_prev, i, f, g, o, tanh_c = saved
    dh, dc_next = d_state
    # h = o * tanh(c)
    do = dh * tanh_c
    dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
    # c = f * c_prev + i * g
    df, dc_prev, di, dg = dc * c_prev, dc * f, dc * g, dc * i
    # i, f, g, o = sigma(z_i), sigma(z_f), tanh(z_g), sigma(z_o)
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1)
    # z = a + h_prev W_hh^T + b_hh
    return dz, dz, (dz @ p["rnn.w_hh"], dc_prev)


def gru_forward(p: Params, a: Array, state: State) -> tuple[State, Any]:
    (h_prev,) = state
    a_r, a_z, a_n = np.split(a, 3, axis=1)
    b = h_prev @ p["rnn.w_hh"].T + p["rnn.b_hh"]
    b_r, b_z, b_n = np.split(b, 3, axis=1)
    r = sigmoid(a_r + b_r)
    z = sigmoid(a_z + b_z)
    n = np.tanh(a_n + r * b_n)
    h = (1 - z) * n + z * h_prev
    return (h,), (h_prev, r, z, n, b_n)


def gru_backward(p: Params, saved: Any, d_state: State) -> tuple[Array, Array | None, State]:
    h_prev, r, z, n, b_n = saved
    (dh,) = d_state
    # h = (1 - z) * n + z * h_prev
    dn, dz, dh_prev = dh * (1 - z), dh * (h_prev - n), dh * z
    # n = tanh(a_n + r * b_n)
    da_n = dn * (1 - n * n)
    dr, db_n = da_n * b_n, da_n * r
    # z = sigma(a_z + b_z);  r = sigma(a_r + b_r)
    da_z = dz * z * (1 - z)
    da_r = dr * r * (1 - r)
    # b = h_prev W_hh^T + b_hh
    db = np.concatenate([da_r, da_z, db_n], axis=1)
    return np.concatenate([da_r, da_z, da_n], axis=1), db, (dh_prev + db @ p["rnn.w_hh"],)


def mingru_forward(p: Params, a: Array, state: State) -> tuple[State, Any]:
    (h_prev,) = state
    a_z, h_tilde = np.split(a, 2, axis=1)  # no recurrent weights: both gates read x only
    z = sigmoid(a_z)
    h = (1 - z) * h_prev + z * h_tilde
    return (h,), (h_prev, z, h_tilde)


def mingru_backward(p: Params, saved: Any, d_state: State) -> tuple[Array, Array | None, State]:
    h_prev, z, h_tilde = saved
    (dh,) = d_state
    # h = (1 - z) * h_prev + z * h~
    dz, dh_tilde, dh_prev = dh * (h_tilde - h_prev), dh * z, dh * (1 - z)
    # z = sigma(a_z)
    da_z = dz * z * (1 - z)
    return np.concatenate([da_z, dh_tilde], axis=1), None, (dh_prev,)


class CellSteps(NamedTuple):
    forward: Callable[[Params, Array, State], tuple[State, Any]]
    backward: Callable[[Params, Any, State], tuple[Array, Array | None, State]]


STEPS: dict[str, CellSteps] = {
    "rnn": CellSteps(rnn_forward, rnn_backward),
    "lstm": CellSteps(lstm_forward, lstm_backward),
    "gru": CellSteps(gru_forward, gru_backward),
    "rnn_relu": CellSteps(rnn_relu_forward, rnn_relu_backward),
    "mingru": CellSteps(mingru_forward, mingru_backward),
}

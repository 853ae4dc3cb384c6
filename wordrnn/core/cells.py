"""The recurrent cells, defined once: every implementation asks this module.

A cell with G gates stacks its weights torch's way: ``rnn.w_ih`` [G*H, I],
``rnn.w_hh`` [G*H, H], ``rnn.b_ih`` and ``rnn.b_hh`` [G*H], the gate blocks
in ``gates`` order (block k is rows k*H to (k+1)*H). The equations, with
``a = x W_ih^T + b_ih`` and ``b = h W_hh^T + b_hh`` split into gate blocks:

    rnn:  h' = tanh(a + b)
    rnn_relu: h' = relu(a + b)
    mingru: z = sigmoid(a_z);  h' = (1 - z) * h + z * a_h      (no W_hh, no b_hh)
    lstm: i, f, g, o = sigmoid(a_i + b_i), sigmoid(a_f + b_f), tanh(a_g + b_g), sigmoid(a_o + b_o)
          c' = f * c + i * g;  h' = o * tanh(c')
    gru:  r, z = sigmoid(a_r + b_r), sigmoid(a_z + b_z)
          n = tanh(a_n + r * b_n);  h' = (1 - z) * n + z * h

rnn, rnn_relu, lstm and gru are torch's ``nn.RNN`` (tanh, relu), ``nn.LSTM`` and ``nn.GRU``; mingru is the
minimal GRU of Feng et al. 2024, which torch lacks. Every state starts at zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cell:
    """Everything outside a cell's step functions needs to know about it."""

    name: str
    summary: str  # what it is, in a few words: the --cell help lists every cell with it
    gates: tuple[str, ...]  # the blocks stacked in rnn.w_ih (and rnn.w_hh), torch's order
    states: tuple[str, ...]  # the state it carries: ("h",), or ("h", "c") for the LSTM
    elementwise_flops: int  # per hidden unit and step, besides the products
    recurrent_weights: bool = True  # rnn.w_hh and rnn.b_hh exist (not for a cell whose gates read x only)
    # ONNX's own op for the cell (None: the exporter's generic lowering), its gate order and attributes
    onnx_op: str | None = None
    onnx_gates: tuple[str, ...] = ()
    onnx_attributes: dict[str, Any] = field(default_factory=dict)
    # Without an op: one step as ONNX primitives, (op, inputs, outputs, attributes) each, run by the exporter's
    # generic Scan. It reads a_<gate> (that gate's x W_ih^T + b_ih, [B, H]), the state (h; c) and, for a cell
    # with recurrent weights, R_<gate> (W_hh's block, transposed) and Rb_<gate>; it writes <state>_next.
    onnx_step: tuple[tuple[str, tuple[str, ...], tuple[str, ...], dict[str, Any]], ...] = ()

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def has_cell_state(self) -> bool:
        return "c" in self.states

    def param_shapes(self, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
        """The cell's canonical parameters and their shapes, in the initializer's order."""
        GH = self.num_gates * hidden_size
        shapes = {"rnn.w_ih": (GH, input_size)}
        if self.recurrent_weights:
            shapes["rnn.w_hh"] = (GH, hidden_size)
        shapes["rnn.b_ih"] = (GH,)
        if self.recurrent_weights:
            shapes["rnn.b_hh"] = (GH,)
        return shapes

    def onnx_permutation(self) -> list[int]:
        """Indices of torch's gate blocks in ONNX's order."""
        return [self.gates.index(g) for g in self.onnx_gates]

    def step_flops(self, input_size: int, hidden_size: int, input_is_lookup: bool = False) -> float:
        """Floating-point operations of one forward step for one example.

        The two products (2 FLOPs a multiply-add) dominate; the element-wise
        gate work is a few FLOPs per gate unit. With ``input_is_lookup`` the
        input product is a column gather (one-hot input), which is no arithmetic.
        """
        GH, H = self.num_gates * hidden_size, hidden_size
        products = (2 * GH * H if self.recurrent_weights else 0) + (0 if input_is_lookup else 2 * GH * input_size)
        return float(products + self.elementwise_flops * H)


CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", "Elman, tanh; the lab's", ("h",), ("h",), 3, onnx_op="RNN", onnx_gates=("h",),
                onnx_attributes={"activations": ["Tanh"]}),
    "lstm": Cell("lstm", "long short-term memory", ("i", "f", "g", "o"), ("h", "c"), 14, onnx_op="LSTM",
                 onnx_gates=("i", "o", "f", "g")),
    # torch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) is ONNX's linear_before_reset=1
    "gru": Cell("gru", "gated recurrent unit", ("r", "z", "n"), ("h",), 12, onnx_op="GRU",
                onnx_gates=("z", "r", "n"), onnx_attributes={"linear_before_reset": 1}),
    # torch's RNN_RELU: the Elman cell with relu for tanh
    "rnn_relu": Cell("rnn_relu", "Elman, ReLU", ("h",), ("h",), 3, onnx_op="RNN", onnx_gates=("h",),
                     onnx_attributes={"activations": ["Relu"]}),
    # the minimal GRU of Feng et al. 2024: gates of x alone, so the recurrence is linear in h; no ONNX op
    "mingru": Cell("mingru", "minimal GRU, Feng et al. 2024", ("z", "h"), ("h",), 8, recurrent_weights=False,
                   onnx_step=(
        ("Sigmoid", ("a_z",), ("z",), {}),
        ("Sub", ("a_h", "h"), ("step",), {}),
        ("Mul", ("z", "step"), ("moved",), {}),
        ("Add", ("h", "moved"), ("h_next",), {}),  # h + z (h~ - h) = (1 - z) h + z h~
    )),
}


def get_cell(name: str) -> Cell:
    """The cell called ``name``; ``KeyError`` for an unknown name (``Config.validate`` checks first)."""
    return CELLS[name]

"""The recurrent cells, defined once: every implementation asks this module.

A cell with G gates stacks its weights torch's way: ``rnn.w_ih`` [G*H, I],
``rnn.w_hh`` [G*H, H], ``rnn.b_ih`` and ``rnn.b_hh`` [G*H], the gate blocks
in ``gates`` order (block k is rows k*H to (k+1)*H). The equations, with
``a = x W_ih^T + b_ih`` and ``b = h W_hh^T + b_hh`` split into gate blocks:

    rnn:  h' = tanh(a + b)
    lstm: i, f, g, o = sigmoid(a_i + b_i), sigmoid(a_f + b_f), tanh(a_g + b_g), sigmoid(a_o + b_o)
          c' = f * c + i * g;  h' = o * tanh(c')
    gru:  r, z = sigmoid(a_r + b_r), sigmoid(a_z + b_z)
          n = tanh(a_n + r * b_n);  h' = (1 - z) * n + z * h

These are torch's ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``. Every state starts at zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    name: str
    gates: tuple[str, ...]  # torch's stacking order of the gate blocks
    has_cell_state: bool  # LSTM only: a second state c beside h
    # ONNX's own op and its gate order (the exporter permutes torch's blocks into it)
    onnx_op: str
    onnx_gates: tuple[str, ...]

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    def onnx_permutation(self) -> list[int]:
        """Indices of torch's gate blocks in ONNX's order."""
        return [self.gates.index(g) for g in self.onnx_gates]

    def step_flops(self, input_size: int, hidden_size: int, input_is_lookup: bool = False) -> float:
        """Floating-point operations of one forward step for one example.

        The two products (2 FLOPs a multiply-add) dominate; the element-wise
        gate work is a few FLOPs per gate unit. With ``input_is_lookup`` the
        input product is a column gather (one-hot input), which is no arithmetic.
        """
        G, H = self.num_gates, hidden_size
        products = 2 * G * H * hidden_size + (0 if input_is_lookup else 2 * G * H * input_size)
        elementwise = {"rnn": 3, "lstm": 14, "gru": 12}[self.name] * H
        return float(products + elementwise)


CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", ("h",), False, "RNN", ("h",)),
    "lstm": Cell("lstm", ("i", "f", "g", "o"), True, "LSTM", ("i", "o", "f", "g")),
    "gru": Cell("gru", ("r", "z", "n"), False, "GRU", ("z", "r", "n")),
}


def get_cell(name: str) -> Cell:
    """The cell called ``name``; ``KeyError`` for an unknown name (``Config.validate`` checks first)."""
    return CELLS[name]

"""The two wordrnn models in PyTorch, for every cell, and their canonical weights in both directions.

Both models are a recurrent layer of the configured cell (torch's ``nn.RNN`` with tanh or relu, ``nn.LSTM``
or ``nn.GRU``, batch first, picked from ``RECURRENT`` by ``config.cell``; ``StepLayer`` for a cell torch has no
module for) followed by ``torch.nn.Linear`` on the hidden states; the embedding model puts an ``nn.Embedding``
in front. A stacked model has one such layer per level: ``rnn`` is layer 0 and ``stack[l - 1]`` layer l, each
run on its own so that what one layer hands the next passes through a locked dropout mask (torch's
``num_layers`` draws a fresh mask per position and step, docs/DESIGN.md). torch stacks the gate blocks as the
canonical format does (``wordrnn.core.cells``), so parameter
names map one to one onto the canonical names (``CANONICAL``).

One function, ``forward``, serves both contexts: a chunk of tokens with an optional incoming state and reset
mask gives the logits of every position (or of the last only, ``last_only``: a batch of windows) and the state
after the chunk.

The one-hot model comes in two forms that compute the same numbers:

- materialized (the lab report's form): ``F.one_hot(x).to(dtype)`` is fed to
  the recurrent layer, which multiplies a [B*T, V] matrix of zeros and ones by ``W_ih^T``;
- gather (``onehot_gather=True``): ``x_t W_ih^T`` for a one-hot ``x_t`` of token
  ``k`` is column ``k`` of ``W_ih``, so the input projection is a lookup of rows of
  ``W_ih^T``, and the recurrence is written out step by step with the same
  weights (``STEPS``: torch's cell equations; the layer would apply ``W_ih``
  again). Same parameters, same ``state_dict``; only the arithmetic that
  multiplies by zero is skipped.

Dropout is not a module here: ``forward`` takes explicit masks
(``{"input": [B, T or 1, E] or None, "hidden": [B, 1, H] or None}``, and ``"recurrent"``
[G*H, H] for weight-drop on ``w_hh``; values 0 or ``1/(1-p)``), so tests can
feed the same masks to every framework and the
training backend can draw them from ``(seed, step)`` (``wordrnn.core.dropout``).
Without masks there is no dropout, whatever ``module.training`` says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchmodels import scan
from torchmodels.output import linear_cross_entropy
from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.params import LAYER_SUFFIX, Params, canonical_order, check_params, layer_slice, output_weight

# canonical name -> name in the module's state_dict
CANONICAL = {
    "embedding": "embedding.weight",
    "rnn.w_ih": "rnn.weight_ih_l0",
    "rnn.w_hh": "rnn.weight_hh_l0",
    "rnn.b_ih": "rnn.bias_ih_l0",
    "rnn.b_hh": "rnn.bias_hh_l0",
    "out.proj": "out.proj",
    "out.weight": "out.weight",
    "out.bias": "out.bias",
}



def torch_name(name: str) -> str:
    """The state_dict name of a canonical parameter: ``CANONICAL``, and layer l's ``rnn.w_ih_l{l}`` is
    ``stack.{l-1}.weight_ih_l0``."""
    if LAYER_SUFFIX not in name:
        return CANONICAL[name]
    base, _, layer = name.rpartition(LAYER_SUFFIX)
    return f"stack.{int(layer) - 1}.{CANONICAL[base].split('.', 1)[1]}"


# the recurrent layer of each cell: (input size, hidden size) -> module
RECURRENT: dict[str, Callable[[int, int], nn.Module]] = {
    "rnn": lambda i, h: nn.RNN(i, h, nonlinearity="tanh", batch_first=True),
    "lstm": lambda i, h: nn.LSTM(i, h, batch_first=True),
    "gru": lambda i, h: nn.GRU(i, h, batch_first=True),
    "rnn_relu": lambda i, h: nn.RNN(i, h, nonlinearity="relu", batch_first=True),
}

Masks = dict[str, torch.Tensor | None]
# A poem chunk whose poems start at most this many times a token (some stream's state zeroed there) runs the fused
# layer once per stretch between those positions; more often, the cell step by step (docs/PERFORMANCE.md).
SEGMENTED_STARTS = 0.2
State = tuple[torch.Tensor, ...]  # (h,), or (h, c) for the LSTM


def elman_step(state: State, a: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> State:
    """``h' = tanh(b + a)``, grouped as nn.RNN's CPU kernel groups it (so the two forms agree to the bit)."""
    (h,) = state
    return (torch.tanh(F.linear(h, w_hh, b_hh) + a),)


def relu_step(state: State, a: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> State:
    """``h' = relu(b + a)``, grouped as ``elman_step``."""
    (h,) = state
    return (torch.relu(F.linear(h, w_hh, b_hh) + a),)


def mingru_step(state: State, a: torch.Tensor, w_hh: None, b_hh: None) -> State:
    """The minimal GRU: ``z = sigmoid(a_z)``, ``h' = (1 - z) h + z a_h`` (no recurrent weights)."""
    (h,) = state
    a_z, h_tilde = a.chunk(2, dim=-1)
    z = torch.sigmoid(a_z)
    return ((1 - z) * h + z * h_tilde,)


def lstm_step(state: State, a: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> State:
    """torch's LSTM: gates i, f, g, o from ``a + b``; ``c' = f c + i g``, ``h' = o tanh(c')``."""
    h, c = state
    i, f, g, o = (a + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def gru_step(state: State, a: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> State:
    """torch's GRU: ``r, z = sigmoid(a_r + b_r), sigmoid(a_z + b_z)``; ``n = tanh(a_n + r b_n)``;
    ``h' = (1 - z) n + z h``."""
    (h,) = state
    a_r, a_z, a_n = a.chunk(3, dim=-1)
    b_r, b_z, b_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(a_r + b_r), torch.sigmoid(a_z + b_z)
    n = torch.tanh(a_n + r * b_n)
    return ((1 - z) * n + z * h,)


# one step of each cell, given the input projection a = x W_ih^T + b_ih
STEPS: dict[str, Callable[[State, torch.Tensor, torch.Tensor, torch.Tensor], State]] = {
    "rnn": elman_step, "lstm": lstm_step, "gru": gru_step, "rnn_relu": relu_step, "mingru": mingru_step,
}


class StepLayer(nn.Module):
    """The recurrent layer of a cell torch has no module for: the registry's parameters under ``nn.RNN``'s names,
    the cell's step (``STEPS``) run over time, called as ``nn.RNN`` is (batch first; output and final state)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int):
        super().__init__()
        self.cell, self.hidden_size = cell, hidden_size
        for name, shape in get_cell(cell).param_shapes(input_size, hidden_size).items():
            self.register_parameter(CANONICAL[name].split(".", 1)[1], nn.Parameter(torch.empty(shape)))

    def forward(self, inputs: torch.Tensor, hx: torch.Tensor | tuple | None = None) -> tuple[torch.Tensor, Any]:
        states = get_cell(self.cell).states
        if hx is None:
            zeros = inputs.new_zeros(inputs.shape[0], self.hidden_size)
            state: State = tuple(zeros for _ in states)
        else:
            state = tuple(s[0] for s in (hx if isinstance(hx, tuple) else (hx,)))
        projected = F.linear(inputs.transpose(0, 1), self.weight_ih_l0, self.bias_ih_l0)
        w_hh, b_hh = getattr(self, "weight_hh_l0", None), getattr(self, "bias_hh_l0", None)
        hs = []
        for projected_t in projected:
            state = STEPS[self.cell](state, projected_t, w_hh, b_hh)
            hs.append(state[0])
        final = tuple(s[None] for s in state)
        return torch.stack(hs, dim=1), final if len(final) > 1 else final[0]


class TiedReadout(nn.Module):
    """A tied model's output layer: its bias [V] and, where E differs from H, the projection ``proj`` [E, H]; the
    weight is the embedding table's (``wordrnn.core.params.output_weight``)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(vocab_size))
        if embed_dim != hidden_size:
            self.proj = nn.Parameter(torch.empty(embed_dim, hidden_size))


def recurrent_layer(cell: str, input_size: int, hidden_size: int) -> nn.Module:
    """One recurrent layer of ``cell``: torch's module (``RECURRENT``), else ``StepLayer``."""
    return RECURRENT[cell](input_size, hidden_size) if cell in RECURRENT else StepLayer(cell, input_size, hidden_size)


class RNNLanguageModel(nn.Module):
    """What both models share: ``layers`` recurrent layers of ``cell`` over input vectors, a linear layer on the
    last one's h_t."""

    def __init__(self, input_size: int, hidden_size: int, vocab_size: int, cell: str = "rnn", layers: int = 1):
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.cell = cell
        self.rnn = recurrent_layer(cell, input_size, hidden_size)
        self.stack = nn.ModuleList(recurrent_layer(cell, hidden_size, hidden_size) for _ in range(layers - 1))
        self.out = nn.Linear(hidden_size, vocab_size)

    def layer(self, index: int) -> nn.Module:
        """Recurrent layer ``index`` (0: ``rnn``)."""
        return self.stack[index - 1] if index else self.rnn

    def layer_slice(self, index: int) -> slice:
        """Layer ``index``'s columns in a stacked state [B, L*H] or weight-drop mask [G*H, L*H]."""
        return layer_slice(index, self.hidden_size)

    def output_weight(self) -> torch.Tensor:
        return self.out.weight

    def recurrent_mask(self, masks: Masks | None, index: int) -> torch.Tensor | None:
        """Layer ``index``'s weight-drop mask [G*H, H], or None."""
        recurrent_mask = masks.get("recurrent") if masks else None
        return None if recurrent_mask is None else recurrent_mask[:, self.layer_slice(index)]

    def run_layer(self, inputs: torch.Tensor, hx: Any, masks: Masks | None, index: int = 0
                  ) -> tuple[torch.Tensor, Any]:
        """Recurrent layer ``index`` over ``inputs`` from ``hx``; under weight-drop it reads ``w_hh * m_rec`` in
        place of ``w_hh`` (``torch.func.functional_call`` swaps the one weight, so the fused layer still runs)."""
        layer, recurrent_mask = self.layer(index), self.recurrent_mask(masks, index)
        if recurrent_mask is None:
            return layer(inputs, hx)
        thinned = {"weight_hh_l0": layer.weight_hh_l0 * recurrent_mask}
        return torch.func.functional_call(layer, thinned, (inputs, hx))

    def recurrent_weights(self, masks: Masks | None, index: int = 0
                          ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Layer ``index``'s ``w_hh`` (times the weight-drop mask, if any) and ``b_hh``; None for a cell without
        them."""
        layer = self.layer(index)
        w_hh, b_hh = getattr(layer, "weight_hh_l0", None), getattr(layer, "bias_hh_l0", None)
        recurrent_mask = self.recurrent_mask(masks, index)
        return (w_hh if recurrent_mask is None else w_hh * recurrent_mask), b_hh

    def head(self, hs: torch.Tensor, masks: Masks | None) -> torch.Tensor:
        """Logits [B, T, V] of hidden states [B, T, H], times the hidden dropout mask [B, 1, H] if any."""
        return F.linear(dropped_output(hs, masks), self.output_weight(), self.out.bias)

    @property
    def num_layers(self) -> int:
        return 1 + len(self.stack)

    def zero_state(self, batch: int) -> State:
        zeros = self.out.bias.new_zeros(batch, self.num_layers * self.hidden_size)
        return (zeros, zeros.clone()) if get_cell(self.cell).has_cell_state else (zeros,)

    def forward(self, x: torch.Tensor, state: State | None = None, reset: torch.Tensor | None = None,
                masks: Masks | None = None, last_only: bool = False, return_hidden: bool = False,
                readout: bool = True) -> tuple[torch.Tensor | None, ...]:
        """Logits [B, T, V] at every position of ``x`` [B, T] (or [B, V] at the last, ``last_only``) and the
        state after the last position, from ``state`` (None: zero); with ``return_hidden`` also the last
        layer's output h_t [B, T, H] before the output dropout (what TAR reads). Without ``readout``, None
        in place of the logits: the caller applies the output layer itself (``fused_chunk_loss``).

        ``reset`` [B, T] bool: a poem starts there and the state is zeroed before that token. A reset at
        the first position only zeroes rows of the incoming state; resets further in cut the chunk into
        stretches, each run by torch's fused recurrent layer (``recur_segments``). Layer l >= 1 reads the
        output of layer l - 1 times the between-layers dropout mask.
        """
        state = self.zero_state(x.shape[0]) if state is None else state
        keep = None if reset is None else (~reset).to(state[0].dtype)
        if keep is not None:
            state = tuple(s * keep[:, :1] for s in state)
        between = masks.get("between") if masks else None
        finals = []
        for index in range(self.num_layers):
            own = tuple(s[:, self.layer_slice(index)] for s in state)
            if index == 0 and self.steps_needed():
                hs, final = self.recur_steps(self.projected(x, masks), own, keep, masks)
            else:
                inputs = self.layer_inputs(x, masks) if index == 0 else (
                    hs if between is None else hs * between[..., self.layer_slice(index - 1)])
                hs, final = self.recur_segments(inputs, own, reset, keep, masks, index)
            finals.append(final)
        state = finals[0] if len(finals) == 1 else tuple(torch.cat(parts, dim=1) for parts in zip(*finals))
        if not readout:
            logits = None
        else:
            logits = self.head(hs[:, -1:], masks)[:, 0] if last_only else self.head(hs, masks)
        return (logits, state, hs) if return_hidden else (logits, state)

    def steps_needed(self) -> bool:
        """Whether this model runs its cell step by step (the one-hot gather) rather than torch's layer."""
        return False

    def recur_segments(self, inputs: torch.Tensor, state: State, reset: torch.Tensor | None,
                       keep: torch.Tensor | None, masks: Masks | None, index: int = 0) -> tuple[torch.Tensor, State]:
        """Every h_t [B, T, H] of torch's fused layer, run once per stretch between the positions where some
        stream's poem starts, the rows of those streams zeroed there. A chunk of 8 streams x 20 tokens holds one
        or two such positions; the cell step by step would be one small kernel per gate and step instead. With
        more than ``SEGMENTED_STARTS`` a token, the steps (docs/PERFORMANCE.md). ``index``: which layer."""
        starts = (reset[:, 1:].any(dim=0).nonzero().flatten() + 1).tolist() if reset is not None else []
        many = len(starts) > SEGMENTED_STARTS * inputs.shape[1]  # many stretches: the steps are cheaper
        if many or scan.runs_parallel(self.cell, inputs.shape[1]):  # (or a scan, which reads every reset)
            return self.recur_steps(self.projected_from(inputs, index), state, keep, masks, index)
        bounds = [0, *starts, inputs.shape[1]]
        outs = []
        for begin, end in zip(bounds[:-1], bounds[1:]):
            if begin:
                state = tuple(s * keep[:, begin:begin + 1] for s in state)
            out, state = self.recur_layer(inputs[:, begin:end], state, masks, index)
            outs.append(out)
        return (outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)), state

    def recur_layer(self, inputs: torch.Tensor, state: State, masks: Masks | None = None, index: int = 0
                    ) -> tuple[torch.Tensor, State]:
        """Every h_t [B, T, H] of torch's layer ``index`` over input vectors [B, T, in], from ``state``."""
        hx = tuple(s[None] for s in state)
        out, final = self.run_layer(inputs, hx if len(hx) > 1 else hx[0], masks, index)
        final = final if isinstance(final, tuple) else (final,)
        return out, tuple(f[0] for f in final)

    def projected_from(self, inputs: torch.Tensor, index: int = 0) -> torch.Tensor:
        """x_t W_ih^T + b_ih, time-major [T, B, G*H], from layer ``index``'s input vectors [B, T, in]."""
        layer = self.layer(index)
        return F.linear(inputs.transpose(0, 1), layer.weight_ih_l0, layer.bias_ih_l0)

    def recur_steps(self, projected: torch.Tensor, state: State, keep: torch.Tensor | None,
                    masks: Masks | None = None, index: int = 0) -> tuple[torch.Tensor, State]:
        """Every h_t [B, T, H] of layer ``index`` from time-major input projections [T, B, G*H], the state zeroed
        where ``keep`` [B, T] is 0, before the step."""
        if scan.runs_parallel(self.cell, len(projected)):
            return scan.parallel_recurrence(projected, state, keep)
        # a cell without recurrent weights has neither (its step ignores them)
        step = STEPS[self.cell]
        w_hh, b_hh = self.recurrent_weights(masks, index)
        hs = []
        for t, projected_t in enumerate(projected):
            if keep is not None and t:
                state = tuple(s * keep[:, t:t + 1] for s in state)
            state = step(state, projected_t, w_hh, b_hh)
            hs.append(state[0])
        return torch.stack(hs, dim=1), state


def dropped_output(hs: torch.Tensor, masks: Masks | None) -> torch.Tensor:
    """The last layer's output [B, T, H] times the output dropout mask [B, 1, H] if any: what the output layer
    and AR read."""
    hidden_mask = masks.get("hidden") if masks else None
    return hs if hidden_mask is None else hs * hidden_mask


def chunk_loss(logits: torch.Tensor, hidden: torch.Tensor | None, y: torch.Tensor, weights: torch.Tensor,
               reset: torch.Tensor | None = None, masks: Masks | None = None, last_only: bool = False,
               ar: float = 0.0, tar: float = 0.0) -> torch.Tensor:
    """The weighted mean cross-entropy of a chunk, plus AR and TAR on the last layer's output ``hidden``
    [B, T, H] (``forward(..., return_hidden=True)``; None without penalties), as ``scratch.sequence`` defines
    them (``activation_penalties`` there)."""
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    loss = (losses * weights.reshape(-1)).sum() / weights.sum()
    return add_penalties(loss, hidden, weights, reset, masks, last_only, ar, tar)


def fused_chunk_loss(model: RNNLanguageModel, hidden: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                     reset: torch.Tensor | None = None, masks: Masks | None = None, last_only: bool = False,
                     ar: float = 0.0, tar: float = 0.0) -> torch.Tensor:
    """``chunk_loss`` from the last layer's output ``hidden`` [B, T, H] (``forward(..., return_hidden=True,
    readout=False)``) rather than from logits: ``model``'s output layer and the cross-entropy run together,
    a block of rows at a time, with no [B*T, V] array (``torchmodels.output``)."""
    top = dropped_output(hidden[:, -1:] if last_only else hidden, masks)
    loss = linear_cross_entropy(top.reshape(-1, top.shape[-1]), model.output_weight(), model.out.bias,
                                y.reshape(-1), weights.reshape(-1))
    return add_penalties(loss, hidden, weights, reset, masks, last_only, ar, tar)


def add_penalties(loss: torch.Tensor, hidden: torch.Tensor | None, weights: torch.Tensor,
                  reset: torch.Tensor | None, masks: Masks | None, last_only: bool, ar: float, tar: float
                  ) -> torch.Tensor:
    """``loss`` plus AR (on the dropped output) and TAR (on the output's change between positions) of the last
    layer's output ``hidden`` [B, T, H], each weighted as the chunk's positions are; ``loss`` itself when both
    are off."""
    if not (ar or tar):
        return loss
    B, T, H = hidden.shape
    w = weights.reshape(B, -1).to(hidden.dtype)  # [B, T], or [B, 1] at a window's last position
    if ar:
        top = dropped_output(hidden[:, -w.shape[1]:], masks)  # AR reads the dropped output, as the head does
        loss = loss + ar * (w[..., None] * top * top).sum() / (H * w.sum())
    if tar and T > 1:
        v = w if not last_only else F.pad(w, (T - 1, 0))  # the weight of the change into each position
        v = F.pad(v[:, 1:], (1, 0))  # none into the first position
        if reset is not None:
            v = v * (~reset).to(v.dtype)  # none across a poem's start
        change = hidden[:, 1:] - hidden[:, :-1]
        total = v.sum()
        loss = loss + tar * (v[:, 1:, None] * change * change).sum() / (H * torch.where(total > 0, total, 1.0))
    return loss


class OneHotRNN(RNNLanguageModel):
    """Each token is a one-hot vector of size V fed straight into the RNN."""

    def __init__(self, vocab_size: int, hidden_size: int, gather: bool = False, cell: str = "rnn", layers: int = 1):
        super().__init__(vocab_size, hidden_size, vocab_size, cell, layers)
        self.gather = gather

    def projected(self, x: torch.Tensor, masks: Masks | None) -> torch.Tensor:
        """x_t W_ih^T + b_ih, time-major [T, B, G*H], as a lookup of columns of W_ih.

        Columns are picked time-major with ``index_select`` (faster forward and
        backward than ``F.embedding`` on ``W_ih^T`` and a ``[:, t]`` slice per
        step; docs/PERFORMANCE.md).
        """
        self.refuse_input_mask(masks)
        w_ih, b_ih = self.rnn.weight_ih_l0, self.rnn.bias_ih_l0
        columns = w_ih.index_select(1, x.t().reshape(-1))  # [G*H, T*B]: column x[b, t] of W_ih
        return columns.t().reshape(x.shape[1], x.shape[0], -1) + b_ih

    def layer_inputs(self, x: torch.Tensor, masks: Masks | None) -> torch.Tensor:
        self.refuse_input_mask(masks)
        return F.one_hot(x, self.vocab_size).to(self.rnn.weight_ih_l0.dtype)

    def steps_needed(self) -> bool:
        return self.gather

    @staticmethod
    def refuse_input_mask(masks: Masks | None) -> None:
        if masks and masks.get("input") is not None:
            raise ValueError("input dropout is for the embedding model only; the one-hot model takes none")


class EmbeddingRNN(RNNLanguageModel):
    """Each token is looked up in a trainable V x E table, then fed to the RNN."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, cell: str = "rnn", tie: bool = False,
                 layers: int = 1):
        super().__init__(embed_dim, hidden_size, vocab_size, cell, layers)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        if tie:
            self.out = TiedReadout(vocab_size, embed_dim, hidden_size)

    def output_weight(self) -> torch.Tensor:
        if isinstance(self.out, TiedReadout):
            return output_weight({"embedding": self.embedding.weight, **dict(self.out.named_parameters("out"))})
        return self.out.weight

    def layer_inputs(self, x: torch.Tensor, masks: Masks | None) -> torch.Tensor:
        """The embedding rows of ``x``, times the input dropout mask ([B, T, E] or locked [B, 1, E])."""
        inputs = self.embedding(x)
        input_mask = masks.get("input") if masks else None
        return inputs if input_mask is None else inputs * input_mask

    def projected(self, x: torch.Tensor, masks: Masks | None) -> torch.Tensor:
        """x_t W_ih^T + b_ih, time-major [T, B, G*H]."""
        return self.projected_from(self.layer_inputs(x, masks))


def build_module(
    config: Config,
    params: Params,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    onehot_gather: bool = False,
) -> nn.Module:
    """The torch module ``config`` describes (its model and cell), holding the canonical weights ``params``.

    ``module(x, state, reset, masks, last_only)`` maps int64 token ids [B, T] (any T >= 1) to logits of
    ``dtype`` ([B, T, V], or [B, V] with ``last_only``) and the state after the last position.
    The module is built on the meta device and then filled, so building it draws
    no random numbers and touches no global RNG.
    """
    check_params(params, config)
    V, H, E = config.vocab_size, config.hidden_size, config.embed_dim
    with torch.device("meta"):
        if config.model == "onehot":
            module = OneHotRNN(V, H, gather=onehot_gather, cell=config.cell, layers=config.layers)
        else:
            module = EmbeddingRNN(V, E, H, cell=config.cell, tie=config.tie, layers=config.layers)
    module = module.to(dtype=dtype).to_empty(device=device)
    load_canonical(module, params)
    return module


def load_canonical(module: nn.Module, params: Params) -> None:
    """Copy canonical arrays into ``module``'s parameters, in place (converting dtype and device)."""
    own = dict(unwrap(module).named_parameters())
    with torch.no_grad():
        for name, value in params.items():
            if torch_name(name) in own:
                target = own[torch_name(name)]
                target.copy_(torch.as_tensor(np.asarray(value)).to(target.device, target.dtype))


def canonical_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The module's parameters under their canonical names, in the canonical order (``canonical_order``)."""
    own = dict(unwrap(module).named_parameters())
    canonical = {canonical_name(name): name for name in own}
    return [(name, own[canonical[name]]) for name in canonical_order(canonical)]


def canonical_name(name: str) -> str:
    """The canonical name of a state_dict name (``torch_name``'s inverse)."""
    if name.startswith("stack."):
        _, layer, own = name.split(".", 2)
        base = next(k for k, v in CANONICAL.items() if v == f"rnn.{own}")
        return f"{base}{LAYER_SUFFIX}{int(layer) + 1}"
    return next(k for k, v in CANONICAL.items() if v == name)


def to_canonical(module: nn.Module) -> Params:
    """The module's weights as canonical float32 NumPy arrays (copies, not views)."""
    return {
        name: param.detach().to("cpu", torch.float32).numpy().copy()
        for name, param in canonical_parameters(module)
    }


def unwrap(module: nn.Module) -> nn.Module:
    """The module behind a ``torch.compile`` wrapper (whose state_dict names carry a prefix)."""
    return getattr(module, "_orig_mod", module)

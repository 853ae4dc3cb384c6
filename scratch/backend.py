"""The NumPy backend of the one training loop (``wordrnn.run.loop``).

A step is: the dropout masks ``wordrnn.core.dropout.step_masks`` specifies
for it (input mask for the embedding model only), loss and hand-written
gradients of the configured cell over the chunk (``scratch.sequence``, either
context), global-norm clipping, then the optimizer (which adds weight decay) at the step's learning rate
(``Config.step_lr``: scaled by the chunk's length with variable-length BPTT).
The state lives in the parameters' dtype (float32 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.streams import Chunk
from scratch import sequence
from scratch.optim import SGD, Adam, clip_by_global_norm, make_optimizer
from wordrnn.core.config import Config
from wordrnn.core.dropout import Masks, step_masks
from wordrnn.core.errors import UsageError
from wordrnn.core.params import Params, check_params, param_shapes


@dataclass
class NumpyState:
    config: Config
    params: Params  # canonical names and layout, in the backend's dtype
    optimizer: Adam | SGD


class NumpyBackend:
    """``wordrnn.core.backend.Backend`` for the NumPy reference."""

    framework = "numpy"
    process_index = 0

    def __init__(self, dtype: type = np.float32):
        self.dtype = np.dtype(dtype)

    def init(self, params: Params, config: Config) -> NumpyState:
        if config.precision != "float32":
            raise UsageError(f"--precision {config.precision}: the NumPy reference computes in float32 or float64 "
                             "(--dtype), the reference mixed precision is measured against; train with "
                             "torchmodels.train or jaxmodels.train, or give --precision float32")
        check_params(params, config)
        # Own copies, in canonical order: the optimizer updates them in place.
        own = {name: np.array(params[name], dtype=self.dtype) for name in param_shapes(config)}
        optimizer = make_optimizer(config.optimizer, own, lr=config.lr, weight_decay=config.weight_decay)
        return NumpyState(config, own, optimizer)

    def dropout_masks(self, config: Config, step: int, x: np.ndarray) -> Masks | None:
        """The masks of ``wordrnn.core.dropout.step_masks`` for this step (the model casts them to its dtype)."""
        return step_masks(config, step, x)

    def train_step(self, state: NumpyState, chunk: Chunk, carry: tuple | None, step: int
                   ) -> tuple[NumpyState, float, tuple]:
        config = state.config
        masks = self.dropout_masks(config, step, chunk.x)
        loss, grads, carry = sequence.loss_and_grads(state.params, chunk.x, chunk.y, chunk.weights, config.cell,
                                                     carry, chunk.reset, masks, chunk.last_only, config.ar, config.tar)
        if config.clip > 0:
            clip_by_global_norm(grads, config.clip)
        state.optimizer.lr = config.step_lr(chunk.x.shape[1])
        state.optimizer.update(state.params, grads)
        return state, loss, carry

    def logits(self, state: NumpyState, x: np.ndarray, carry: tuple | None = None, last_only: bool = False
               ) -> tuple[np.ndarray, tuple]:
        logits, carry, _ = sequence.forward(state.params, x, state.config.cell, carry, last_only=last_only)
        return logits.astype(np.float32, copy=False), carry

    def canonical(self, state: NumpyState) -> Params:
        return {name: p.astype(np.float32) for name, p in state.params.items()}

    def optimizer_arrays(self, state: NumpyState) -> dict[str, np.ndarray]:
        arrays = state.optimizer.state_arrays()
        counts = state.optimizer.spec.scalar_names
        return {k: v if k in counts else v.astype(np.float32, copy=False) for k, v in arrays.items()}

    def load_optimizer_arrays(self, state: NumpyState, arrays: dict[str, np.ndarray]) -> NumpyState:
        state.optimizer.load_state_arrays(arrays)
        return state

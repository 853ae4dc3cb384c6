"""What a framework must supply to be trained by the one loop in ``wordrnn.run.loop``.

A backend is small: it turns canonical weights into its own state, takes a
training step on a chunk, computes logits, and turns its state back into
canonical arrays. Both contexts go through the same two functions: a batch of
windows is a chunk that starts from a zero state and is scored at its last
position only (``wordrnn.core.layout``). Everything else (batches, evaluation, checkpoints, resume, progress,
Ctrl-C, the divergence guard, samples) is the loop's job and is written once.

State is passed in and returned (JAX style); PyTorch and NumPy backends may
mutate it in place and return the same object.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from wordrnn.core.config import Config
from wordrnn.core.params import Params

State = Any


class Backend(Protocol):
    #: "numpy", "torch" or "jax": written to config.json and the report.
    framework: str
    #: This process's rank when several processes train one model (multi-host JAX); 0 otherwise. Every
    #: process trains, only process 0 writes the run folder and prints.
    process_index: int

    def init(self, params: Params, config: Config) -> State:
        """Build weights (from canonical float32 arrays) and a fresh optimizer state."""

    def train_step(self, state: State, chunk: Any, carry: Any, step: int) -> tuple[State, Any, Any]:
        """One optimizer step on ``chunk`` (``data.streams.Chunk``), either context.

        ``chunk.x`` int64 [B, T]; ``chunk.reset`` bool [B, T] (a poem starts there: the state is zeroed before
        that token) or None; ``chunk.y`` and ``chunk.weights`` [B, T], or [B] where ``chunk.last_only`` (the head
        reads the last position only: a batch of windows). ``carry`` is the state in, in the backend's own form
        (None: zero); the step takes no gradient through it (truncated BPTT). ``step`` is the global step number
        (0-based): dropout masks must be derived from ``(config.seed, step)`` alone (``wordrnn.core.dropout``),
        so that a resumed run draws the masks an uninterrupted one would. Returns the new state, the weighted
        mean cross-entropy (anything ``float()`` accepts; the loop converts it lazily so that asynchronous
        frameworks are not synchronized every step) and the state after the chunk.
        """

    def logits(self, state: State, x: np.ndarray, carry: Any = None, last_only: bool = False
               ) -> tuple[np.ndarray, Any]:
        """Float32 logits of int64 ``x`` [B, T] in evaluation mode (no dropout), from ``carry`` (None: zero):
        [B, V] at the last position with ``last_only`` (a window model), else [B, T, V] at every position;
        and the state after the last position."""

    def canonical(self, state: State) -> Params:
        """The current weights as canonical float32 NumPy arrays."""

    def optimizer_arrays(self, state: State) -> dict[str, np.ndarray]:
        """The optimizer state as named arrays (for exact resume).

        The names of ``wordrnn.core.optimizers``, so a run can resume under another framework:
        Adam: ``adam.step`` (int64 scalar, steps taken), ``adam.m.<param>`` and
        ``adam.v.<param>`` (first and second moments). SGD: no arrays.
        """

    def load_optimizer_arrays(self, state: State, arrays: dict[str, np.ndarray]) -> State:
        """Restore what ``optimizer_arrays`` returned.

        The loop checks the arrays first (``wordrnn.run.folder.check_optimizer_arrays``): they hold exactly
        the optimizer's registry names, the step a 0-d int64, every slot float32 shaped like its
        parameter (SGD: none). A backend only copies them into its state.
        """

"""What a framework must supply to be trained by the one loop in ``wordrnn.run.loop``.

A backend is small: it turns canonical weights into its own state, takes a
training step, computes logits, and turns its state back into canonical
arrays. Everything else (batches, evaluation, checkpoints, resume, progress,
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

    def train_step(self, state: State, x: np.ndarray, y: np.ndarray, step: int) -> tuple[State, Any]:
        """One optimizer step on a batch.

        ``x``: int64 [B, T] token ids, ``y``: int64 [B] next-token ids, ``step``:
        the global step number (0-based). Dropout masks must be derived from
        ``(config.seed, step)`` alone, so that a resumed run draws the same
        masks as an uninterrupted one. Returns the new state and the batch's
        mean cross-entropy (anything ``float()`` accepts; the loop converts it
        lazily so that asynchronous frameworks are not synchronized every step).
        """

    def logits(self, state: State, x: np.ndarray) -> np.ndarray:
        """Float32 [B, V] logits for int64 [B, T] windows, evaluation mode (no dropout)."""

    def train_chunk(self, state: State, x: np.ndarray, y: np.ndarray, weights: np.ndarray, reset: np.ndarray,
                    carry: Any, step: int) -> tuple[State, Any, Any]:
        """One optimizer step on a chunk of streams (the poem context; ``data.streams.Chunk``).

        ``x``, ``y`` int64 [B, T], ``weights`` float32 [B, T] (1 for a target, 0 for none), ``reset`` bool
        [B, T] (a poem starts there: the state is zeroed before that token). ``carry`` is the state after
        the previous chunk in the backend's own form (None: zero); the step takes no gradient through it.
        Returns the new state, the weighted mean cross-entropy (lazily, as ``train_step``) and the carry
        after this chunk.
        """

    def sequence_logits(self, state: State, x: np.ndarray, reset: np.ndarray | None, carry: Any
                        ) -> tuple[np.ndarray, Any]:
        """Float32 [B, T, V] logits at every position of int64 [B, T] ``x`` from ``carry`` (None: zero), in
        evaluation mode, and the carry after the last position. ``reset`` as in ``train_chunk`` (None: none)."""

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

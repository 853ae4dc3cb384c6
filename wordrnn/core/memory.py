"""How much memory a training run needs, estimated before anything is allocated, against what is free.

A model too large for the machine otherwise fails late and badly: NumPy's allocation error as a
traceback, or, just below that size, a process that grows until the kernel kills it (and, on a shared
machine, its neighbours with it). The estimate counts float32 numbers:

- the weights twice: the seeded canonical copy every backend starts from, and the framework's own;
- the gradients, and the update's temporaries of their size: three times;
- the optimizer state: one copy per state slot of the optimizer (``wordrnn.core.optimizers``: Adam's
  and AdamW's two moments; SGD keeps none);
- the activations one batch keeps for the backward pass. A window model runs ``seq_len`` steps for
  ``batch_size`` windows and predicts at the last step only; a poem model runs ``bptt`` steps for
  ``batch_size`` streams and predicts at every position, so its logits (with their softmax and
  gradient) are ``batch_size * bptt * V`` numbers three times over: usually the largest term.

It is an estimate of the peak, not a measurement: libraries add their own workspace, so a run that
would use most of the available memory is announced, and one that cannot fit is refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.optimizers import get_optimizer
from wordrnn.core.params import param_shapes

FLOAT_BYTES = 4
WEIGHT_COPIES = 2  # the canonical weights and the framework's
GRADIENT_COPIES = 3  # the gradients, and two temporaries of their size in the update (NumPy makes them)
LOGIT_COPIES = 3  # logits, their softmax, their gradient
# A run whose estimate exceeds this share of the available memory is announced before it starts.
MOST = 0.5


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int  # how many numbers the model has
    weights: int  # bytes, for each term
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def describe(self) -> str:
        return (f"about {human_bytes(self.total)} ({self.parameters:,} parameters: "
                f"{human_bytes(self.weights)} of weights, "
                f"{human_bytes(self.gradients)} of gradients, {human_bytes(self.optimizer)} of optimizer state; "
                f"{human_bytes(self.activations)} of activations for one batch)")


def human_bytes(n: int) -> str:
    """``512 bytes``, ``1.5 GiB``; past the exbibyte a whole number with separators (``24,286,083 EiB``)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}" if n < 1024 else f"{n:,.0f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def count_parameters(config: Config) -> int:
    """The parameter count the canonical shapes imply (``config.vocab_size`` set)."""
    return sum(math.prod(shape) for shape in param_shapes(config).values())


def activation_floats(config: Config) -> int:
    """The numbers one training batch keeps for the backward pass (see the module docstring)."""
    G, H, V = get_cell(config.cell).num_gates, config.hidden_size, config.vocab_size
    # every layer: its input (layer 0: the embedding or one-hot row; above: the layer below's h), gate
    # pre-activations and values, state
    per_step = config.input_size + 2 * G * H + 2 * H + (config.layers - 1) * (H + 2 * G * H + 2 * H)
    steps, scored = config.layout.chunk_shape(config.seq_len, config.bptt)
    return config.batch_size * (steps * per_step + scored * LOGIT_COPIES * V)


def estimate_training_memory(config: Config) -> MemoryEstimate:
    """The estimate for ``config`` (its ``vocab_size`` set): nothing is allocated."""
    n = count_parameters(config)
    return MemoryEstimate(n, WEIGHT_COPIES * n * FLOAT_BYTES, GRADIENT_COPIES * n * FLOAT_BYTES,
                          len(get_optimizer(config.optimizer).slots) * n * FLOAT_BYTES,
                          activation_floats(config) * FLOAT_BYTES)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, capped by a cgroup limit; None if
    the machine does not say."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return max(0, min(found))


def check_memory(config: Config, available: int | None = None) -> str | None:
    """Refuse a run whose estimate exceeds the available memory (``UsageError``, before any allocation);
    return a note for one that would use most of it, else None."""
    estimate = estimate_training_memory(config)
    free = available_memory() if available is None else available
    if free is None:
        return None
    sizes = "--hidden-size" + (", --embed-dim" if config.model == "embedding" else "") + (
        f", fewer --layers (now {config.layers})" if config.layers > 1 else "")
    if estimate.total > free:
        raise UsageError(f"this model needs {estimate.describe()}, but {human_bytes(free)} of memory is available; "
                         f"use a smaller {sizes}, --batch-size or a larger --min-freq (a smaller vocabulary)")
    if estimate.total > MOST * free:
        return (f"note: this run will use most of the memory available: {estimate.describe()}, "
                f"of {human_bytes(free)} available")
    return None

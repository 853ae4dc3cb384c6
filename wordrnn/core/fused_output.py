"""When the training step runs the output layer and its cross-entropy a block of rows at a time, and how large a
block is: one rule for PyTorch (``torchmodels.output``) and JAX (``jaxmodels.output``).

The fused op never holds the logits [N, V] of a chunk's N = B*T positions: per block of rows it computes the
logits, their logsumexp, the loss and the gradient of the logits, then the block's dh and its share of dW and db.
It pays where [N, V] arrays are large and the block stays in the cache; below ``FUSED_MIN_LOGITS`` its few more
small operations cost more than the arrays they save (docs/PERFORMANCE.md, "The output layer without a [B·T, V]
array"). Measured in float32 on the CPU only: under bfloat16 and on a GPU the step keeps the logits.
"""

from __future__ import annotations

# Rows per block: the block buffer [rows, V] is at most this many bytes (at least one row). Measured at V 16,000,
# H 128, N 2,240, one thread: 4-8 MiB blocks were fastest in PyTorch, and 131-256 rows in JAX.
BLOCK_BYTES = 8 * 2**20

# The smallest chunk, in logits (rows x V), that runs fused: a batch of 64 windows' last positions at V 1,823
# (117,000 logits) is faster with the logits.
FUSED_MIN_LOGITS = 2**19


def block_rows(vocab_size: int, itemsize: int, block_bytes: int = BLOCK_BYTES) -> int:
    """The rows of a block whose [rows, V] buffer of ``itemsize``-byte entries fits in ``block_bytes``."""
    return max(1, block_bytes // (vocab_size * itemsize))


def runs_fused(precision: str, platform: str, logits: int) -> bool:
    """Whether a training step of ``logits`` logits (rows x V) in ``precision`` on ``platform`` ("cpu", "cuda",
    "gpu", "tpu") runs the output layer fused: float32 on the CPU, from ``FUSED_MIN_LOGITS`` up."""
    return precision == "float32" and platform == "cpu" and logits >= FUSED_MIN_LOGITS

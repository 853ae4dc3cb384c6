"""Every tolerance the checks hold, in one place (the table of docs/DESIGN.md), and the constants they share."""

from __future__ import annotations

import numpy as np

# scratch BPTT against central finite differences, float64: relative error per parameter
FINITE_DIFFERENCE = 1e-6
# logits of two implementations from the same weights: max abs diff, by dtype
LOGITS = {np.float32: 1e-5, np.float64: 1e-10}
# gradients of every parameter across implementations: max abs diff relative to the largest entry, by dtype
GRADIENTS = {np.float32: 1e-5, np.float64: 1e-10}
# loss of every step (and weights after the last) of 20 Adam steps from the same weights and batches, float32
TRAJECTORY = 1e-4
# onnxruntime against the source model's logits: max abs diff
ONNX = 1e-5

# keeps 0/0 at 0 in relative errors (a gradient that is exactly zero everywhere)
TINY = 1e-30
# torch.nn.utils.clip_grad_norm_ adds this to the global norm: g <- g * min(1, clip / (||g|| + CLIP_EPS))
CLIP_EPS = 1e-6

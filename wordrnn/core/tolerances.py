"""Every tolerance the checks hold, in one place (the table of docs/DESIGN.md), and the constants they share."""

from __future__ import annotations

import numpy as np

# scratch BPTT against central finite differences, float64: relative error per parameter
FINITE_DIFFERENCE = 1e-6
# logits of two implementations from the same weights: max abs diff, by dtype
LOGITS = {np.float32: 1e-5, np.float64: 1e-10}
# gradients of every parameter across implementations: max abs diff relative to the largest entry, by dtype
GRADIENTS = {np.float32: 1e-5, np.float64: 1e-10}
# loss of every step (and weights after the last) of 20 Adam steps from the same weights and batches, float32;
# weights over it are accepted only where the trajectories show Adam amplifying a gradient present on one side
# only (wordrnn.testing.parity.explain_weights)
TRAJECTORY = 1e-4
# before two trajectories part, their gradients (recovered from Adam's moments) agree within this, relative to
# each parameter's largest entry: float32's 1e-5 grows a little along a carried state (2e-5 after 16 chunks of 20
# seen), while a flipped sign or a state not passed back differs by the size of the gradient itself
GRADIENT_DRIFT = 1e-4
# a gradient entry counts as zero where Adam's first moment moved by no more than this fraction of itself: the
# rounding of one float32 update m <- beta1 m + (1 - beta1) g with g = 0 (a few units of 2^-24)
ADAM_ROUNDING = 4 * 2.0**-24
# onnxruntime against the source model's logits: max abs diff; for a poem model, the floor of the drift rule below
ONNX = 1e-5
# A carried state: two correct float32 computations drift apart with its length (a tanh or ReLU state amplifies
# rounding on some stretches of some streams), so a poem file is held to the float64 NumPy reference within
# max(ONNX, ONNX_DRIFT * spread), where spread is the farthest that correct float32 computations stray from that
# reference on the same tokens and start state: the float32 NumPy reference, and DRIFT_SAMPLES more with every
# weight and every entry of the start state moved one float32 step at random (export.onnx.poem_check)
ONNX_DRIFT = 4.0
DRIFT_SAMPLES = 4
# --precision bfloat16 (products and activations in bfloat16, 8 significant bits) against the float32 NumPy reference
# from the same weights: logits' max abs diff relative to the largest, the loss of each of 20 steps, and held-out
# perplexity as a fraction of float32's (docs/DESIGN.md)
BFLOAT16_LOGITS = 5e-2
BFLOAT16_LOSS = 2e-2
BFLOAT16_PERPLEXITY = 0.01

# keeps 0/0 at 0 in relative errors (a gradient that is exactly zero everywhere)
TINY = 1e-30
# torch.nn.utils.clip_grad_norm_ adds this to the global norm: g <- g * min(1, clip / (||g|| + CLIP_EPS))
CLIP_EPS = 1e-6

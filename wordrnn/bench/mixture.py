"""Linear interpolation of two language models' next-word probabilities (Mikolov's RNN+KN).

``P(w | h) = lam * P_a(w | h) + (1 - lam) * P_b(w | h)``. Where only the
targets' probabilities are needed (the loss), the mixture is computed in log
space, ``logaddexp(log lam + log P_a, log(1 - lam) + log P_b)``, so that tiny
probabilities do not underflow. The weight is chosen on held-aside data by a
grid search: the loss is convex in ``lam``, so a fine grid is as good as an optimizer.
"""

from __future__ import annotations

import numpy as np

from wordrnn.core.metrics import log_softmax

WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 41), 3)


def mix(p_a: np.ndarray, p_b: np.ndarray, weight: float) -> np.ndarray:
    """The interpolated distribution(s): ``weight`` on ``p_a``."""
    _check_weight(weight)
    return weight * np.asarray(p_a, np.float64) + (1.0 - weight) * np.asarray(p_b, np.float64)


def mix_log_prob(logp_a: np.ndarray, logp_b: np.ndarray, weight: float) -> np.ndarray:
    """log of the mixture's probability of each target, from each model's log-probabilities of it."""
    _check_weight(weight)
    logp_a, logp_b = np.asarray(logp_a, np.float64), np.asarray(logp_b, np.float64)
    if weight == 1.0:
        return logp_a
    if weight == 0.0:
        return logp_b
    return np.logaddexp(np.log(weight) + logp_a, np.log1p(-weight) + logp_b)


def choose_weight(logp_a: np.ndarray, logp_b: np.ndarray, grid: np.ndarray = WEIGHT_GRID) -> float:
    """The grid weight with the lowest mean negative log-likelihood on these targets."""
    losses = [-float(mix_log_prob(logp_a, logp_b, w).mean()) for w in grid]
    return float(grid[int(np.argmin(losses))])


def target_log_prob(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits)[target] per row, in float64."""
    return log_softmax(np.asarray(logits))[np.arange(len(targets)), np.asarray(targets)]


def _check_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"a mixture weight lies in [0, 1], got {weight}")

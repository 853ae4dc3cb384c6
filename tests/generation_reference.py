"""Reference computations of the generation contract (docs/GENERATION.md) that only the tests need.

``cache_log_probs`` mixes the neural cache into a whole poem at once ([T, T] matrices), the form the step-by-step
``wordrnn.core.cache.NeuralCache`` of every client must reproduce; ``draw_margin`` measures section 8's rule, how
close a draw lies to a cumulative boundary, where two runtimes may pick different tokens.
"""

from __future__ import annotations

import numpy as np

from wordrnn.core.cache import CacheSettings, cache_weights, mix_log_probs


def cache_log_probs(hidden: np.ndarray, tokens: np.ndarray, log_probs: np.ndarray, settings: CacheSettings
                    ) -> np.ndarray:
    """The mixed log-probabilities [T, V] of one poem: ``hidden`` [T, H] the state after reading each of
    ``tokens`` [T], ``log_probs`` [T, V] the model's for the token after each; rows without an earlier position
    are the model's own."""
    tokens = np.asarray(tokens)
    lp = np.asarray(log_probs, np.float64)
    T, V = lp.shape
    w, has = cache_weights(hidden, settings.size, settings.theta)
    follows = np.zeros((T, V))  # row i: one-hot of the token after position i (none after the last)
    follows[np.arange(T - 1), tokens[1:]] = 1.0
    with np.errstate(divide="ignore"):
        log_q = np.log(w @ follows)
    return np.where(has[:, None], mix_log_probs(lp, log_q, settings.lam), lp)


def draw_margin(p: np.ndarray, u: float) -> float:
    """How far the draw lies from the nearest cumulative boundary, as a fraction of the total.

    Two runtimes whose float32 logits differ in the last bits may pick different
    tokens only where this margin is tiny (the contract allows 1e-6).
    """
    cumulative = np.cumsum(p)
    return float(np.min(np.abs(cumulative / cumulative[-1] - u)))

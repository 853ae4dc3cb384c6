"""Gradient clipping, Adam and SGD by hand, with PyTorch's semantics.

    clip:          g <- g * min(1, max_norm / (||g||_2 + CLIP_EPS))  (all parameters together; 1e-6 as torch)
    weight decay:  g <- g + wd * p                                   (after clipping)
    SGD:           p <- p - lr * g
    Adam:          m <- m + (1 - b1) (g - m)                         (torch's lerp form)
                   v <- b2 v + (1 - b2) g^2
                   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Updates are in place, through one preallocated work array per parameter, and
in the parameters' dtype. The optimizer state is exposed under the canonical
names (``adam.step``, ``adam.m.<param>``, ``adam.v.<param>``) so that any
framework can resume any other's run.
"""

from __future__ import annotations

import numpy as np

from wordrnn.core.params import Params
from wordrnn.core.tolerances import CLIP_EPS


def clip_by_global_norm(grads: Params, max_norm: float) -> tuple[Params, float]:
    """Scale all ``grads`` in place so their joint L2 norm is at most ``max_norm``, as torch's
    ``clip_grad_norm_`` does (norm of the per-tensor norms, 1e-6 added, computed in the grads' dtype).

    Returns the grads and their norm before clipping.
    """
    norms = [np.linalg.norm(g.reshape(-1)) for g in grads.values()]
    dtype = norms[0].dtype
    total = np.linalg.norm(np.array(norms, dtype=dtype))
    coef = dtype.type(max_norm) / (total + dtype.type(CLIP_EPS))
    if coef < 1:  # torch multiplies by min(coef, 1); multiplying by 1 changes nothing, so skip it
        for g in grads.values():
            g *= coef
    return grads, float(total)


class SGD:
    """Plain stochastic gradient descent (no momentum), torch ``optim.SGD`` semantics."""

    def __init__(self, params: Params, lr: float, weight_decay: float = 0.0):
        self.lr, self.weight_decay = lr, weight_decay
        self._work = {k: np.empty_like(p) for k, p in params.items()}

    def update(self, params: Params, grads: Params) -> None:
        """One step; ``params`` change in place, ``grads`` are left as they are."""
        for name, p in params.items():
            d = self._work[name]
            np.multiply(p, self.weight_decay, out=d)  # d = wd * p + g
            d += grads[name]
            d *= self.lr
            p -= d

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Nothing to restore (the loop has checked that an SGD checkpoint holds no state)."""


class Adam:
    """Adam with torch's defaults and formula (eps added after the bias-corrected square root)."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.step = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self._work = {k: np.empty_like(p) for k, p in params.items()}

    def update(self, params: Params, grads: Params) -> None:
        """One step; ``params``, ``m`` and ``v`` change in place, ``grads`` are left as they are."""
        self.step += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.step)
        bc2_sqrt = (1 - b2**self.step) ** 0.5
        for name, p in params.items():
            m, v, w = self.m[name], self.v[name], self._work[name]
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            np.subtract(g, m, out=w)  # m += (1 - b1) (g - m)
            w *= 1 - b1
            m += w
            v *= b2  # v = b2 v + (1 - b2) g^2
            np.multiply(g, g, out=w)
            w *= 1 - b2
            v += w
            np.sqrt(v, out=w)  # w = sqrt(v) / sqrt(1 - b2^t) + eps
            w /= bc2_sqrt
            w += self.eps
            np.divide(m, w, out=w)  # p -= step_size * m / w
            w *= step_size
            p -= w

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The state under canonical names (copies)."""
        arrays = {"adam.step": np.array(self.step, dtype=np.int64)}
        arrays.update({f"adam.m.{k}": m.copy() for k, m in self.m.items()})
        arrays.update({f"adam.v.{k}": v.copy() for k, v in self.v.items()})
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what ``state_arrays`` (of this or any framework) returned, as checked by the loop
        (``wordrnn.run.folder.check_optimizer_arrays``: every moment present and shaped like its parameter)."""
        for slot, moments in (("m", self.m), ("v", self.v)):
            for k, target in moments.items():
                target[...] = arrays[f"adam.{slot}.{k}"]
        self.step = int(np.asarray(arrays["adam.step"]).item())  # shape () or (1,): both hold one count

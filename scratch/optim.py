"""Gradient clipping, Adam and SGD by hand, with PyTorch's semantics.

    clip:          g <- g * min(1, max_norm / (||g||_2 + CLIP_EPS))  (all parameters together; 1e-6 as torch)
    weight decay:  g <- g + wd * p                                   (after clipping)
    SGD:           p <- p - lr * g
    Adam:          m <- m + (1 - b1) (g - m)                         (torch's lerp form)
                   v <- b2 v + (1 - b2) g^2
                   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    AdamW:         p <- p (1 - lr wd), then Adam's step without the L2 term (decoupled decay)
    NT-ASGD:       SGD's step; once averaging has begun at step count t0: ax <- ax + (p - ax) / (t - t0)

Updates are in place, through one preallocated work array per parameter, and
in the parameters' dtype. The optimizer state is exposed under the names of
``wordrnn.core.optimizers`` (``adam.step``, ``adam.m.<param>``, ``adam.v.<param>``)
so that any framework can resume any other's run. ``OPTIMIZERS`` holds one class
per optimizer of that registry.
"""

from __future__ import annotations

import numpy as np

from wordrnn.core.optimizers import NOT_STARTED, get_optimizer
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

    spec = get_optimizer("sgd")

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

    spec = get_optimizer("adam")

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = spec.hyper["betas"],
                 eps: float = spec.hyper["eps"], weight_decay: float = 0.0):
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
        """The state under the registry's names (copies)."""
        arrays = {self.spec.step_name: np.array(self.step, dtype=np.int64)}
        for slot, moments in (("m", self.m), ("v", self.v)):
            arrays.update({self.spec.slot_name(slot, k): a.copy() for k, a in moments.items()})
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what ``state_arrays`` (of this or any framework) returned, as checked by the loop
        (``wordrnn.run.folder.check_optimizer_arrays``: every moment present and shaped like its parameter)."""
        for slot, moments in (("m", self.m), ("v", self.v)):
            for k, target in moments.items():
                target[...] = arrays[self.spec.slot_name(slot, k)]
        self.step = int(np.asarray(arrays[self.spec.step_name]).item())  # shape () or (1,): both hold one count


class AdamW(Adam):
    """torch ``optim.AdamW``: the weight decay shrinks the parameters, ``p <- p (1 - lr wd)``, before Adam's
    step, instead of entering the gradient."""

    spec = get_optimizer("adamw")

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = spec.hyper["betas"],
                 eps: float = spec.hyper["eps"], weight_decay: float = 0.0):
        super().__init__(params, lr, betas, eps, weight_decay=0.0)
        self.decoupled_decay = weight_decay

    def update(self, params: Params, grads: Params) -> None:
        if self.decoupled_decay:
            for p in params.values():
                p *= 1 - self.lr * self.decoupled_decay
        super().update(params, grads)


class NTASGD(SGD):
    """SGD whose iterates are averaged from the step the loop names (``ntasgd.t0``, set when the validation loss
    stops improving: ``wordrnn.core.optimizers.nonmonotone_trigger``). The mean ``ax`` of the weights after steps
    t0 + 1 .. t is kept in place, one step at a time, as torch's ASGD keeps it: ``ax <- ax + (p - ax) * (1 / n)``
    with ``n = t - t0`` (the first averaged step copies ``p``, since ``ax`` is zero until then)."""

    spec = get_optimizer("ntasgd")

    def __init__(self, params: Params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, weight_decay=weight_decay)
        self.step, self.t0 = 0, NOT_STARTED
        self.ax = {k: np.zeros_like(p) for k, p in params.items()}

    def update(self, params: Params, grads: Params) -> None:
        super().update(params, grads)
        self.step += 1
        if self.t0 == NOT_STARTED:
            return
        for name, p in params.items():
            ax, d = self.ax[name], self._work[name]
            np.subtract(p, ax, out=d)
            d *= 1 / (self.step - self.t0)
            ax += d

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The state under the registry's names (copies)."""
        return {self.spec.step_name: np.array(self.step, dtype=np.int64),
                self.spec.counter_name("t0"): np.array(self.t0, dtype=np.int64),
                **{self.spec.slot_name("ax", k): a.copy() for k, a in self.ax.items()}}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for k, target in self.ax.items():
            target[...] = arrays[self.spec.slot_name("ax", k)]
        self.step = int(np.asarray(arrays[self.spec.step_name]).item())
        self.t0 = int(np.asarray(arrays[self.spec.counter_name("t0")]).item())


# One class per optimizer of ``wordrnn.core.optimizers``, each built as ``cls(params, lr=, weight_decay=)``.
OPTIMIZERS: dict[str, type[SGD] | type[Adam]] = {"adam": Adam, "sgd": SGD, "adamw": AdamW, "ntasgd": NTASGD}


def make_optimizer(name: str, params: Params, lr: float, weight_decay: float) -> SGD | Adam:
    """The optimizer called ``name`` over ``params`` (an unknown name is a ``UsageError``)."""
    get_optimizer(name)  # an unknown name is a UsageError, never a KeyError or a fallback
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay)

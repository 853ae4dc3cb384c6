"""The optimizers, defined once by name: every implementation, the checkpoint check and the roofline ask here.

Each framework has one entry per optimizer of its own (``scratch.optim.OPTIMIZERS``,
``torchmodels.backend.TORCH_OPTIMIZERS``, ``jaxmodels.backend.JAX_OPTIMIZERS``); a
test checks that the four registries name the same optimizers.

An optimizer's state is saved under names of its own, prefixed with the optimizer's
name, so a checkpoint says which optimizer wrote it and any framework can read it:

    <name>.step           int64 scalar, steps taken (optimizers that count steps)
    <name>.<slot>.<param> float32, shaped like the parameter, one per slot

Adam: ``adam.step``, ``adam.m.<param>``, ``adam.v.<param>`` (first and second
moments). SGD keeps no state. AdamW's slots mean what Adam's do, but are saved
under ``adamw.``: a checkpoint of one is not silently resumed as the other.

Weight decay (``--weight-decay``) is one of two kinds: ``l2`` adds ``wd * p`` to
the clipped gradient before the optimizer (torch ``Adam(weight_decay=...)``,
optax ``add_decayed_weights`` before ``scale_by_adam``); ``decoupled`` shrinks
the parameter, ``p <- p - lr * wd * p``, apart from the gradient (torch ``AdamW``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wordrnn.core.errors import UsageError


@dataclass(frozen=True)
class Optimizer:
    name: str
    label: str  # in messages and reports
    slots: tuple[str, ...]  # per-parameter state arrays
    counts_steps: bool  # keeps ``<name>.step``
    decay: str  # how --weight-decay applies: "l2" or "decoupled"
    flops_per_param: int  # arithmetic of one update, per parameter (the roofline)
    # hyperparameters other than lr and weight decay, under torch's names (betas, eps)
    hyper: dict[str, Any] = field(default_factory=dict)

    @property
    def step_name(self) -> str | None:
        return f"{self.name}.step" if self.counts_steps else None

    def slot_name(self, slot: str, param: str) -> str:
        return f"{self.name}.{slot}.{param}"

    def state_names(self, params: list[str]) -> list[str]:
        """Every array a checkpoint of this optimizer holds for parameters ``params``, step first."""
        step = [self.step_name] if self.counts_steps else []
        return step + [self.slot_name(s, p) for s in self.slots for p in params]


# torch's Adam defaults: betas (0.9, 0.999), eps 1e-8 added after the bias-corrected square root
ADAM_HYPER = {"betas": (0.9, 0.999), "eps": 1e-8}

OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer("adam", "Adam", ("m", "v"), True, "l2", 10, ADAM_HYPER),
    "sgd": Optimizer("sgd", "SGD", (), False, "l2", 2),
    "adamw": Optimizer("adamw", "AdamW", ("m", "v"), True, "decoupled", 12, ADAM_HYPER),
}


def get_optimizer(name: str) -> Optimizer:
    """The optimizer called ``name``; an unknown name is a ``UsageError`` naming the known ones."""
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown --optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


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

NT-ASGD (``ntasgd``, Merity et al. 2018) is SGD until the validation loss stops improving, then SGD whose
iterates are averaged (Polyak): ``ntasgd.step`` counts steps, ``ntasgd.t0`` is the step count when averaging
began (-1: not yet; the loop sets it, ``nonmonotone_trigger``), and ``ntasgd.ax.<param>`` is the mean of the
weights after each step since then (zeros before). Evaluation and the best weights read that mean.

Weight decay (``--weight-decay``) is one of two kinds: ``l2`` adds ``wd * p`` to
the clipped gradient before the optimizer (torch ``Adam(weight_decay=...)``,
optax ``add_decayed_weights`` before ``scale_by_adam``); ``decoupled`` shrinks
the parameter, ``p <- p - lr * wd * p``, apart from the gradient (torch ``AdamW``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wordrnn.core.errors import UsageError

# The value of ``ntasgd.t0`` (and of any such counter) while averaging has not begun.
NOT_STARTED = -1


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
    # step counts the optimizer keeps besides ``step``, each -1 (not yet) up to ``step``: ``<name>.<counter>``
    counters: tuple[str, ...] = ()
    # the slot holding the averaged weights that evaluation reads once averaging has begun (NT-ASGD), or None
    average: str | None = None

    @property
    def step_name(self) -> str | None:
        return f"{self.name}.step" if self.counts_steps else None

    def slot_name(self, slot: str, param: str) -> str:
        return f"{self.name}.{slot}.{param}"

    def counter_name(self, counter: str) -> str:
        return f"{self.name}.{counter}"

    @property
    def scalar_names(self) -> list[str]:
        """The whole-number arrays of a checkpoint of this optimizer: the step, then the other counters."""
        step = [self.step_name] if self.counts_steps else []
        return step + [self.counter_name(c) for c in self.counters]

    def state_names(self, params: list[str]) -> list[str]:
        """Every array a checkpoint of this optimizer holds for parameters ``params``, the counts first."""
        return self.scalar_names + [self.slot_name(s, p) for s in self.slots for p in params]

    def averaging(self, arrays: dict[str, Any]) -> bool:
        """Whether the optimizer state ``arrays`` (its registry names) has begun averaging the weights."""
        return self.average is not None and int(arrays[self.counter_name("t0")]) != NOT_STARTED

    def averaged_weights(self, arrays: dict[str, Any]) -> dict[str, Any] | None:
        """The averaged weights the optimizer state ``arrays`` holds once a step has been averaged, else None."""
        if not self.averaging(arrays) or int(arrays[self.step_name]) <= int(arrays[self.counter_name("t0")]):
            return None
        prefix = self.slot_name(self.average, "")
        return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}

    def start_averaging(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """``arrays`` with averaging begun now: the mean is of the weights after the steps from the next one on."""
        return {**arrays, self.counter_name("t0"): arrays[self.step_name]}


# torch's Adam defaults: betas (0.9, 0.999), eps 1e-8 added after the bias-corrected square root
ADAM_HYPER = {"betas": (0.9, 0.999), "eps": 1e-8}

OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer("adam", "Adam", ("m", "v"), True, "l2", 10, ADAM_HYPER),
    "sgd": Optimizer("sgd", "SGD", (), False, "l2", 2),
    "adamw": Optimizer("adamw", "AdamW", ("m", "v"), True, "decoupled", 12, ADAM_HYPER),
    # SGD's two operations and the running mean's three: ax <- ax + (p - ax) / n
    "ntasgd": Optimizer("ntasgd", "NT-ASGD", ("ax",), True, "l2", 5, counters=("t0",), average="ax"),
}


def get_optimizer(name: str) -> Optimizer:
    """The optimizer called ``name``; an unknown name is a ``UsageError`` naming the known ones."""
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown --optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def nonmonotone_trigger(val_losses: list[float], nonmono: int) -> bool:
    """Whether NT-ASGD starts averaging after the evaluations ``val_losses`` (oldest first, the latest last).

    AWD-LSTM's rule (Merity et al. 2018, Algorithm 1): the latest loss is worse than the best of those evaluated
    more than ``nonmono`` evaluations before it. So it waits for ``nonmono + 1`` earlier evaluations, and a
    plateau or a rise of ``nonmono`` evaluations starts the average, a single bad one does not.
    """
    *earlier, latest = val_losses
    return len(earlier) > nonmono and latest > min(earlier[:len(earlier) - nonmono])

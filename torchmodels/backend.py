"""The PyTorch backend of the one training loop (``wordrnn.run.loop``).

It holds a model and a torch optimizer, takes a step, and converts to and
from canonical arrays. Semantics follow docs/DESIGN.md, which are torch's own:
``clip_grad_norm_`` (clip 0 = off), then ``Adam``/``SGD`` with ``weight_decay``
(the L2 term is added to the clipped gradient inside the optimizer).

Dropout masks are the ones ``wordrnn.core.dropout.step_masks`` specifies for
``(config.seed, step)``, drawn by NumPy and moved to the device, so a resumed
run draws exactly the masks an uninterrupted one would, in any framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchmodels.model import Masks, build_module, canonical_parameters, to_canonical
from wordrnn.core.config import Config
from wordrnn.core.dropout import step_masks
from wordrnn.core.errors import UsageError
from wordrnn.core.params import Params

DEVICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if there is one, else mps, else cpu; an absent device is a ``UsageError``."""
    available = available_devices()
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if d in available))
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device {name!r}; choose one of {', '.join(DEVICES)}") from None
    if device.type not in available:
        why = "built without CUDA" if device.type == "cuda" and torch.version.cuda is None else "no such device"
        raise UsageError(
            f"--device {name} is not available on this machine (torch {torch.__version__}: {why}); "
            f"available: {', '.join(available)}"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


@dataclass
class TorchState:
    config: Config
    model: nn.Module  # holds the weights
    forward: Callable[..., torch.Tensor]  # the model, or its torch.compile'd form
    optimizer: torch.optim.Optimizer


class TorchBackend:
    """``wordrnn.core.backend.Backend`` for PyTorch."""

    framework = "torch"
    process_index = 0

    def __init__(self, device: str = "cpu", compile: bool = False, onehot_gather: bool = False):
        self.device = resolve_device(device)
        self.compile = compile
        self.onehot_gather = onehot_gather

    def init(self, params: Params, config: Config) -> TorchState:
        torch.manual_seed(config.seed)
        model = build_module(config, params, device=self.device, onehot_gather=self.onehot_gather)
        weights = [p for _, p in canonical_parameters(model)]
        # The fused kernels make one pass over each tensor: more steps/s (docs/PERFORMANCE.md); same formula.
        fused = self.device.type in ("cpu", "cuda")
        optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
        optimizer = optimizer_class(weights, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
        forward = torch.compile(model) if self.compile else model
        return TorchState(config, model, forward, optimizer)

    def train_step(
        self, state: TorchState, x: np.ndarray, y: np.ndarray, step: int
    ) -> tuple[TorchState, torch.Tensor]:
        config = state.config
        xb, yb = self._tensor(x), self._tensor(y)
        masks = self.dropout_masks(state, step, xb.shape[0], xb.shape[1])
        loss = F.cross_entropy(state.forward(xb, masks), yb)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip > 0:
            nn.utils.clip_grad_norm_(state.model.parameters(), config.clip)
        state.optimizer.step()
        return state, loss.detach()

    def train_chunk(self, state: TorchState, x: np.ndarray, y: np.ndarray, weights: np.ndarray,
                    reset: np.ndarray, carry: tuple | None, step: int) -> tuple[TorchState, torch.Tensor, tuple]:
        config = state.config
        xb, yb = self._tensor(x), self._tensor(y)
        wb = torch.as_tensor(weights).to(self.device, state.model.out.weight.dtype, non_blocking=True)
        masks = self.dropout_masks(state, step, xb.shape[0], xb.shape[1])
        logits, carry = state.model.sequence(xb, carry, torch.as_tensor(reset).to(self.device), masks)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none")
        loss = (losses * wb.reshape(-1)).sum() / wb.sum()
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip > 0:
            nn.utils.clip_grad_norm_(state.model.parameters(), config.clip)
        state.optimizer.step()
        return state, loss.detach(), tuple(s.detach() for s in carry)  # truncated BPTT: no gradient across chunks

    def sequence_logits(self, state: TorchState, x: np.ndarray, reset: np.ndarray | None, carry: tuple | None
                        ) -> tuple[np.ndarray, tuple]:
        with torch.inference_mode():
            reset_b = None if reset is None else torch.as_tensor(reset).to(self.device)
            logits, carry = state.model.sequence(self._tensor(x), carry, reset_b)
        return logits.to("cpu", torch.float32).numpy(), carry

    def dropout_masks(self, state: TorchState, step: int, batch: int, seq_len: int) -> Masks | None:
        """The masks of ``wordrnn.core.dropout.step_masks`` for this step, as tensors on the model's device."""
        masks = step_masks(state.config, step, batch, seq_len)
        if masks is None:
            return None
        dtype = state.model.out.weight.dtype
        return {k: None if m is None else torch.from_numpy(m).to(self.device, dtype, non_blocking=True)
                for k, m in masks.items()}

    def logits(self, state: TorchState, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = state.forward(self._tensor(x))
        return out.to("cpu", torch.float32).numpy()

    def canonical(self, state: TorchState) -> Params:
        return to_canonical(state.model)

    def optimizer_arrays(self, state: TorchState) -> dict[str, np.ndarray]:
        """Adam's ``step``, ``exp_avg`` and ``exp_avg_sq`` under canonical names; SGD has none."""
        if state.config.optimizer != "adam":
            return {}
        arrays: dict[str, np.ndarray] = {}
        step = 0
        for name, param in canonical_parameters(state.model):
            slot = state.optimizer.state.get(param)
            if slot:
                step = int(slot["step"])
                m, v = (slot[k].detach().to("cpu", torch.float32).numpy().copy()
                        for k in ("exp_avg", "exp_avg_sq"))
            else:
                m = v = np.zeros(tuple(param.shape), dtype=np.float32)
            arrays[f"adam.m.{name}"], arrays[f"adam.v.{name}"] = m, v
        arrays["adam.step"] = np.array(step, dtype=np.int64)
        return arrays

    def load_optimizer_arrays(self, state: TorchState, arrays: dict[str, np.ndarray]) -> TorchState:
        """Restore Adam's moments (checked by the loop); ``adam.step`` 0 means a fresh optimizer."""
        if state.config.optimizer != "adam":
            return state
        step = int(np.asarray(arrays["adam.step"]).item())
        saved = state.optimizer.state_dict()
        saved["state"] = {}
        if step > 0:
            for index, (name, _) in enumerate(canonical_parameters(state.model)):
                slot = {"step": torch.tensor(float(step))}
                for key, prefix in (("exp_avg", "adam.m."), ("exp_avg_sq", "adam.v.")):
                    slot[key] = torch.from_numpy(np.array(arrays[prefix + name], dtype=np.float32))
                saved["state"][index] = slot
        state.optimizer.load_state_dict(saved)  # casts the moments to each parameter's dtype and device
        return state

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.int64)).to(self.device, non_blocking=True)

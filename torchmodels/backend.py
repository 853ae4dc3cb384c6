"""The PyTorch backend of the one training loop (``wordrnn.run.loop``).

It holds a model and a torch optimizer, takes a step, and converts to and
from canonical arrays. Semantics follow docs/DESIGN.md, which are torch's own:
``clip_grad_norm_`` (clip 0 = off), then the torch optimizer of
``TORCH_OPTIMIZERS`` with ``weight_decay`` (Adam and SGD add the L2 term to the
clipped gradient inside the optimizer), at the step's learning rate
(``Config.step_lr``).

``--precision bfloat16`` is torch's mixed precision: the forward runs under ``torch.autocast`` (products in
bfloat16: ``nn.Linear``, the input projections and, where the device has the kernel, the recurrent layer), while
the weights, the optimizer and its state stay float32, and the logits are cast to float32 before the
cross-entropy; the carried state passes between chunks as float32 (``compute``). In float32 on the CPU the
training step's output layer and cross-entropy run together a block of rows at a time (``torchmodels.output``,
``fused_output``); under bfloat16 they stay the logits and ``F.cross_entropy``.

Dropout masks are the ones ``wordrnn.core.dropout.step_masks`` specifies for
``(config.seed, step)``, drawn by NumPy and moved to the device, so a resumed
run draws exactly the masks an uninterrupted one would, in any framework.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from data.streams import Chunk
from torchmodels.devices import check_bfloat16, resolve_device
from torchmodels.model import Masks, build_module, canonical_parameters, chunk_loss, fused_chunk_loss, to_canonical
from wordrnn.core.config import Config
from wordrnn.core.dropout import step_masks
from wordrnn.core.fused_output import runs_fused
from wordrnn.core.optimizers import NOT_STARTED, Optimizer, get_optimizer
from wordrnn.core.params import Params


class AveragedSGD(torch.optim.SGD):
    """NT-ASGD: torch's SGD, then, once averaging has begun at step count ``t0`` (a parameter group's ``"t0"``,
    set by the loop when the validation loss stops improving), the running mean of the weights after each step:
    ``ax <- ax + (p - ax) * (1 / (t - t0))``, in ``state[p]["ax"]`` beside the step count ``state[p]["step"]``.

    Not ``torch.optim.ASGD``: its ``t0`` is fixed when it is built, so the trigger would mean a new optimizer;
    its mean skips the first iterate after ``t0`` (the ``mu`` of step t is computed at step t - 1, so the steps t0 + 1
    and t0 + 2 both copy the weights); and its step size ``eta`` is the learning rate of the step before, so a
    learning rate scaled per step (variable-length BPTT) would reach it a step late.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, fused: bool | None = None):
        super().__init__(params, lr=lr, weight_decay=weight_decay, fused=fused)
        for group in self.param_groups:
            group.setdefault("t0", NOT_STARTED)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                state = self.state[p]
                if "step" not in state:
                    state["step"] = torch.tensor(0.0)
                    state["ax"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1  # a CPU tensor as torch keeps step counts (a fused one resumed on a GPU: there)
            if group["t0"] == NOT_STARTED or not params:
                continue
            averages = [self.state[p]["ax"] for p in params]
            seen = int(self.state[params[0]]["step"]) - group["t0"]
            change = torch._foreach_sub(params, averages)
            torch._foreach_mul_(change, 1 / seen)
            torch._foreach_add_(averages, change)
        return loss


@dataclass(frozen=True)
class TorchOptimizer:
    """A registry optimizer in torch: its class, the torch state key of each of its slots, and the parameter
    group key of each of its other counters."""

    cls: type[torch.optim.Optimizer]
    slots: dict[str, str]  # registry slot -> torch's key in ``optimizer.state[param]``
    counters: dict[str, str] = field(default_factory=dict)  # registry counter -> key in ``param_groups[i]``


ADAM_SLOTS = {"m": "exp_avg", "v": "exp_avg_sq"}
# One entry per optimizer of ``wordrnn.core.optimizers``.
TORCH_OPTIMIZERS = {
    "adam": TorchOptimizer(torch.optim.Adam, ADAM_SLOTS),
    "sgd": TorchOptimizer(torch.optim.SGD, {}),
    "adamw": TorchOptimizer(torch.optim.AdamW, ADAM_SLOTS),
    "ntasgd": TorchOptimizer(AveragedSGD, {"ax": "ax"}, {"t0": "t0"}),
}


def make_optimizer(config: Config, weights: list[torch.Tensor], fused: bool) -> torch.optim.Optimizer:
    """The torch optimizer ``config.optimizer`` names, with the registry's hyperparameters."""
    spec = get_optimizer(config.optimizer)
    return TORCH_OPTIMIZERS[spec.name].cls(weights, lr=config.lr, weight_decay=config.weight_decay,
                                           fused=fused or None, **spec.hyper)


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
        if config.precision == "bfloat16":
            check_bfloat16(self.device)
        torch.manual_seed(config.seed)
        model = build_module(config, params, device=self.device, onehot_gather=self.onehot_gather)
        weights = [p for _, p in canonical_parameters(model)]
        # The fused kernels make one pass over each tensor: more steps/s (docs/PERFORMANCE.md); same formula.
        fused = self.device.type in ("cpu", "cuda")
        optimizer = make_optimizer(config, weights, fused)
        forward = torch.compile(model) if self.compile else model
        return TorchState(config, model, forward, optimizer)

    def train_step(self, state: TorchState, chunk: Chunk, carry: tuple | None, step: int
                   ) -> tuple[TorchState, torch.Tensor, tuple]:
        config = state.config
        yb = self._tensor(chunk.y)
        wb = torch.as_tensor(chunk.weights).to(self.device, state.model.out.bias.dtype, non_blocking=True)
        masks = self.dropout_masks(state, step, chunk.x)
        reset = self._reset(chunk.reset)
        penalized = bool(config.ar or config.tar)
        fused = self.fused_output(config, chunk.y.size)
        with self.compute(config):
            logits, carry, *hidden = state.forward(self._tensor(chunk.x), carry, reset, masks, chunk.last_only,
                                                   penalized or fused, readout=not fused)
        if fused:
            loss = fused_chunk_loss(state.model, hidden[0], yb, wb, reset, masks, chunk.last_only, config.ar,
                                    config.tar)
        else:  # the softmax, the loss and the penalties in float32, whatever the products were
            loss = chunk_loss(logits.float(), hidden[0].float() if penalized else None, yb, wb, reset, masks,
                              chunk.last_only, config.ar, config.tar)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip > 0:
            nn.utils.clip_grad_norm_(state.model.parameters(), config.clip)
        for group in state.optimizer.param_groups:
            group["lr"] = config.step_lr(chunk.x.shape[1])
        state.optimizer.step()
        # truncated BPTT: no gradient across chunks; the state passed on in float32, as it came in
        return state, loss.detach(), tuple(s.detach().float() for s in carry)

    def fused_output(self, config: Config, positions: int) -> bool:
        """Whether the training step runs the output layer and its cross-entropy of ``positions`` positions a block
        of rows at a time (``torchmodels.output``), by ``wordrnn.core.fused_output.runs_fused``; otherwise the
        logits and ``F.cross_entropy``."""
        return runs_fused(config.precision, self.device.type, positions * config.vocab_size)

    def logits(self, state: TorchState, x: np.ndarray, carry: tuple | None = None, last_only: bool = False
               ) -> tuple[np.ndarray, tuple]:
        with torch.inference_mode(), self.compute(state.config):
            logits, carry = state.forward(self._tensor(x), carry, None, None, last_only)
        return logits.to("cpu", torch.float32).numpy(), tuple(s.float() for s in carry)

    def compute(self, config: Config) -> contextlib.AbstractContextManager:
        """The forward's precision: nothing for float32; ``torch.autocast`` in bfloat16 for ``--precision
        bfloat16``."""
        if config.precision == "float32":
            return contextlib.nullcontext()
        return _autocast_bfloat16(self.device)

    def dropout_masks(self, state: TorchState, step: int, x: np.ndarray) -> Masks | None:
        """The masks of ``wordrnn.core.dropout.step_masks`` for this step, as tensors on the model's device."""
        masks = step_masks(state.config, step, x)
        if masks is None:
            return None
        dtype = state.model.out.bias.dtype
        return {k: None if m is None else torch.from_numpy(m).to(self.device, dtype, non_blocking=True)
                for k, m in masks.items()}

    def canonical(self, state: TorchState) -> Params:
        return to_canonical(state.model)

    def optimizer_arrays(self, state: TorchState) -> dict[str, np.ndarray]:
        """The optimizer's step count and slots under the registry's names (zeros before the first step)."""
        spec = get_optimizer(state.config.optimizer)
        slots = TORCH_OPTIMIZERS[spec.name].slots
        arrays: dict[str, np.ndarray] = {}
        step = 0
        for name, param in canonical_parameters(state.model):
            saved = state.optimizer.state.get(param)
            if saved and "step" in saved:
                step = int(saved["step"])
            for slot, key in slots.items():
                arrays[spec.slot_name(slot, name)] = (
                    saved[key].detach().to("cpu", torch.float32).numpy().copy() if saved
                    else np.zeros(tuple(param.shape), dtype=np.float32))
        if spec.counts_steps:
            arrays[spec.step_name] = np.array(step, dtype=np.int64)
        for counter, key in TORCH_OPTIMIZERS[spec.name].counters.items():
            arrays[spec.counter_name(counter)] = np.array(state.optimizer.param_groups[0][key], dtype=np.int64)
        return arrays

    def load_optimizer_arrays(self, state: TorchState, arrays: dict[str, np.ndarray]) -> TorchState:
        """Restore the optimizer's slots (checked by the loop); a step count of 0 means a fresh optimizer."""
        spec = get_optimizer(state.config.optimizer)
        if not spec.counts_steps:
            return state
        step = int(np.asarray(arrays[spec.step_name]).item())
        saved = state.optimizer.state_dict()
        saved["state"] = {}
        if step > 0:
            for index, (name, _) in enumerate(canonical_parameters(state.model)):
                saved["state"][index] = _torch_slots(spec, name, step, arrays)
        for counter, key in TORCH_OPTIMIZERS[spec.name].counters.items():
            for group in saved["param_groups"]:
                group[key] = int(np.asarray(arrays[spec.counter_name(counter)]).item())
        state.optimizer.load_state_dict(saved)  # casts the slots to each parameter's dtype and device
        return state

    def _reset(self, reset: np.ndarray | None) -> torch.Tensor | None:
        return None if reset is None else torch.as_tensor(reset).to(self.device, non_blocking=True)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.int64)).to(self.device, non_blocking=True)


@contextlib.contextmanager
def _autocast_bfloat16(device: torch.device) -> Iterator[None]:
    """``torch.autocast`` in bfloat16 on ``device``. On a CPU without oneDNN's bfloat16 kernels (no AVX-512),
    autocast hands ``nn.LSTM`` to oneDNN's bfloat16 LSTM, which cannot build its primitive there: with oneDNN off
    for the forward, the LSTM runs torch's own kernel in float32 and the other products still in bfloat16."""
    with torch.autocast(device.type, dtype=torch.bfloat16):
        if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            with _onednn_off():
                yield
        else:
            yield


@contextlib.contextmanager
def _onednn_off() -> Iterator[None]:
    """oneDNN off inside; its flags' context also re-sets oneDNN's TF32 switch, which warns on a build without
    Intel GPU support: that warning is about a switch nobody asked for, so it is silenced."""
    switch = torch.backends.mkldnn.flags(enabled=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        switch.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            switch.__exit__(None, None, None)


def _torch_slots(spec: Optimizer, name: str, step: int, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """One parameter's entry of a torch optimizer's ``state``, from the registry-named ``arrays``."""
    slot = {"step": torch.tensor(float(step))}
    for registry_slot, key in TORCH_OPTIMIZERS[spec.name].slots.items():
        slot[key] = torch.from_numpy(np.array(arrays[spec.slot_name(registry_slot, name)], dtype=np.float32))
    return slot

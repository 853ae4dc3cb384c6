"""Where PyTorch computes: the device names, ``--device`` resolved, float32 kept float32 on a GPU, and whether
the device computes bfloat16 (``check_bfloat16``).

The one home of torch's device choice, of its TF32 switch and of its bfloat16 check: the trainer, ``bench.speed``, the
parity checks and ``wordrnn.frameworks`` all pick a torch device here.
"""

from __future__ import annotations

import torch

from wordrnn.core.errors import UsageError
from wordrnn.core.precision import announce_emulated_cpu

DEVICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def no_tf32() -> None:
    """Float32 products and cuDNN kernels in float32, not TF32: the cross-framework tolerances of
    docs/DESIGN.md hold on a GPU as on the CPU (JAX's counterpart: ``jaxmodels.devices.no_tf32``)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if there is one, else mps, else cpu; an absent device is a ``UsageError``.

    A CUDA device computes float32 in float32 (``no_tf32``)."""
    available = available_devices()
    if name == "auto":
        device = torch.device(next(d for d in ("cuda", "mps", "cpu") if d in available))
    else:
        device = _named_device(name, available)
    if device.type == "cuda":
        no_tf32()
    return device


def _named_device(name: str, available: list[str]) -> torch.device:
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


def check_bfloat16(device: torch.device) -> None:
    """``--precision bfloat16`` on ``device``: a GPU without bfloat16 products is a ``UsageError`` naming it; a CPU
    always computes it, announced once where it only emulates it (``wordrnn.core.precision``)."""
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported(including_emulation=False):
            major, minor = torch.cuda.get_device_capability(device)
            raise UsageError(f"--precision bfloat16: {torch.cuda.get_device_name(device)} (compute capability "
                             f"{major}.{minor}) has no bfloat16 products (CUDA's start at 8.0, Ampere); use "
                             "--precision float32")
    elif device.type == "mps":
        try:
            torch.ones(1, dtype=torch.bfloat16, device=device) @ torch.ones(1, dtype=torch.bfloat16, device=device)
        except (RuntimeError, TypeError):
            raise UsageError("--precision bfloat16: this Mac's MPS backend has no bfloat16 (macOS 14 or newer "
                             "has it); use --precision float32 or --device cpu") from None
    else:
        announce_emulated_cpu("PyTorch")

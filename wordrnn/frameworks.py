"""The three implementations, by name, each built as its trainer builds it by default.

Imports are lazy: importing this module loads no numerical library (see
``wordrnn.bench.machine.limit_threads``), and asking for NumPy alone never loads torch or jax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wordrnn.core.errors import UsageError

if TYPE_CHECKING:
    from wordrnn.core.backend import Backend

IMPLS = ("numpy", "torch", "jax")
LABELS = {"numpy": "NumPy", "torch": "PyTorch", "jax": "JAX/Flax", "kneser-ney": "Kneser-Ney"}


DEVICES = ("auto", "cpu", "cuda")  # where torch and JAX compute; NumPy always runs on the CPU


def make_backend(impl: str, device: str = "auto", onehot_gather: bool = False) -> Backend:
    """The one backend factory: ``numpy``, the from-scratch reference; ``torch``, eager PyTorch;
    ``jax``, Flax NNX, jitted, on one device.

    ``device`` (``DEVICES``): ``auto`` is torch's best device (cuda, mps, else cpu) and the first device
    JAX finds; ``cpu`` or ``cuda`` pins both to that kind of device, float32 kept float32 there (the
    parity checks and ``bench.speed`` compare on the CPU or on a GPU). ``onehot_gather`` is torch's
    gather form of the one-hot model.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if impl == "numpy":
        from scratch.backend import NumpyBackend

        return NumpyBackend()
    if impl == "torch":
        from torchmodels.backend import TorchBackend

        return TorchBackend(device=device, onehot_gather=onehot_gather)
    if impl == "jax":
        from jaxmodels.backend import JaxBackend
        from jaxmodels.devices import platform_of, select_devices

        return JaxBackend(None if device == "auto" else select_devices(platform_of(device), 1))
    raise ValueError(f"unknown implementation {impl!r}; choose one of {', '.join(IMPLS)}")


def resolve_device(name: str) -> str:
    """``cpu`` or ``cuda`` for a ``DEVICES`` name (``auto``: cuda if PyTorch sees a GPU); an absent GPU is a
    ``UsageError``."""
    import torch

    from torchmodels.devices import resolve_device as torch_device

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch_device(name).type


def parse_names(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    """A comma-separated flag value such as ``numpy,jax``, checked against ``allowed``, duplicates dropped."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in allowed for n in names):
        raise UsageError(f"{flag} takes a comma-separated list from {', '.join(allowed)}; got {text!r}")
    return list(dict.fromkeys(names))

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


def make_backend(impl: str, device: str = "auto", onehot_gather: bool = False) -> Backend:
    """``numpy``: the from-scratch reference; ``torch``: eager PyTorch on the best device
    (cuda, mps, else cpu); ``jax``: Flax NNX, jitted, on the first device JAX finds.

    ``device`` (``auto``, ``cpu`` or ``cuda``) pins torch and JAX to one kind of device (the parity
    checks compare on the CPU or on a GPU); ``onehot_gather`` is torch's gather form of the one-hot model.
    """
    if impl == "numpy":
        from scratch.backend import NumpyBackend

        return NumpyBackend()
    if impl == "torch":
        from torchmodels.backend import TorchBackend

        return TorchBackend(device=device, onehot_gather=onehot_gather)
    if impl == "jax":
        from jaxmodels.backend import JaxBackend

        if device == "auto":
            return JaxBackend()
        import jax

        return JaxBackend(jax.devices({"cuda": "gpu"}.get(device, device))[:1])
    raise ValueError(f"unknown implementation {impl!r}; choose one of {', '.join(IMPLS)}")


def parse_names(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    """A comma-separated flag value such as ``numpy,jax``, checked against ``allowed``, duplicates dropped."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in allowed for n in names):
        raise UsageError(f"{flag} takes a comma-separated list from {', '.join(allowed)}; got {text!r}")
    return list(dict.fromkeys(names))

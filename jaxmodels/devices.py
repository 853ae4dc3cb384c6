"""Which accelerator and how many of its devices to train on, the data mesh, and multi-host start.

The one home of JAX's device choice, of its float32 precision on a GPU (``no_tf32``) and of its bfloat16 check
(``check_bfloat16``). Nothing
here falls back silently: asking for a platform that is not present,
or for more devices than there are, is a ``UsageError`` that names what is
there.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from wordrnn.core.errors import UsageError
from wordrnn.core.precision import announce_emulated_cpu

ACCELERATORS = ("auto", "cpu", "gpu", "tpu")
PREFERENCE = ("tpu", "gpu", "cpu")  # what "auto" picks, best first
DATA_AXIS = "data"
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"  # XLA's count of CPU devices


def init_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run; must come before anything asks JAX for its devices.

    On the CPU backend the processes need a collectives implementation to
    exchange gradients; gloo is the one that ships with jaxlib.
    """
    if num_processes is None or process_id is None:
        raise UsageError("--coordinator-address needs --num-processes and --process-id too")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UsageError(f"--process-id must lie in [0, {num_processes}) for --num-processes {num_processes}, "
                         f"got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def request_cpu_devices(accelerator: str, count: int | None) -> None:
    """``--devices N`` on the CPU: JAX makes one CPU device unless told before its backend starts, so ask it for N
    (``jax_num_cpu_devices``, as ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` would). Only where the CPU
    may be chosen, and not where ``XLA_FLAGS`` already sets the count (the user's own choice wins); once JAX has
    started (a second command in one process), the devices stay as they are and ``select_devices`` says so."""
    if count is None or count < 2 or accelerator not in ("auto", "cpu") or HOST_DEVICES_FLAG in os.environ.get(
            "XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend has started already
        pass


def no_tf32() -> None:
    """Float32 products at full precision, not TF32, on a GPU (the model's own products already ask for
    ``Precision.HIGHEST``; this covers every other one). torch's counterpart: ``torchmodels.devices.no_tf32``."""
    jax.config.update("jax_default_matmul_precision", "highest")


def platform_of(device: str) -> str:
    """The JAX platform of a device kind as the other frameworks name it (``cuda`` -> ``gpu``)."""
    return {"cuda": "gpu"}.get(device, device)


def platforms_present() -> list[str]:
    """The platforms among cpu/gpu/tpu that have at least one device here, best first."""
    present = []
    for platform in PREFERENCE:
        try:
            if jax.local_devices(backend=platform):
                present.append(platform)
        except RuntimeError:  # JAX raises RuntimeError for a backend it cannot start
            pass
    return present


def select_devices(accelerator: str = "auto", count: int | None = None) -> list[jax.Device]:
    """The devices to train on: ``count`` local devices (default all) of the chosen platform.

    In a multi-process run every process takes the same number of its own
    devices and the list spans all processes (the mesh is global).
    """
    if accelerator not in ACCELERATORS:
        raise UsageError(f"unknown --accelerator {accelerator!r}; choose one of {', '.join(ACCELERATORS)}")
    present = platforms_present()
    if accelerator == "auto":
        platform = present[0]
    elif accelerator in present:
        platform = accelerator
    else:
        raise UsageError(f"--accelerator {accelerator}: no {accelerator.upper()} device is visible to JAX "
                         f"here; platforms present: {', '.join(present)}")
    if platform == "gpu":
        no_tf32()
    local = jax.local_devices(backend=platform)
    if count is None:
        count = len(local)
    if count < 1:
        raise UsageError(f"--devices must be a positive whole number, got {count}")
    if count > len(local):
        hint = (f"; JAX fixes its CPU devices when it starts: run the command afresh, or set "
                f"XLA_FLAGS={HOST_DEVICES_FLAG}={count} before it starts" if platform == "cpu" else "")
        raise UsageError(f"--devices {count}: only {len(local)} {platform} device(s) present "
                         f"({', '.join(str(d) for d in local)}){hint}")
    if jax.process_count() == 1:
        return local[:count]
    chosen = []
    for process in range(jax.process_count()):
        mine = [d for d in jax.devices(platform) if d.process_index == process]
        chosen.extend(mine[:count])
    return chosen


def data_mesh(devices: list[jax.Device]) -> Mesh:
    """A one-axis mesh, ``data``: batches are split along it, everything else is replicated.

    Auto axes (GSPMD decides the collectives): the step function stays
    ordinary single-device code.
    """
    return Mesh(np.array(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split across the mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def describe(devices: list[jax.Device]) -> str:
    """One line naming the devices, e.g. ``2 x cpu (TFRT_CPU_0, TFRT_CPU_1), 1 process``."""
    kinds = sorted({d.platform for d in devices})
    names = ", ".join(str(d) for d in devices)
    processes = jax.process_count()
    return f"{len(devices)} x {'/'.join(kinds)} ({names}), {processes} process{'es' if processes > 1 else ''}"


# CUDA's bfloat16 products (tensor cores) start at compute capability 8.0 (Ampere); XLA emulates them below it
BFLOAT16_CUDA_CAPABILITY = 8.0


def check_bfloat16(device: jax.Device) -> None:
    """``--precision bfloat16`` on ``device``: a GPU without bfloat16 products is a ``UsageError`` naming it; a TPU
    has them; a CPU always computes it, announced once where it only emulates it (``wordrnn.core.precision``)."""
    if device.platform == "gpu":
        capability = getattr(device, "compute_capability", None)
        if capability is not None and float(capability) < BFLOAT16_CUDA_CAPABILITY:
            raise UsageError(f"--precision bfloat16: {device.device_kind} (compute capability {capability}) has no "
                             "bfloat16 products (CUDA's start at 8.0, Ampere); use --precision float32")
    elif device.platform == "cpu":
        announce_emulated_cpu("XLA")

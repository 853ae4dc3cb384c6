"""The machine a benchmark runs on: thread budget in, description out.

Thread pools are sized when a library first starts them, so ``limit_threads``
must run before NumPy, PyTorch or JAX compute anything (the bench commands
call it before importing them). It matters: on a machine whose cores other
processes are also using, OpenMP and OpenBLAS pools that spin-wait for busy
cores made a PyTorch training step about 15 times slower with 2 threads than
with 1 (measured on the 2-core development box under load).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Give every library ``threads`` compute threads (0: leave each library's default)."""
    if threads <= 0:
        return
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if threads == 1:
        flag = "--xla_cpu_multi_thread_eigen=false"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    if "torch" in sys.modules:  # already loaded: its intra-op pool can still be resized
        sys.modules["torch"].set_num_threads(threads)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(threads: int) -> dict[str, Any]:
    """CPU, cores, load, accelerators and library versions, for the report."""
    from core.runs import library_versions

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads if threads > 0 else "library defaults",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    if "jax" in sys.modules:
        info["jax_devices"] = [str(d) for d in sys.modules["jax"].devices()]
    return info

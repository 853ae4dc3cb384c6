"""The machine a benchmark runs on: thread budget in, description out.

The thread budget itself is ``wordrnn.core.threads.limit_threads`` (re-exported here);
the bench commands call it before importing NumPy, PyTorch or JAX.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from wordrnn.core.threads import limit_threads

__all__ = ["cpu_name", "describe_machine", "limit_threads"]


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
    from wordrnn.core.hugepages import tunable_set
    from wordrnn.core.precision import reported_cpu_flags
    from wordrnn.run.folder import library_versions

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_flags": reported_cpu_flags(),  # the vector widths and bfloat16 products the speed figures hold on
        "cores": os.cpu_count(),
        "threads": threads if threads > 0 else "library defaults",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions(),
        "huge_pages": tunable_set(),  # glibc asked for transparent huge pages (wordrnn.core.hugepages)
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

"""Peak memory beside tokens/s: what a contender of ``bench.speed`` or ``bench.scaling`` held at most while it ran.

On a GPU the device says it exactly, per contender: PyTorch's ``max_memory_allocated`` (reset before each
contender's runs), JAX's ``peak_bytes_in_use`` (a high-water mark of the process that never falls: the largest
contender so far). On the CPU the figure is the process's resident set, sampled every 2 ms by a thread
while the contender runs: everything the process holds at that moment, the other contenders' weights and the
libraries' caches included, so the difference between two rows of one run is what the larger one adds (the
kernel's own high-water mark, ``ru_maxrss``, never falls, and would give every row after the largest its figure).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from collections.abc import Callable
from typing import Any

SAMPLE_SECONDS = 2e-3  # a read of a small file every 2 ms: well under 1% of a core
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """The process's resident set now (/proc/self/statm); where there is none, its high-water mark."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024  # macOS counts bytes, Linux KiB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class ResidentPeak:
    """The largest resident set seen while the ``with`` block ran, sampled by a thread (``peak`` in bytes)."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, resident_bytes())
            if self._done.wait(SAMPLE_SECONDS):
                return

    def __enter__(self) -> ResidentPeak:
        self.peak = resident_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def device_peak(impl: str, device: str, run: Callable[[], Any]) -> tuple[Any, int]:
    """``run()``'s result and the peak bytes it held: the device's figure on a GPU, the resident set on the CPU."""
    if device == "cuda" and impl == "torch":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result = run()
        torch.cuda.synchronize()
        return result, int(torch.cuda.max_memory_allocated())
    if device == "cuda" and impl == "jax":
        import jax

        result = run()
        stats = jax.devices("gpu")[0].memory_stats() or {}
        return result, int(stats.get("peak_bytes_in_use", 0))
    with ResidentPeak() as seen:
        result = run()
    return result, seen.peak


class PeakTracker:
    """The peak of each contender over all its timed runs (``peaks``, bytes by name)."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}

    def wrap(self, name: str, impl: str, device: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            result, peak = device_peak(impl, device, fn)
            self.peaks[name] = max(self.peaks.get(name, 0), peak)
            return result
        return run

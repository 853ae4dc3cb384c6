"""The compute precision of ``--precision``: what the CPU offers for bfloat16, and the note when it offers nothing.

Mixed precision (``--precision bfloat16``) keeps the weights, the optimizer state, the softmax and the loss in
float32 and computes the products and activations in bfloat16 (docs/PERFORMANCE.md, "bfloat16"). Every CPU the
libraries run on computes it; only one whose instruction set has bfloat16 products (``avx512_bf16``, Intel's
``amx_bf16``) computes it faster than float32. Elsewhere the libraries convert to float32 and back around each
product, which costs time: a run still trains, and the trainer says so once, never silently.
"""

from __future__ import annotations

import sys
from functools import cache

# /proc/cpuinfo flags of bfloat16 products (AVX-512 BF16: dot products of bfloat16 pairs; AMX: tile products)
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# the flags a speed report names beside them: the vector widths the float32 products run at
REPORTED_FLAGS = ("avx2", "avx512f", *BFLOAT16_FLAGS)


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's flags from /proc/cpuinfo (empty where there is no such file: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def reported_cpu_flags() -> list[str]:
    """Which of ``REPORTED_FLAGS`` this CPU has, for speed reports."""
    flags = cpu_flags()
    return [f for f in REPORTED_FLAGS if f in flags]


def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (as far as /proc/cpuinfo says)."""
    return any(f in cpu_flags() for f in BFLOAT16_FLAGS)


_ANNOUNCED: set[str] = set()


def announce_emulated_cpu(framework: str) -> None:
    """One stderr line, once per framework and process, where bfloat16 runs on a CPU without bfloat16 products."""
    if cpu_has_bfloat16() or framework in _ANNOUNCED:
        return
    _ANNOUNCED.add(framework)
    print(f"note: --precision bfloat16 on a CPU without bfloat16 products (no {' or '.join(BFLOAT16_FLAGS)} in "
          f"/proc/cpuinfo): {framework} emulates them, so it trains as mixed precision but slower than "
          "--precision float32 (PyTorch many times slower: docs/PERFORMANCE.md, \"bfloat16\")", file=sys.stderr)

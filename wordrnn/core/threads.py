"""One compute-thread budget for every library.

On a small machine whose cores are also busy with other work, thread pools
that spin-wait for a free core can make a training step many times slower
(docs/PERFORMANCE.md). ``--threads N`` gives NumPy's BLAS,
OpenMP, PyTorch and XLA the same budget, so timings compare like with like.
"""

from __future__ import annotations

import os
import sys

from wordrnn.core.errors import UsageError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
XLA_THREADS_VARIABLE = "NPROC"  # read once, when JAX starts its CPU backend
# What --threads means when it is not given, in every command: measured on the 2-core machine these
# run on (docs/PERFORMANCE.md, "--threads").
DEFAULT_THREADS = 1


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(threads: int) -> None:
    """``--threads`` from 0 (each library's default) to the cores this process may use: a compute thread
    beyond the cores only waits for one (a spin-waiting pool far slower), and each costs memory and a start,
    so 100,000 of them ran out of threads and crashed."""
    cores = usable_cores()
    if not 0 <= threads <= cores:
        raise UsageError(f"--threads must lie between 0 (each library's default) and {cores}, the cores this "
                         f"process may use (more threads than cores only wait for each other), got {threads}")


def limit_threads(threads: int) -> None:
    """Give every library ``threads`` compute threads (0: leave each library's default; ``check_threads``).

    Call it before the first computation: BLAS and OpenMP pools already loaded
    are resized through threadpoolctl, PyTorch's through ``set_num_threads``,
    and XLA reads ``NPROC`` and its flag when JAX first starts a backend.
    """
    check_threads(threads)
    if threads == 0:
        return
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    # XLA's CPU client sizes its thread pool from NPROC where set, else from the cores: the Eigen flag alone
    # left JAX 0.10 on two threads where the others had one (docs/PERFORMANCE.md, "--threads").
    os.environ[XLA_THREADS_VARIABLE] = str(threads)
    if threads == 1:
        flag = "--xla_cpu_multi_thread_eigen=false"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)

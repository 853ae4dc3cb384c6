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


def limit_threads(threads: int) -> None:
    """Give every library ``threads`` compute threads (0: leave each library's default; < 0: UsageError).

    Call it before the first computation: BLAS and OpenMP pools already loaded
    are resized through threadpoolctl, PyTorch's through ``set_num_threads``,
    and XLA reads ``NPROC`` and its flag when JAX first starts a backend.
    """
    if threads < 0:
        raise UsageError(f"--threads must be 0 (library defaults) or a positive number, got {threads}")
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

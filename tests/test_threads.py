"""``--threads N`` reaches every library: NumPy's BLAS, PyTorch and XLA's CPU thread pool.

XLA fixes its pool when JAX starts its CPU backend, so each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_python

# Starts JAX after limit_threads(N) and counts the threads of XLA's CPU pool (named tf_XLAEigen), PyTorch's
# thread count and the BLAS pools threadpoolctl sees.
SCRIPT = """
import json, os, sys
from wordrnn.core.threads import limit_threads
limit_threads(int(sys.argv[1]))
import jax, jax.numpy as jnp, torch
from threadpoolctl import threadpool_info
jax.jit(lambda a: a @ a)(jnp.ones((256, 256))).block_until_ready()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(json.dumps({"xla": sum("XLAEigen" in n for n in names), "torch": torch.get_num_threads(),
                  "blas": sorted({p["num_threads"] for p in threadpool_info()})}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
@pytest.mark.parametrize("threads", [1, 2])
def test_every_library_gets_the_thread_budget(threads):
    result = run_python(SCRIPT, str(threads), unset=("NPROC", "XLA_FLAGS"))
    assert result.returncode == 0, result.stderr[-2000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts == {"xla": threads, "torch": threads, "blas": [threads]}

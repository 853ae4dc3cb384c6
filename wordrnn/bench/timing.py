"""Measurements behind ``python -m wordrnn.bench.speed``: training throughput, generation speed, matmul peak.

Every figure is the median of timed repeats, taken round-robin over the
contenders, after a warm-up that is timed apart (it holds JAX's compilation
and every library's first-call costs). Asynchronous work is finished inside
the timed region: a training repeat ends with ``float(loss)``, which waits for
the last step and, through the weights, for every step before it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from data.batches import batch_indices
from data.dataset import Dataset
from wordrnn.bench.backends import make_backend
from wordrnn.core.config import Config
from wordrnn.core.params import Params, init_params
from wordrnn.core.sampling import SamplerSettings, generate

LogitsFn = Callable[[np.ndarray], np.ndarray]
GREEDY = SamplerSettings("greedy", allow_unk=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed round-robin: repeat 1 of each, then repeat 2 of each...

    On a shared machine the load drifts over seconds; interleaving spreads the
    drift over every contender instead of penalizing whichever ran at a busy moment.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_gflops(repeats: int, n: int = 1024) -> dict[str, float]:
    """Float32 [n, n] x [n, n] matmul GFLOP/s of NumPy and (when installed) PyTorch: the machine's peak.

    The fastest of the repeats, not the median: a peak is what the machine can do.
    """
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    products = {"numpy": lambda: a @ b}
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        products["torch"] = lambda: ta @ tb
    except ImportError:
        pass
    for product in products.values():
        product()
    best = {name: min(timed(product)[0] for _ in range(max(repeats, 5))) for name, product in products.items()}
    return {name: 2.0 * n**3 / seconds / 1e9 for name, seconds in best.items()}


def train_flops_per_example(config: Config) -> float:
    """Multiply-adds (x2) one training example needs: forward, and twice that for the backward pass.

    Counts the arithmetic the model requires. The one-hot input product is a
    column lookup (no arithmetic), which is how NumPy and JAX compute it;
    PyTorch's default one-hot model multiplies the one-hot matrix instead, work
    this count leaves out, so its GFLOP/s there is lower by construction.
    """
    H, V, T = config.hidden_size, config.vocab_size, config.seq_len
    input_product = 2 * H * config.embed_dim if config.model == "embedding" else 0
    forward = T * (input_product + 2 * H * H) + 2 * H * V
    return 3.0 * forward


def prepare_training(impl: str, config: Config, dataset: Dataset,
                     warmup: int = 3) -> tuple[Callable[[int], float], float, int]:
    """A function running ``count`` training steps of ``impl`` on the benchmark batches, its warm-up
    time, and the examples in each step.

    Full batches (unless there are none), the first epoch's order, cycled. The function returns
    ``float(loss)`` of its last step, which waits for every step it ran.
    """
    backend = make_backend(impl)
    state = backend.init(init_params(config), config)
    n = len(dataset.train_x)
    order = list(batch_indices(n, config.batch_size, config.seed, 1))
    order = [b for b in order if len(b) == config.batch_size] or order
    batches = [(dataset.train_x[b], dataset.train_y[b]) for b in order]
    step = 0

    def run(count: int) -> float:
        nonlocal state, step
        loss = None
        for _ in range(count):
            x, y = batches[step % len(batches)]
            state, loss = backend.train_step(state, x, y, step)
            step += 1
        return float(loss)

    warmup_seconds, _ = timed(lambda: run(warmup))
    return run, warmup_seconds, len(order[0])


def logits_functions(config: Config, params: Params, runtimes: list[str], threads: int) -> dict[str, LogitsFn]:
    """``int64 [1, T] -> float32 [1, V]`` for each runtime, all holding the same canonical weights."""
    fns: dict[str, LogitsFn] = {}
    for runtime in runtimes:
        if runtime == "onnxruntime":
            from export.graph import build_model
            from export.metadata import INPUT_NAME, OUTPUT_NAME
            from export.session import open_session

            session = open_session(build_model(params, config).SerializeToString(), "the benchmark model",
                                   threads=max(threads, 0))
            fns[runtime] = lambda x, s=session: s.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        elif runtime == "torch":
            import torch

            from torchmodels.model import build_module as build_torch

            module = build_torch(config, params).eval()

            def torch_logits(x: np.ndarray, module=module) -> np.ndarray:
                with torch.inference_mode():
                    return module(torch.from_numpy(x)).numpy()

            fns[runtime] = torch_logits
        elif runtime == "flax":
            backend = make_backend("jax")
            state = backend.init(params, config)
            fns[runtime] = lambda x, b=backend, s=state: b.logits(s, x)
        elif runtime == "numpy":
            from scratch.model import logits

            fns[runtime] = lambda x: logits(params, x)
        else:
            raise ValueError(f"unknown runtime {runtime!r}")
    return fns


def prepare_generation(logits_fn: LogitsFn, prompt: list[int], tokens: int, seq_len: int,
                       warmup: int = 5) -> tuple[Callable[[], list[int]], float]:
    """A function generating ``tokens`` greedy tokens at batch 1, and the warm-up time.

    The prompt is a full window, so every call has one shape (one compilation for JAX).
    """
    warmup_seconds, _ = timed(lambda: generate(logits_fn, prompt, warmup, seq_len, GREEDY))
    return (lambda: generate(logits_fn, prompt, tokens, seq_len, GREEDY)), warmup_seconds

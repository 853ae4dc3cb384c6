"""Measurements behind ``python -m wordrnn.bench.speed``: training steps, epochs and generated tokens.

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

from data.dataset import Dataset
from data.streams import Chunk
from wordrnn.core.config import Config
from wordrnn.core.params import Params, init_params
from wordrnn.core.sampling import LogitsFn, SamplerSettings, generate
from wordrnn.frameworks import make_backend

GREEDY = SamplerSettings("greedy", allow_unk=True)
RUNTIME_IMPLS = {"torch": "torch", "flax": "jax", "numpy": "numpy"}  # generation runtimes that are trainers too


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


def epoch_batches(dataset: Dataset, config: Config, epoch: int = 1) -> list[Chunk]:
    """The chunks of one epoch, in the order every trainer takes them (the context's layout)."""
    return dataset.epoch_chunks(config.layout, config.batch_size, config.bptt, config.seed, epoch)


def step_tokens(chunk: Chunk) -> int:
    """What one step trains on: the windows of a batch (one target each), or the B*T positions of a chunk."""
    return len(chunk.y) if chunk.last_only else chunk.x.size


class Trainer:
    """One implementation's backend and state, stepping through a list of chunks (cycled; where the layout
    carries the state it passes to the next chunk, and the first chunk of an epoch starts every stream's poem, so
    cycling is sound)."""

    def __init__(self, impl: str, config: Config, device: str):
        self.backend = make_backend(impl, device)
        self.state = self.backend.init(init_params(config), config)
        self.carries = config.layout.carries_state
        self.step = 0
        self.carry: Any = None

    def run(self, chunks: list[Chunk], count: int) -> float:
        """``count`` steps; returns ``float(loss)`` of the last, which waits for every step."""
        loss = None
        for _ in range(count):
            chunk = chunks[self.step % len(chunks)]
            self.state, loss, carry = self.backend.train_step(self.state, chunk, self.carry, self.step)
            self.carry = carry if self.carries else None
            self.step += 1
        return float(loss)


def prepare_training(impl: str, config: Config, dataset: Dataset, device: str,
                     warmup: int = 3) -> tuple[Callable[[int], float], float, int]:
    """A function running ``count`` training steps of ``impl`` on the benchmark batches, its warm-up
    time, and what each step trains on (windows, or a chunk's B*T tokens in the poem context).

    Full batches (unless there are none), the first epoch's order, cycled. Every chunk of the poem
    context has the full B streams.
    """
    batches = epoch_batches(dataset, config)
    batches = [b for b in batches if len(b.x) == config.batch_size] or batches
    trainer = Trainer(impl, config, device)
    warmup_seconds, _ = timed(lambda: trainer.run(batches, warmup))
    return (lambda count: trainer.run(batches, count)), warmup_seconds, step_tokens(batches[0])


def time_epoch(impl: str, config: Config, dataset: Dataset, device: str,
               warmup: int = 3) -> tuple[float, float, float]:
    """Seconds of one full training epoch of ``impl`` (every batch, the last partial one included; or every
    chunk), after ``warmup`` steps timed apart; returns (epoch seconds, the process's CPU seconds in the epoch,
    warm-up seconds). On a shared machine the CPU seconds say how long the epoch takes with a core to itself."""
    batches = epoch_batches(dataset, config)
    trainer = Trainer(impl, config, device)
    warmup_seconds, _ = timed(lambda: trainer.run(batches, warmup))
    trainer.step, trainer.carry = 0, None
    cpu_started = time.process_time()
    seconds, _ = timed(lambda: trainer.run(batches, len(batches)))
    return seconds, time.process_time() - cpu_started, warmup_seconds


def onnx_logits(config: Config, params: Params, threads: int) -> LogitsFn:
    from export.graph import build_graph
    from export.metadata import INPUT_NAME, OUTPUT_NAME
    from export.session import open_session

    session = open_session(build_graph(params, config).SerializeToString(), "the benchmark model",
                           threads=max(threads, 0))
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def logits_functions(config: Config, params: Params, runtimes: list[str], threads: int,
                     device: str) -> dict[str, LogitsFn]:
    """``int64 [1, T] -> float32 [1, V]`` for each runtime, all holding the same canonical weights:
    each implementation's own ``Backend.logits`` (what its generate command uses), onnxruntime's session."""
    fns: dict[str, LogitsFn] = {}
    for runtime in runtimes:
        if runtime == "onnxruntime":
            fns[runtime] = onnx_logits(config, params, threads)
            continue
        backend = make_backend(RUNTIME_IMPLS[runtime], device)
        state = backend.init(params, config)
        fns[runtime] = lambda x, backend=backend, state=state: backend.logits(state, x, last_only=True)[0]
    return fns


def prepare_generation(logits_fn: LogitsFn, prompt: list[int], tokens: int, seq_len: int,
                       warmup: int = 5) -> tuple[Callable[[], list[int]], float]:
    """A function generating ``tokens`` greedy tokens at batch 1, and the warm-up time.

    The prompt is a full window, so every call has one shape (one compilation for JAX).
    """
    warmup_seconds, _ = timed(lambda: generate(logits_fn, prompt, warmup, seq_len, GREEDY))
    return (lambda: generate(logits_fn, prompt, tokens, seq_len, GREEDY)), warmup_seconds

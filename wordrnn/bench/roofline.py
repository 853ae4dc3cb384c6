"""How fast a step could be: the work it must do, against what this machine can do.

A step must do ``flops`` of arithmetic and move ``bytes`` between memory and
the cores; the machine does at most ``peak`` FLOP/s (a large float32 matrix
product) and moves at most ``bandwidth`` bytes/s (a copy the size of the
step's working set), both measured in the same run, so no implementation
takes less than

    limit = max(flops / peak, bytes / bandwidth)

and ``limit / achieved`` (0 to 1) says how much of the machine it uses.
docs/PERFORMANCE.md ("The limit beside the ratio") says what is counted:
the cell's step (``wordrnn.core.cells``), the output layer and softmax, the
backward pass, clipping and the optimizer (``wordrnn.core.optimizers``); a chunk of the poem context
(``chunk_step_work``) counts the output layer, the softmax and the logits at all B*T positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.optimizers import get_optimizer
from wordrnn.core.params import param_shapes

FLOAT_BYTES = 4
CLIP_FLOPS = 2  # per parameter per step (the optimizer's own: ``Optimizer.flops_per_param``)
SOFTMAX_FLOPS = 5  # per logit: max, subtract, exp, sum, divide


@dataclass(frozen=True)
class Work:
    """What one step must do."""

    flops: float
    bytes: float

    def seconds(self, peak_gflops: float, bandwidth_gbs: float) -> float:
        """The lower bound on the step's time: whichever of arithmetic and memory takes longer."""
        return max(self.flops / (peak_gflops * 1e9), self.bytes / (bandwidth_gbs * 1e9))

    def bound(self, peak_gflops: float, bandwidth_gbs: float) -> str:
        """``"compute"`` or ``"memory"``: which of the two sets the limit."""
        return "compute" if self.flops / peak_gflops >= self.bytes / bandwidth_gbs else "memory"


def _sizes(config: Config) -> tuple[int, int, int]:
    """(all parameters, the looked-up table's parameters, the table's row length)."""
    shapes = param_shapes(config)
    total = sum(int(np.prod(s)) for s in shapes.values())
    if config.model == "embedding":
        return total, config.vocab_size * config.embed_dim, config.embed_dim
    gh = get_cell(config.cell).num_gates * config.hidden_size
    return total, config.vocab_size * gh, gh  # the one-hot input product looks up a column of w_ih


def forward_flops(config: Config, steps: int | None = None, scored: int = 1) -> float:
    """FLOPs of one row's forward pass: ``steps`` cell steps (default the window, T) and ``scored`` output
    layers and softmaxes (1 for a window, T for a chunk of the poem context)."""
    cell = get_cell(config.cell)
    step = cell.step_flops(config.input_size, config.hidden_size, input_is_lookup=config.model == "onehot")
    step += (config.layers - 1) * cell.step_flops(config.hidden_size, config.hidden_size)  # the layers above
    steps = config.seq_len if steps is None else steps
    return steps * step + scored * (2.0 * config.hidden_size * config.vocab_size + SOFTMAX_FLOPS * config.vocab_size)


def activation_numbers(config: Config, batch: int, steps: int | None = None, scored: int = 1) -> float:
    """Numbers the forward pass keeps for the backward pass: inputs, pre-activations, states, logits
    (``batch`` rows of ``steps`` steps, ``scored`` positions of logits each)."""
    cell = get_cell(config.cell)
    gh = cell.num_gates * config.hidden_size
    states = len(cell.states) * config.hidden_size
    per_step = (config.embed_dim if config.model == "embedding" else 0) + gh + states
    per_step += (config.layers - 1) * (config.hidden_size + gh + states)  # each layer above: its input, gates, state
    steps = config.seq_len if steps is None else steps
    return batch * (steps * per_step + scored * config.vocab_size)


def _training_work(config: Config, rows: int, steps: int, scored: int) -> Work:
    """Forward, backward, clip and optimizer over ``rows`` rows of ``steps`` steps, ``scored`` outputs a row."""
    total, table, row = _sizes(config)
    dense = total - table
    looked_up = rows * steps * row
    spec = get_optimizer(config.optimizer)
    optimizer_flops = spec.flops_per_param + (CLIP_FLOPS if config.clip else 0)
    flops = 3.0 * rows * forward_flops(config, steps, scored) + optimizer_flops * total
    weights = dense + looked_up  # forward reads
    backward = dense + 2 * dense + 2 * looked_up  # weights again; gradients written and read back
    # an optimizer with state reads and writes every parameter and slot (the slots decay everywhere, so the
    # whole table moves); one without changes only the parameters that have a gradient
    optimizer = 2 * (1 + len(spec.slots)) * total if spec.slots else 2 * (dense + looked_up)
    activations = 2 * activation_numbers(config, rows, steps, scored)
    return Work(flops, FLOAT_BYTES * float(weights + backward + optimizer + activations))


def train_step_work(config: Config, batch: int) -> Work:
    """The work of one training step on ``batch`` windows (forward, backward, clip, optimizer)."""
    return _training_work(config, batch, config.seq_len, 1)


def chunk_step_work(config: Config, streams: int, bptt: int) -> Work:
    """The work of one poem-context step on a chunk of ``streams`` x ``bptt`` tokens: the (B*T)-row output
    products, ``bptt`` recurrent steps of ``streams`` rows, clip and optimizer."""
    return _training_work(config, streams, bptt, bptt)


def generate_token_work(config: Config) -> Work:
    """The work of one greedy token at batch 1: the forward pass over one window."""
    total, table, row = _sizes(config)
    numbers = (total - table) + config.seq_len * row + activation_numbers(config, 1)
    return Work(forward_flops(config), FLOAT_BYTES * float(numbers))


def working_set_bytes(config: Config, training: bool = True) -> int:
    """Bytes a step keeps touching: in training the parameters, gradients and (Adam) both moments; in
    generation the weights outside the looked-up table."""
    total, table, _ = _sizes(config)
    if not training:
        return FLOAT_BYTES * (total - table)
    return FLOAT_BYTES * total * (2 + len(get_optimizer(config.optimizer).slots))


# -- measuring the machine ---------------------------------------------------------------------------


# A call this slow is a library without a kernel for the operands (PyTorch's bfloat16 product on a CPU without
# AVX-512: seconds a call): one timed call tells that, and repeats would only spend minutes
SLOW_CALL_SECONDS = 1.0


def _best_seconds(fn: Callable[[], Any], sync: Callable[[], Any], repeats: int, min_seconds: float = 2e-3) -> float:
    """The fastest time of one call of ``fn``: each repeat runs enough calls to last ``min_seconds``; a call slower
    than ``SLOW_CALL_SECONDS`` is timed once."""
    fn()
    sync()
    started = time.perf_counter()
    fn()
    sync()
    if time.perf_counter() - started > SLOW_CALL_SECONDS:
        return time.perf_counter() - started
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            break
        calls *= 2
    best = elapsed / calls
    for _ in range(repeats - 1):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def matmul_peak_gflops(device: str, repeats: int = 5, precision: str = "float32") -> dict[str, float]:
    """Matrix-product GFLOP/s on ``device`` by every library at hand, operands in ``precision``: NumPy on "cpu"
    (float32 only: NumPy has no bfloat16), PyTorch and XLA on either (n 1024 on "cpu", 4096 on "cuda", TF32 off, as
    the models run). The best of the repeats: a peak is what the machine can do, and on some CPUs one library's
    kernel is twice another's (docs/PERFORMANCE.md). A ``bfloat16`` peak is the limit of ``--precision bfloat16``
    rows: bfloat16 operands, float32 accumulation, as the models' products run under that precision."""
    n = 1024 if device == "cpu" else 4096
    flops = 2.0 * n**3
    results = {}
    if device == "cpu" and precision == "float32":
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        results["numpy"] = flops / _best_seconds(lambda: a @ b, lambda: None, repeats) / 1e9
    try:
        import torch
    except ImportError:
        pass
    else:
        dtype = getattr(torch, precision)
        ta = torch.randn(n, n, device=device).to(dtype)
        tb = torch.randn(n, n, device=device).to(dtype)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        results["torch"] = flops / _best_seconds(lambda: ta @ tb, sync, repeats) / 1e9
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return results
    try:
        on = jax.devices("cpu" if device == "cpu" else "gpu")[0]
    except RuntimeError:  # a JAX without this device's backend
        return results
    product = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
    ja = jax.device_put(jnp.ones((n, n), precision), on)
    jb = jax.device_put(jnp.ones((n, n), precision), on)
    latest = [product(ja, jb)]  # the calls queue up as torch's do; waiting for the last one waits for all

    def call() -> None:
        latest[0] = product(ja, jb)

    results["jax"] = flops / _best_seconds(call, lambda: latest[0].block_until_ready(), repeats) / 1e9
    return results


GPU_MIN_COPY = 256 * 2**20  # a smaller copy on a GPU measures the kernel launch, not the memory


def copy_bandwidth_gbs(device: str, working_set: int, repeats: int = 5) -> float:
    """GB/s of an array copy whose source and destination together take ``working_set`` bytes
    (read + write counted; at least ``GPU_MIN_COPY`` on a GPU). NumPy on "cpu", PyTorch on "cuda"."""
    if device != "cpu":
        working_set = max(working_set, GPU_MIN_COPY)
    n = max(working_set // (2 * FLOAT_BYTES), 1024)
    if device == "cpu":
        src = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
        dst = np.empty_like(src)
        seconds = _best_seconds(lambda: np.copyto(dst, src), lambda: None, repeats)
    else:
        import torch

        src = torch.randn(n, device=device)
        dst = torch.empty_like(src)
        seconds = _best_seconds(lambda: dst.copy_(src), torch.cuda.synchronize, repeats)
    return 2.0 * FLOAT_BYTES * n / seconds / 1e9


@dataclass
class Limits:
    """The measured rates of one device, and how they were measured (for the JSON)."""

    device: str
    matmul_gflops: dict[str, float]
    bandwidth_gbs: dict[str, float]  # by working-set name (the size it was measured for)
    working_set_bytes: dict[str, int]
    bfloat16_matmul_gflops: dict[str, float] = field(default_factory=dict)  # measured where bfloat16 rows run

    @property
    def peak_gflops(self) -> float:
        return max(self.matmul_gflops.values())

    def to_dict(self) -> dict[str, Any]:
        peaks = {"peak_gflops": self.peak_gflops}
        if self.bfloat16_matmul_gflops:
            peaks["bfloat16_peak_gflops"] = max(self.bfloat16_matmul_gflops.values())
        return {**asdict(self), **peaks}


def peak_key(precision: str) -> str:
    """The key of a ``Limits.to_dict`` that holds the peak of ``precision``'s rows."""
    return "peak_gflops" if precision == "float32" else f"{precision}_peak_gflops"

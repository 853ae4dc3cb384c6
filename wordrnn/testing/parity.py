"""The cross-framework comparisons that ``tests/parity`` and ``python -m wordrnn.bench.parity`` share.

Every comparison starts from one set of float64 canonical weights and one
batch, hands each framework its own copy in the dtype under test, and measures
how far apart the answers are:

- a forward and backward pass (``forward_backward``): the logits, by max abs
  difference, and each parameter's gradient of the mean cross-entropy, by max
  abs difference relative to the largest entry of that gradient (in either of
  the two being compared);
- a training trajectory (``trajectory``): n optimizer steps through each
  framework's ``Backend`` (init / train_step / canonical) on the same batches,
  compared by the loss of every step and by the weights after the last one.

Every cell of ``wordrnn.core.cells`` and both models are covered; the
frameworks are those of ``wordrnn.frameworks``, the one registry. The
tolerances are ``wordrnn.core.tolerances`` (the table of docs/DESIGN.md) and are
never widened here; a ``Check`` holds the worst difference of each pair of
frameworks and whether it is within them.

On a GPU (``device="cuda"``) the comparisons run with TF32 off in torch and
JAX's matmul precision at "highest" (``use_device``), as on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, partial
from itertools import combinations
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from data.streams import Chunk, epoch_chunks, window_chunk
from jaxmodels import model as jax_model
from jaxmodels.devices import no_tf32, platform_of
from scratch import sequence as np_sequence
from torchmodels import model as torch_model
from torchmodels.devices import resolve_device
from wordrnn.core import tolerances
from wordrnn.core.backend import Backend
from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.dropout import Masks, draw_masks
from wordrnn.core.optimizers import get_optimizer
from wordrnn.core.params import Params, canonical_order, init_params
from wordrnn.frameworks import DEVICES as FRAMEWORK_DEVICES
from wordrnn.frameworks import IMPLS, make_backend

FRAMEWORKS = IMPLS  # numpy, torch, jax
DEVICES = FRAMEWORK_DEVICES[1:]  # a comparison names its device
DTYPE_TAGS = {np.float32: "f32", np.float64: "f64"}


def use_device(device: str) -> None:
    """Check that ``device`` is there and make float32 products full precision on it (no TF32)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device: torch sees none")
        resolve_device("cuda")  # TF32 off in torch (torchmodels.devices)
        # cuDNN's float32 RNN kernels sum in an order that strays several times further from float64 than
        # every other implementation does (measured on an H200: docs/PERFORMANCE.md), so the parity checks
        # compare torch's own CUDA kernels, which compute the same equations.
        torch.backends.cudnn.enabled = False
        no_tf32()  # and in JAX (jaxmodels.devices)


def jax_device(device: str) -> jax.Device:
    return jax.devices(platform_of(device))[0]


# -- problems ---------------------------------------------------------------------------------------

def make_config(model: str, vocab_size: int, hidden_size: int, embed_dim: int, seq_len: int, batch_size: int,
                seed: int = 0, cell: str = "rnn", **training) -> Config:
    """A validated ``Config`` for random data (no corpus): the sizes, the cell, plus any training settings."""
    config = Config(model=model, cell=cell, vocab_size=vocab_size, hidden_size=hidden_size, embed_dim=embed_dim,
                    seq_len=seq_len, batch_size=batch_size, seed=seed, **training)
    return config.validate()


def random_params(config: Config, seed: int = 0, bias_scale: float = 0.3) -> Params:
    """Float64 canonical weights: the project's initializer, with N(0, bias_scale) added to the biases.

    Freshly initialized biases are U(-1/sqrt(H), 1/sqrt(H)), small next to the
    weights for a large H; a larger bias makes a dropped, doubled or
    misplaced bias show in the logits.
    """
    params = init_params(config, seed=seed, dtype=np.float64)
    rng = np.random.default_rng([seed, 7])
    for name in [n for n in params if n.startswith(("rnn.b_ih", "rnn.b_hh", "out.bias"))]:  # every layer's
        params[name] = params[name] + rng.normal(0.0, bias_scale, params[name].shape)
    return params


def random_batch(vocab_size: int, batch_size: int, seq_len: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """int64 windows [B, T] and targets [B], uniform over the vocabulary."""
    x = rng.integers(0, vocab_size, size=(batch_size, seq_len), dtype=np.int64)
    y = rng.integers(0, vocab_size, size=batch_size, dtype=np.int64)
    return x, y


@dataclass
class Problem:
    """Float64 weights, one batch and fixed dropout masks for one model and cell."""

    config: Config
    params: Params
    x: np.ndarray
    y: np.ndarray
    masks: Masks


def random_problem(model: str, vocab_size: int, hidden_size: int, embed_dim: int, seq_len: int, batch_size: int,
                   seed: int = 0, dropout: float = 0.3, cell: str = "rnn", **training) -> Problem:
    """The random problem every comparison of one forward and backward pass starts from.

    The masks are ``wordrnn.core.dropout.draw_masks`` at rate ``dropout``, in float64: every lever at once
    (input dropout with whole embedding rows dropped, output dropout, weight-drop on ``w_hh``, between layers).
    ``training``: more settings (``layers``, ``ar``, ``tar``).
    """
    config = make_config(model, vocab_size, hidden_size, embed_dim, seq_len, batch_size, seed, cell, **training)
    rng = np.random.default_rng([seed, 3])
    x, y = random_batch(vocab_size, batch_size, seq_len, rng)
    masks = draw_masks(config, batch_size, seq_len, rng, p=dropout, dtype=np.float64, x=x)
    return Problem(config, random_params(config, seed), x, y, masks)


def _cast(arrays: dict[str, np.ndarray | None] | None, dtype: type) -> dict | None:
    if arrays is None:
        return None
    return {k: None if v is None else np.asarray(v, dtype=dtype) for k, v in arrays.items()}


# -- one forward and backward pass in each framework, over consecutive chunks ---------------------------------
#
# A pass reads chunks (``data.streams.Chunk``) in order with the state carried from one to the next, and sums
# each chunk's own loss gradient (truncated BPTT). A batch of windows is one chunk from a zero state, scored at
# its last position; the poem context's problem is two chunks of streams with resets inside and a random state
# before the first. The same function of each framework serves both.

@dataclass
class Pass:
    """What one framework computed, widened to float64 NumPy for comparison."""

    logits: np.ndarray  # [B, V] (windows), [B, T, V] (every position of every chunk)
    loss: float
    grads: Params  # d(sum of the chunks' mean cross-entropies)/d(parameter), canonical names and shapes
    state: tuple[np.ndarray, ...] = ()  # the state after the last chunk (none for windows: nothing is carried)


def _joined(logits: list) -> np.ndarray:
    """One chunk's logits as they are, several joined along the positions."""
    return logits[0] if len(logits) == 1 else np.concatenate(logits, axis=1)


def _carried(chunks: Sequence[Chunk], state: tuple) -> tuple:
    return () if all(c.last_only for c in chunks) else tuple(np.asarray(s, np.float64) for s in state)


def numpy_pass(config: Config, params: Params, chunks: Sequence[Chunk], state: tuple | None, masks: Masks | None,
               dtype: type, device: str = "cpu") -> Pass:
    own, own_masks = _cast(params, dtype), _cast(masks, dtype)
    state = None if state is None else tuple(np.asarray(s, dtype) for s in state)
    logits, total, grads = [], 0.0, {k: np.zeros_like(v) for k, v in own.items()}
    for c in chunks:
        logits.append(np_sequence.forward(own, c.x, config.cell, state, c.reset, own_masks, c.last_only)[0])
        loss, g, state = np_sequence.loss_and_grads(own, c.x, c.y, c.weights, config.cell, state, c.reset,
                                                    own_masks, c.last_only, config.ar, config.tar)
        total += loss
        for k in grads:
            grads[k] += g[k]
    return Pass(_joined(logits).astype(np.float64), total, _cast(grads, np.float64), _carried(chunks, state))


def torch_pass(config: Config, params: Params, chunks: Sequence[Chunk], state: tuple | None, masks: Masks | None,
               dtype: type, device: str = "cpu", onehot_gather: bool = False) -> Pass:
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    module = torch_model.build_module(config, _cast(params, dtype), dtype=torch_dtype, device=device,
                                      onehot_gather=onehot_gather)
    if state is not None:
        state = tuple(torch.from_numpy(np.asarray(s, dtype)).to(device) for s in state)
    logits, total = [], 0.0
    for c in chunks:
        reset = None if c.reset is None else torch.from_numpy(c.reset).to(device)
        own_masks = torch_masks(masks, dtype, device)
        out, state, hidden = module(torch.from_numpy(c.x).to(device), state, reset, own_masks, c.last_only, True)
        w = torch.from_numpy(c.weights).to(device, torch_dtype)
        loss = torch_model.chunk_loss(out, hidden, torch.from_numpy(c.y).to(device), w, reset, own_masks,
                                      c.last_only, config.ar, config.tar)
        loss.backward()  # each chunk's own loss: truncated BPTT takes no gradient across the boundary
        total += float(loss.detach())
        logits.append(out.detach().double().cpu().numpy())
        state = tuple(s.detach() for s in state)
    grads = {name: p.grad.double().cpu().numpy() for name, p in torch_model.canonical_parameters(module)}
    return Pass(_joined(logits), total, grads, _carried(chunks, [s.double().cpu().numpy() for s in state]))


def torch_masks(masks: Masks | None, dtype: type, device: str = "cpu") -> dict[str, torch.Tensor | None] | None:
    """NumPy masks as torch tensors of ``dtype`` on ``device``."""
    if masks is None:
        return None
    return {k: None if v is None else torch.from_numpy(v).to(device) for k, v in _cast(masks, dtype).items()}


def jax_masks(masks: Masks | None, dtype: type) -> dict[str, jax.Array | None] | None:
    """NumPy masks as JAX arrays of ``dtype`` (float64 only inside ``jax.enable_x64``)."""
    if masks is None:
        return None
    return {k: None if v is None else jnp.asarray(v) for k, v in _cast(masks, dtype).items()}


def jax_loss(params: dict, x: jax.Array, y: jax.Array, weights: jax.Array, reset: jax.Array | None,
             state: tuple | None, masks: dict | None, cell: str, last_only: bool, ar: float = 0.0, tar: float = 0.0
             ) -> tuple[jax.Array, tuple]:
    """The chunk loss of ``jaxmodels.model.apply`` (``chunk_loss``: with AR and TAR where they are on; the logits
    and final state as auxiliary output)."""
    logits, final, hidden = jax_model.apply(params, x, state, reset, masks, cell=cell, last_only=last_only,
                                            return_hidden=True)
    return jax_model.chunk_loss(logits, hidden, y, weights, reset, masks, last_only, ar, tar), (logits, final)


_jax_value_and_grad = jax.jit(jax.value_and_grad(jax_loss, has_aux=True),
                              static_argnames=("cell", "last_only", "ar", "tar"))


def jax_pass(config: Config, params: Params, chunks: Sequence[Chunk], state: tuple | None, masks: Masks | None,
             dtype: type, device: str = "cpu") -> Pass:
    with jax.enable_x64(dtype == np.float64), jax.default_device(jax_device(device)):
        own = {k: jnp.asarray(v) for k, v in _cast(params, dtype).items()}
        if state is not None:
            state = tuple(jnp.asarray(np.asarray(s, dtype)) for s in state)
        logits, total, grads = [], 0.0, None
        for c in chunks:
            (loss, (out, state)), g = _jax_value_and_grad(
                own, jnp.asarray(c.x), jnp.asarray(c.y), jnp.asarray(c.weights, dtype),
                None if c.reset is None else jnp.asarray(c.reset), state, jax_masks(masks, dtype),
                cell=config.cell, last_only=c.last_only, ar=config.ar, tar=config.tar)
            total += float(loss)
            logits.append(np.asarray(out, np.float64))
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        return Pass(_joined(logits), total, {k: np.asarray(v, np.float64) for k, v in grads.items()},
                    _carried(chunks, state))


# one pass per framework of the registry, and torch's gather form of the one-hot model
PASSES: dict[str, Callable[..., Pass]] = {
    "numpy": numpy_pass,
    "torch": torch_pass,
    "torch-gather": partial(torch_pass, onehot_gather=True),
    "jax": jax_pass,
}


def forward_backward(framework: str, config: Config, params: Params, x: np.ndarray, y: np.ndarray,
                     masks: Masks | None = None, dtype: type = np.float32, device: str = "cpu") -> Pass:
    """Logits, loss and gradients of ``framework`` (a key of ``PASSES``) on windows ``x`` [B, T] with targets
    ``y`` [B], ``params`` cast to ``dtype``.

    ``dtype`` is ``np.float32`` or ``np.float64`` (torch double, JAX with x64
    enabled for this call only). NumPy always computes on the CPU.
    """
    return PASSES[framework](config, params, [window_chunk(x, y)], None, masks, dtype, device=device)


# -- the poem context: chunks of streams with the state carried -------------------------------------------

@dataclass
class PoemProblem:
    """Float64 weights, consecutive chunks of random streams (a poem starts inside one), a non-zero state
    before the first, and locked dropout masks."""

    config: Config
    params: Params
    chunks: list[Chunk]
    state: tuple[np.ndarray, ...]
    masks: Masks


def random_poems(vocab_size: int, count: int, rng: np.random.Generator, shortest: int = 3, longest: int = 20
                 ) -> list[np.ndarray]:
    return [rng.integers(0, vocab_size, size=int(rng.integers(shortest, longest + 1)), dtype=np.int64)
            for _ in range(count)]


def random_poem_problem(model: str, vocab_size: int, hidden_size: int, embed_dim: int, seq_len: int,
                        batch_size: int, seed: int = 0, dropout: float = 0.3, cell: str = "rnn", bptt: int = 6,
                        chunks: int = 2, **training) -> PoemProblem:
    config = make_config(model, vocab_size, hidden_size, embed_dim, seq_len, batch_size, seed, cell,
                         context="poem", bptt=bptt, **training)
    rng = np.random.default_rng([seed, 5])
    poems = random_poems(vocab_size, 4 * batch_size, rng)
    laid = epoch_chunks(poems, batch_size, bptt, seed, 1)[:chunks]
    if not any(c.reset[:, 1:].any() for c in laid):
        raise RuntimeError("no poem starts inside a chunk: choose another seed or shorter poems")
    state = tuple(0.5 * rng.standard_normal((batch_size, config.state_size)) for _ in get_cell(config.cell).states)
    masks = draw_masks(config, batch_size, bptt, rng, p=dropout, dtype=np.float64)
    return PoemProblem(config, random_params(config, seed), laid, state, masks)


def poem_pass_checks(problem: PoemProblem, masks: Masks | None = None, dtype: type = np.float32,
                     frameworks: Sequence[str] = FRAMEWORKS, label: str = "", per_parameter: bool = True,
                     device: str = "cpu") -> list[Check]:
    """Every position's logits, the final state and the gradients of the chunks' losses, pairwise."""
    passes = {fw: PASSES[fw](problem.config, problem.params, problem.chunks, problem.state, masks, dtype,
                             device=device) for fw in frameworks}
    chunks = f"{len(problem.chunks)} carried chunks of {problem.config.bptt}"
    return compare_passes(problem.config, passes, dtype, f"poem, {chunks}" + (f", {label}" if label else ""),
                          per_parameter)


def poem_trajectory_checks(config: Config, params: Params, steps: int = 20, seed: int = 0,
                           frameworks: Sequence[str] = FRAMEWORKS, device: str = "cpu") -> list[Check]:
    """``steps`` Adam steps over the consecutive chunks of random streams (several epochs if need be)."""
    rng = np.random.default_rng([seed, 13])
    poems = random_poems(config.vocab_size, 2 * config.batch_size, rng)
    chunks: list[Chunk] = []
    epoch = 1
    while len(chunks) < steps:
        chunks += epoch_chunks(poems, config.batch_size, config.bptt, seed, epoch, config.bptt_jitter)
        epoch += 1
    runs = {fw: trajectory(fw, config, params, chunks[:steps], device) for fw in frameworks}
    lengths = f"about {config.bptt} (variable length)" if config.bptt_jitter else f"{config.bptt}"
    return compare_trajectories(config, runs, f"poem, {steps} {config.optimizer} steps over carried chunks of "
                                              f"{lengths}, lr {config.lr:g}, clip {config.clip:g}")


def all_poem_checks(model: str, vocab_size: int, hidden_size: int, embed_dim: int, seq_len: int, batch_size: int,
                    seed: int = 0, steps: int = 20, lr: float = 1e-3, dropout: float = 0.3, cell: str = "rnn",
                    bptt: int = 6, device: str = "cpu", **training) -> list[Check]:
    """The poem context's comparisons: float32 and float64, without and with locked dropout masks; then
    ``steps`` Adam steps over carried chunks. ``training``: more settings (``layers``, ``ar``, ``tar``)."""
    use_device(device)
    problem = random_poem_problem(model, vocab_size, hidden_size, embed_dim, seq_len, batch_size, seed, dropout,
                                  cell, bptt, **training)
    checks = []
    for dtype in (np.float32, np.float64):
        checks += poem_pass_checks(problem, None, dtype, per_parameter=False, device=device)
        checks += poem_pass_checks(problem, problem.masks, dtype, label=f"locked masks p={dropout:g}",
                                   per_parameter=False, device=device)
    checks += poem_trajectory_checks(replace(problem.config, lr=lr), problem.params, steps, seed, device=device)
    return checks


# -- measures and checks -------------------------------------------------------------------------------

def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def relative_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max abs difference over the largest entry of either array (docs/DESIGN.md's gradient measure)."""
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), tolerances.TINY)
    return max_abs_diff(a, b) / scale


def pair_label(a: str, b: str) -> str:
    return f"{a}-{b}"


PAIRS = tuple(pair_label(a, b) for a, b in combinations(FRAMEWORKS, 2))  # numpy-torch, numpy-jax, torch-jax


@dataclass
class Check:
    """The worst difference between each pair of frameworks on one quantity, against its tolerance."""

    model: str
    name: str
    tolerance: float
    diffs: dict[str, float] = field(default_factory=dict)  # pair label -> worst difference
    cell: str = "rnn"
    # pair label -> why its difference over the tolerance is no fault of either side (``explain_weights``)
    explained: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(np.isfinite(d) and (d <= self.tolerance or pair in self.explained)
                   for pair, d in self.diffs.items())

    def __str__(self) -> str:
        pairs = ", ".join(f"{k} {v:.2e}" for k, v in self.diffs.items())
        notes = "".join(f"; {pair} explained: {why}" for pair, why in self.explained.items())
        return f"{self.model} {self.cell} {self.name}: {pairs} (tolerance {self.tolerance:g}){notes}"


def compare_passes(config: Config, passes: dict[str, Pass], dtype: type, label: str = "",
                   per_parameter: bool = True) -> list[Check]:
    """Checks of the logits and of the gradients, for each pair of ``passes``.

    One gradient check per parameter, or (``per_parameter=False``) one for the
    worst of them.
    """
    tag = DTYPE_TAGS[dtype] + (f", {label}" if label else "")
    pairs = list(combinations(passes, 2))
    names = canonical_order(passes[pairs[0][0]].grads)
    check = partial(Check, config.model, cell=config.cell)

    def grad_diffs(chosen: list[str]) -> dict[str, float]:
        return {pair_label(a, b): max(relative_diff(passes[a].grads[n], passes[b].grads[n]) for n in chosen)
                for a, b in pairs}

    checks = [check(f"logits {tag}", tolerances.LOGITS[dtype],
                    {pair_label(a, b): max_abs_diff(passes[a].logits, passes[b].logits) for a, b in pairs})]
    if passes[pairs[0][0]].state:
        checks.append(check(f"final state {tag}", tolerances.LOGITS[dtype], {
            pair_label(a, b): max(max_abs_diff(u, v) for u, v in zip(passes[a].state, passes[b].state, strict=True))
            for a, b in pairs}))
    if per_parameter:
        checks += [check(f"grad {name} {tag}", tolerances.GRADIENTS[dtype], grad_diffs([name])) for name in names]
    else:
        checks.append(check(f"grads, worst of {len(names)} parameters, {tag}", tolerances.GRADIENTS[dtype],
                            grad_diffs(names)))
    return checks


def pass_checks(config: Config, params: Params, x: np.ndarray, y: np.ndarray, masks: Masks | None = None,
                dtype: type = np.float32, frameworks: Sequence[str] = FRAMEWORKS, label: str = "",
                per_parameter: bool = True, device: str = "cpu") -> list[Check]:
    """Run one forward and backward pass in each of ``frameworks`` and compare them pairwise."""
    passes = {fw: forward_backward(fw, config, params, x, y, masks, dtype, device) for fw in frameworks}
    return compare_passes(config, passes, dtype, label, per_parameter)


# -- training trajectories through the backends ------------------------------------------------------------

@cache
def backend_for(framework: str, device: str = "cpu"):
    """One backend per framework, device and process, from ``wordrnn.frameworks``
    (``torch-gather``: torch's gather form of the one-hot model); the JAX backend keeps its compiled
    steps between calls."""
    if framework == "torch-gather":
        return make_backend("torch", device=device, onehot_gather=True)
    return make_backend(framework, device=device)


@dataclass
class Trajectory:
    losses: np.ndarray  # [steps] the loss each step reported
    params: Params  # canonical float32 weights after the last step
    moments: list[Params] = field(default_factory=list)  # Adam's first moment after each step (``first_moment``)


def first_moment(backend: Backend, state: Any, config: Config) -> Params:
    """The optimizer's first moment of every parameter after a step, copied (empty for an optimizer without one):
    what ``explain_weights`` recovers each step's gradient from."""
    spec = get_optimizer(config.optimizer)
    if "m" not in spec.slots:
        return {}
    arrays = backend.optimizer_arrays(state)
    prefix = spec.slot_name("m", "")
    return {name[len(prefix):]: np.array(value) for name, value in arrays.items() if name.startswith(prefix)}


def as_chunks(batches: Sequence[Chunk | tuple[np.ndarray, np.ndarray]]) -> list[Chunk]:
    """Batches of windows ``(x, y)`` as chunks; chunks as they are."""
    return [b if isinstance(b, Chunk) else window_chunk(*b) for b in batches]


def trajectory(framework: str, config: Config, params: Params,
               batches: Sequence[Chunk | tuple[np.ndarray, np.ndarray]], device: str = "cpu") -> Trajectory:
    """Train ``framework``'s backend from ``params`` (cast to float32) on ``batches`` (windows ``(x, y)``, or
    chunks), one step each, the state carried from chunk to chunk where ``config``'s layout carries it."""
    backend = backend_for(framework, device)
    state = backend.init(_cast(params, np.float32), config)
    losses, carry, moments = [], None, []
    for step, chunk in enumerate(as_chunks(batches)):
        state, loss, after = backend.train_step(state, chunk, carry, step)
        carry = after if config.layout.carries_state else None
        losses.append(loss)
        moments.append(first_moment(backend, state, config))
    return Trajectory(np.array([float(v) for v in losses]), backend.canonical(state), moments)


def global_norm(grads: Params) -> float:
    """The L2 norm of all gradients together (what clipping compares with ``clip``)."""
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads.values())))


def gradient_norms(config: Config, params: Params, batches: Sequence[tuple[np.ndarray, np.ndarray]]
                   ) -> np.ndarray:
    """The global gradient norm before clipping at every step of the NumPy reference's trajectory."""
    backend = backend_for("numpy")
    state = backend.init(_cast(params, np.float32), config)
    norms = []
    for step, chunk in enumerate(as_chunks(batches)):
        norms.append(global_norm(np_sequence.loss_and_grads(state.params, chunk.x, chunk.y, cell=config.cell,
                                                            last_only=True)[1]))
        state, _, _ = backend.train_step(state, chunk, None, step)
    return np.array(norms)


# torch's Adam eps (every framework's), and how far two float32 frameworks' gradients of one entry stray, as a
# fraction of the terms it sums (the LSTM's worst seen: torch against NumPy, 3e-6)
ADAM_EPS = 1e-8
FLOAT32_GRADIENT_ERROR = 3e-6


def first_step_spread(config: Config, params: Params, x: np.ndarray, y: np.ndarray) -> float:
    """How far apart float32 frameworks may end up after Adam's first step on one batch (float64 estimate).

    Adam's first step moves a weight by ``lr * g / (|g| + eps)``, with ``g`` the clipped gradient plus
    ``weight_decay * w``. Where ``g`` nearly cancels, that step turns the rounding of ``g`` (``delta``)
    into ``lr * eps * delta / (|g| + eps)^2``: an entry with ``|g|`` a few eps moves by a fraction of lr
    that float32 rounding decides, and all later steps keep the difference. This is the worst such
    spread over every weight.
    """
    own = _cast(_cast(params, np.float32), np.float64)  # the float32 weights every framework starts from
    _, grads, _ = np_sequence.loss_and_grads(own, x, y, cell=config.cell, last_only=True)
    coef = min(1.0, config.clip / (global_norm(grads) + tolerances.CLIP_EPS)) if config.clip > 0 else 1.0
    worst = 0.0
    for name, grad in grads.items():
        terms = np.abs(coef * grad) + np.abs(config.weight_decay * own[name])
        g = coef * grad + config.weight_decay * own[name]
        spread = config.lr * ADAM_EPS * FLOAT32_GRADIENT_ERROR * terms / (np.abs(g) + ADAM_EPS) ** 2
        worst = max(worst, float(np.max(spread)))
    return worst


def trajectory_problem(config: Config, params: Params, steps: int = 20, seed: int = 0
                       ) -> tuple[Config, list[tuple[np.ndarray, np.ndarray]]]:
    """``steps`` random full batches, and ``config`` with a clip value that bites on about half of them.

    The clip is the median gradient norm along the NumPy reference's
    trajectory without clipping (``config``'s other settings, weight decay
    included, which shrinks the norms), so that clipping binds on some steps
    and not on others (``gradient_norms`` tells which).

    Batches whose first Adam step is ill-conditioned (``first_step_spread`` above half the
    trajectory tolerance: some weight's gradient cancels to within a few eps, so float32 rounding
    alone decides where it goes) are drawn again, from the next seed: on them, the weights of two
    correct float32 implementations differ by about the tolerance.
    """
    for attempt in range(20):
        rng = np.random.default_rng([seed, 11] + [attempt] * (attempt > 0))
        batches = [random_batch(config.vocab_size, config.batch_size, config.seq_len, rng) for _ in range(steps)]
        norms = gradient_norms(replace(config, clip=0.0), params, batches)
        chosen = replace(config, clip=float(np.median(norms)))
        if first_step_spread(chosen, params, *batches[0]) <= tolerances.TRAJECTORY / 2:
            return chosen, batches
    raise RuntimeError("no well-conditioned batches in 20 draws; lower the learning rate or the weight decay")


def compare_trajectories(config: Config, runs: dict[str, Trajectory], label: str) -> list[Check]:
    """Checks of the per-step losses and of the final weights (all parameters together), pairwise."""
    pairs = list(combinations(runs, 2))
    check = partial(Check, config.model, cell=config.cell)
    loss = check(f"{label}: loss", tolerances.TRAJECTORY,
                 {pair_label(a, b): max_abs_diff(runs[a].losses, runs[b].losses) for a, b in pairs})
    weights = check(f"{label}: weights", tolerances.TRAJECTORY, {
        pair_label(a, b): max(max_abs_diff(runs[a].params[k], runs[b].params[k]) for k in runs[a].params)
        for a, b in pairs})
    for a, b in pairs:
        if weights.diffs[pair_label(a, b)] > weights.tolerance:
            why = explain_weights(config, runs[a], runs[b], (a, b))
            if why:
                weights.explained[pair_label(a, b)] = why
    return [loss, weights]


def recovered_gradients(moments: list[Params], beta1: float) -> list[Params]:
    """The gradient Adam took at each step, from its first moments: ``g_t = (m_t - beta1 m_{t-1}) / (1 - beta1)``
    (float64 arithmetic on the float32 moments; exact where ``m_{t-1}`` is 0)."""
    previous = [{k: np.zeros_like(v) for k, v in moments[0].items()}, *moments[:-1]]
    return [{k: (np.asarray(m[k], np.float64) - beta1 * np.asarray(p[k], np.float64)) / (1 - beta1) for k in m}
            for m, p in zip(moments, previous, strict=True)]


def explain_weights(config: Config, a: Trajectory, b: Trajectory, names: tuple[str, str] = ("a", "b")
                    ) -> str | None:
    """Why two trajectories' weights differ by more than the tolerance, when the cause is Adam amplifying a
    gradient present on one side only; None when the trajectories do not show that cause.

    Each step's gradient is recovered from the optimizer's first moment. The two sides' gradients must agree
    within ``GRADIENT_DRIFT`` (relative to each parameter's largest entry) for at least one step and then part at
    one step t with the losses up to t still within float32's logits tolerance, and at t some entry's gradient
    must be zero on one side (Adam's moment moved only by its own rounding) and above float32's gradient
    tolerance on the other: a ReLU whose input lies within rounding of its kink at one position, on in one
    implementation and off in the other (the weights having drifted apart by rounding), or an entry only that
    position reaches. Adam scales each entry's step by that entry's own gradient history, so such an entry, with
    little or none, moves by up to lr a step on one side and not the other. A sign flipped in a gradient parts
    the sides at the first step, a state not passed back changes the loss where it parts them: neither is
    explained.
    """
    if not a.moments or len(a.moments) != len(b.moments):
        return None
    beta1 = get_optimizer(config.optimizer).hyper["betas"][0]
    grads = [recovered_gradients(t.moments, beta1) for t in (a, b)]
    for step, (ga, gb) in enumerate(zip(*grads, strict=True)):
        if all(relative_diff(ga[k], gb[k]) <= tolerances.GRADIENT_DRIFT for k in ga):
            continue
        if step == 0 or max_abs_diff(a.losses[:step + 1], b.losses[:step + 1]) > tolerances.LOGITS[np.float32]:
            return None  # parted at once (the same weights), or the forward parted too: not a kink
        noise = {k: tolerances.GRADIENTS[np.float32] * max(np.abs(ga[k]).max(), np.abs(gb[k]).max(), tolerances.TINY)
                 for k in ga}
        kink = one_sided_gradient(step, a.moments, b.moments, grads, noise, beta1)
        if kink is None:
            return None
        name, index = kink
        worst = max(a.params, key=lambda k: np.abs(a.params[k] - b.params[k]).max())
        gap = np.abs(a.params[worst] - b.params[worst])
        spot = [int(i) for i in np.unravel_index(np.argmax(gap), gap.shape)]
        over = sum(int((np.abs(a.params[k] - b.params[k]) > tolerances.TRAJECTORY).sum()) for k in a.params)
        return (f"the gradients agree for {step} steps and part at step {step}, where {name}{list(index)} is "
                f"{ga[name][index]:.3g} in {names[0]} and {gb[name][index]:.3g} in {names[1]} (a ReLU at its kink "
                f"on one side only); Adam's per-entry scaling makes that up to lr a step: {over} weight entries "
                f"over {tolerances.TRAJECTORY:g}, the worst {worst}{spot} {gap.max():.3g}")
    return None


def one_sided_gradient(step: int, moments_a: list[Params], moments_b: list[Params], grads: list[list[Params]],
                       noise: dict[str, float], beta1: float) -> tuple[str, tuple[int, ...]] | None:
    """An entry whose gradient at ``step`` is zero on one side (its first moment moved by no more than the
    rounding of Adam's update, ``ADAM_ROUNDING`` of itself) and over ``noise`` on the other; the largest such."""
    best, where = 0.0, None
    for name in grads[0][step]:
        for side, moments in ((0, moments_a), (1, moments_b)):
            previous = np.asarray(moments[step - 1][name], np.float64)
            moved = np.asarray(moments[step][name], np.float64) - beta1 * previous
            zero = np.abs(moved) <= tolerances.ADAM_ROUNDING * np.abs(previous)
            other = np.abs(grads[1 - side][step][name])
            candidates = np.where(zero & (other > noise[name]), other, 0.0)
            if candidates.max() > best:
                best = float(candidates.max())
                where = (name, tuple(int(i) for i in np.unravel_index(np.argmax(candidates), candidates.shape)))
    return where


def trajectory_checks(config: Config, params: Params, batches: Sequence[tuple[np.ndarray, np.ndarray]],
                      frameworks: Sequence[str] = FRAMEWORKS, device: str = "cpu") -> list[Check]:
    """Train every framework from ``params`` on ``batches`` and compare losses and final weights."""
    runs = {fw: trajectory(fw, config, params, batches, device) for fw in frameworks}
    clipped = int(np.sum(gradient_norms(config, params, batches) > config.clip)) if config.clip > 0 else 0
    label = f"{len(batches)} {config.optimizer} steps, lr {config.lr:g}"
    if config.weight_decay:
        label += f", wd {config.weight_decay:g}"
    label += f", clip {config.clip:.3g} ({clipped} clipped)"
    label += f", first-step spread {first_step_spread(config, params, *batches[0]):.1e}"
    return compare_trajectories(config, runs, label)


# -- everything, for the table -----------------------------------------------------------------------------

def all_checks(model: str, vocab_size: int, hidden_size: int, embed_dim: int, seq_len: int, batch_size: int,
               seed: int = 0, steps: int = 20, lr: float = 1e-3, weight_decay: float = 1e-2,
               dropout: float = 0.3, cell: str = "rnn", device: str = "cpu", **training) -> list[Check]:
    """Every comparison ``python -m wordrnn.bench.parity`` reports, for one model and cell.

    Logits and gradients in float32 and float64, without and with fixed
    dropout masks (rate ``dropout``); then ``steps`` Adam steps with clipping,
    without and with ``weight_decay``. ``training``: more settings (``layers``, ``ar``, ``tar``).
    """
    use_device(device)
    problem = random_problem(model, vocab_size, hidden_size, embed_dim, seq_len, batch_size, seed, dropout, cell,
                             **training)
    config, params, x, y, masks = problem.config, problem.params, problem.x, problem.y, problem.masks
    checks = []
    for dtype in (np.float32, np.float64):
        checks += pass_checks(config, params, x, y, None, dtype, device=device)
    for dtype in (np.float32, np.float64):
        checks += pass_checks(config, params, x, y, masks, dtype, label=f"dropout masks p={dropout:g}",
                              per_parameter=False, device=device)
    for decay in (0.0, weight_decay):
        variant = replace(config, lr=lr, weight_decay=decay)
        train_config, batches = trajectory_problem(variant, params, steps, seed)
        checks += trajectory_checks(train_config, params, batches, device=device)
    return checks

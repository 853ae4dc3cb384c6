"""The JAX backend of the one training loop: optax optimizer, one jitted data-parallel step.

The step, ``train_step``, one for both contexts (a batch of windows is a chunk
scored at its last position), is a module-level pure function of pytrees: the NNX
module is split once into its graph definition and parameter ``State``
(``nnx.split``) and merged back inside the jitted function, which is cheaper a
step than ``nnx.jit`` (docs/PERFORMANCE.md). Parameters and optimizer state are
donated, so XLA updates them in place. The optimizer is an ``optax.named_chain``
built from ``JAX_OPTIMIZERS``; its state is found by the optimizer's name.
Dropout masks come in as arrays drawn by ``wordrnn.core.dropout.step_masks``.

``--precision bfloat16``: the parameters stay float32 (the master weights the optimizer updates); inside the
loss function they, the incoming state and the masks are cast to bfloat16 (``COMPUTE_DTYPES``), so every product
and activation is bfloat16, and the logits are cast back to float32 before the softmax and the cross-entropy. The
gradient flows back through the casts to the float32 weights; the state leaves each chunk as float32.
``jaxmodels.model.PRECISION`` (HIGHEST) asks XLA for full float32 products; with bfloat16 operands there is
nothing finer to ask for (a bfloat16 product is exact in the float32 accumulator), so it changes nothing there.

The output layer and its cross-entropy run a block of rows at a time (``jaxmodels.output``, ``fused``) where
``wordrnn.core.fused_output.runs_fused`` says so and the run has one device: float32 on the CPU, from 2^19
logits a chunk up, 1.2-1.4x the logits path's steps at the large size (docs/PERFORMANCE.md). Otherwise, and
always under bfloat16, the logits and optax's cross-entropy.

Data parallelism: a one-axis mesh (``devices.data_mesh``); each batch is split
along it, parameters and optimizer state are replicated, and XLA inserts the
gradient all-reduce. Every chunk is padded to one number of rows (a multiple of
the device count, at least ``batch_size``) whose targets weigh 0, so the loss is
the mean over the real targets and the step compiles once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from data.streams import Chunk
from jaxmodels import devices as devs
from jaxmodels.model import Masks, build_nnx_model, chunk_loss, to_canonical
from jaxmodels.output import fused_chunk_loss
from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config
from wordrnn.core.dropout import BATCH_MASKS, MASKS, has_dropout, step_masks
from wordrnn.core.fused_output import runs_fused
from wordrnn.core.optimizers import NOT_STARTED, Optimizer, get_optimizer
from wordrnn.core.params import Params
from wordrnn.core.tolerances import CLIP_EPS


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
    """``g <- g * min(1, max_norm / (||g|| + 1e-6))``: torch's ``clip_grad_norm_``.

    ``optax.clip_by_global_norm`` rescales by ``max_norm / ||g||`` only when the
    norm exceeds ``max_norm``; torch always multiplies by the clamped factor,
    epsilon included. The norm is computed as torch computes it: the 2-norm of
    the per-tensor 2-norms.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norms = [jnp.linalg.norm(g.ravel()) for g in jax.tree.leaves(updates)]
        total = jnp.linalg.norm(jnp.stack(norms))
        factor = jnp.minimum(1.0, max_norm / (total + CLIP_EPS))
        return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

    return optax.GradientTransformation(init_fn, update_fn)


@dataclass(frozen=True)
class JaxOptimizer:
    """A registry optimizer in optax: its stages (weight decay included), and where its state lives.

    The stage that keeps state is named after the optimizer in the ``optax.named_chain``, so the
    backend finds it by name; ``slots`` maps each registry slot to that state's field, ``step`` names
    the field counting steps, ``counters`` the fields of its other counters. ``after_step``, if any, updates
    that state from the new weights once the step is applied (NT-ASGD's mean of the iterates).
    """

    stages: Callable[[Optimizer, Config], list[tuple[str, optax.GradientTransformation]]]
    slots: dict[str, str]
    step: str | None
    counters: dict[str, str] = field(default_factory=dict)
    after_step: Callable[[Any, nnx.State], Any] | None = None


def l2_decay(config: Config) -> list[tuple[str, optax.GradientTransformation]]:
    """``--weight-decay`` as torch's ``Adam``/``SGD`` apply it: ``wd * p`` added to the clipped gradient."""
    return [("weight_decay", optax.add_decayed_weights(config.weight_decay))] if config.weight_decay > 0 else []


def adam_stages(spec: Optimizer, config: Config) -> list[tuple[str, optax.GradientTransformation]]:
    """The L2 term, then torch's Adam: eps added after the square root (``eps_root=0``)."""
    b1, b2 = spec.hyper["betas"]
    return [*l2_decay(config), (spec.name, optax.scale_by_adam(b1=b1, b2=b2, eps=spec.hyper["eps"], eps_root=0.0))]


def adamw_stages(spec: Optimizer, config: Config) -> list[tuple[str, optax.GradientTransformation]]:
    """torch's AdamW: Adam's step on the clipped gradient, then ``wd * p`` added to it (decoupled decay:
    the learning rate stage makes it ``p <- p - lr * (adam + wd * p)``)."""
    b1, b2 = spec.hyper["betas"]
    adam = optax.scale_by_adam(b1=b1, b2=b2, eps=spec.hyper["eps"], eps_root=0.0)
    decay = [("weight_decay", optax.add_decayed_weights(config.weight_decay))] if config.weight_decay > 0 else []
    return [(spec.name, adam), *decay]


class AverageState(NamedTuple):
    """NT-ASGD's state: steps taken, the step count when averaging began (``NOT_STARTED``: not yet), and the mean
    of the weights after each step since then (zeros before)."""

    count: jax.Array
    t0: jax.Array
    ax: Any


def iterate_average() -> optax.GradientTransformation:
    """The stage that holds NT-ASGD's ``AverageState`` in the chain; the updates pass through it unchanged (plain
    SGD). The mean is of the weights after the step, which the chain never sees: ``average_iterates`` updates it
    once ``train_step`` has applied the step."""

    def init_fn(params):
        return AverageState(jnp.zeros([], jnp.int32), jnp.full([], NOT_STARTED, jnp.int32),
                            jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


def average_iterates(state: AverageState, params: nnx.State) -> AverageState:
    """One step counted; once averaging has begun, ``ax <- ax + (p - ax) * (1 / (count - t0))`` (torch's ASGD
    form; the first averaged step copies ``p``, since ``ax`` is zero until then). Before, ``ax`` is not touched
    (``lax.cond`` runs one branch)."""
    count = state.count + 1

    def averaged(ax):
        mu = 1.0 / (count - state.t0).astype(jnp.float32)
        return jax.tree.map(lambda a, p: a + (p - a) * mu.astype(p.dtype), ax, params)

    ax = jax.lax.cond(state.t0 != NOT_STARTED, averaged, lambda ax: ax, state.ax)
    return AverageState(count, state.t0, ax)


def ntasgd_stages(spec: Optimizer, config: Config) -> list[tuple[str, optax.GradientTransformation]]:
    """SGD (the L2 term, then the learning rate stage the chain ends with), its iterates averaged after the step."""
    return [*l2_decay(config), (spec.name, iterate_average())]


# One entry per optimizer of ``wordrnn.core.optimizers``.
JAX_OPTIMIZERS = {
    "adam": JaxOptimizer(adam_stages, {"m": "mu", "v": "nu"}, "count"),
    "sgd": JaxOptimizer(lambda spec, config: l2_decay(config), {}, None),
    "adamw": JaxOptimizer(adamw_stages, {"m": "mu", "v": "nu"}, "count"),
    "ntasgd": JaxOptimizer(ntasgd_stages, {"ax": "ax"}, "count", {"t0": "t0"}, average_iterates),
}


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Clip, then the optimizer's stages, then the learning rate: torch's order and formulas, as one
    ``optax.named_chain`` (the optimizer's state is ``opt_state[config.optimizer]``)."""
    spec = get_optimizer(config.optimizer)
    stages = [("clip", clip_by_global_norm_torch(config.clip))] if config.clip > 0 else []
    stages += JAX_OPTIMIZERS[spec.name].stages(spec, config)
    stages.append(("learning_rate", optax.scale_by_learning_rate(config.lr)))
    return optax.named_chain(*stages)


# Variable-length BPTT: a chunk is padded to a multiple of this many positions (weight 0), so that the ~50 lengths
# AWD-LSTM's draw gives compile ~7 steps, not one each (docs/PERFORMANCE.md, "Variable-length BPTT in JAX").
LENGTH_BUCKET = 8


def bucketed_length(length: int) -> int:
    """The positions a chunk of ``length`` tokens is padded to: the next multiple of ``LENGTH_BUCKET``."""
    return _round_up(length, LENGTH_BUCKET)


def state_after(model: Any, x: jax.Array, carry: tuple, reset: jax.Array | None, masks: Masks | None,
                length: jax.Array) -> tuple:
    """The state after the first ``length`` positions of a padded chunk ``x`` [B, Tb] (Tb a multiple of
    ``LENGTH_BUCKET``, ``length`` more than Tb - ``LENGTH_BUCKET``): the model reads the positions before the last
    bucket at once, then the last bucket's one at a time, keeping the state where a position is padding. (The
    padding changes no loss and no gradient: it comes after every real position and weighs 0. Only the state
    that the next chunk reads would pass through it.)"""
    head = x.shape[1] - LENGTH_BUCKET
    state = carry
    if head:
        _, state = model(x[:, :head], carry, None if reset is None else reset[:, :head], masks, last_only=True)

    def one(state, at):
        x_t = jax.lax.dynamic_slice_in_dim(x, at, 1, axis=1)
        reset_t = None if reset is None else jax.lax.dynamic_slice_in_dim(reset, at, 1, axis=1)
        _, after = model(x_t, state, reset_t, masks, last_only=True)
        return tuple(jnp.where(at < length, a, s) for a, s in zip(after, state, strict=True)), None

    state, _ = jax.lax.scan(one, state, head + jnp.arange(LENGTH_BUCKET))
    return state


# the dtype of the products and activations of each ``--precision`` (None: the parameters' own, float32)
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def in_compute_dtype(tree: Any, dtype: Any) -> Any:
    """Every floating array of ``tree`` (parameters, state, masks) as ``dtype``; the tree as it is for None."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def model_logits(graphdef: Any, params: nnx.State, x: jax.Array, carry: tuple, reset: jax.Array | None,
                 masks: Masks | None, last_only: bool, compute_dtype: Any = None, unroll: int = 1,
                 return_hidden: bool = False, readout: bool = True) -> tuple[jax.Array | None, ...]:
    """The model's float32 logits (None without ``readout``) and state after ``x`` (with ``return_hidden``, also
    the last layer's output), its products and activations in ``compute_dtype``."""
    model = nnx.merge(graphdef, in_compute_dtype(params, compute_dtype))
    logits, final, *hidden = model(x, in_compute_dtype(carry, compute_dtype), reset,
                                   in_compute_dtype(masks, compute_dtype), last_only=last_only, unroll=unroll,
                                   return_hidden=return_hidden, readout=readout)
    out = (None if logits is None else logits.astype(jnp.float32), tuple(s.astype(jnp.float32) for s in final))
    return (*out, hidden[0].astype(jnp.float32)) if return_hidden else out


def train_step(graphdef: Any, tx: optax.GradientTransformation, params: nnx.State, opt_state: optax.OptState,
               x: jax.Array, y: jax.Array, weights: jax.Array, reset: jax.Array | None, carry: tuple,
               masks: Masks | None, lr_scale: jax.Array | None = None, length: jax.Array | None = None,
               last_only: bool = False, scaled: bool = False, padded: bool = False, optimizer: str = "",
               after_step: Callable[[Any, nnx.State], Any] | None = None, ar: float = 0.0, tar: float = 0.0,
               compute_dtype: Any = None, fused: bool = False
               ) -> tuple[nnx.State, optax.OptState, jax.Array, tuple]:
    """One optimizer step on a chunk, either context: the weighted mean cross-entropy of the model ``graphdef`` +
    ``params``, its gradient, and ``tx``'s update. Pure: new parameters, new optimizer state, the loss and the
    state after the chunk come back.

    With ``scaled`` (variable-length BPTT) the update is multiplied by ``lr_scale`` (a float32 scalar,
    ``Config.lr_scale``: the learning rate is the chain's last stage, so this scales it); with ``padded`` the
    chunk's positions from ``length`` on are padding (``state_after``). ``after_step`` updates the state of the
    chain's stage ``optimizer`` from the new weights (``JaxOptimizer.after_step``).

    ``x`` int [B, T]; ``y`` and ``weights`` [B, T], or [B] with ``last_only`` (a batch of windows: the head reads
    the last position); weight 0 for no target or a padding row. ``reset`` bool [B, T] or None, ``carry`` the
    state in ((h,) or (h, c), [B, L*H] each); the gradient stops at it (truncated BPTT). ``masks`` the step's
    dropout masks (``wordrnn.core.dropout``) or None; ``ar``/``tar`` the activation penalties' weights
    (``jaxmodels.model.chunk_loss``). ``compute_dtype``: that of the products and activations
    (``COMPUTE_DTYPES``); the loss is float32 either way. With ``fused`` the output layer and the cross-entropy
    run a block of rows at a time (``jaxmodels.output``), the same loss without a [B*T, V] array.
    """

    def loss_of(p):
        penalized = bool(ar or tar)
        logits, final, *hidden = model_logits(graphdef, p, x, carry, reset, masks, last_only, compute_dtype,
                                              return_hidden=penalized or fused, readout=not fused)
        if fused:
            loss = fused_chunk_loss(nnx.merge(graphdef, p).arrays(), hidden[0], y, weights, reset, masks, last_only,
                                    ar, tar)
        else:
            loss = chunk_loss(logits, hidden[0] if penalized else None, y, weights, reset, masks, last_only, ar, tar)
        return loss, final

    (loss, final), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    if padded:
        final = state_after(nnx.merge(graphdef, params), x, carry, reset, masks, length)
    updates, opt_state = tx.update(grads, opt_state, params)
    if scaled:
        updates = jax.tree.map(lambda u: u * lr_scale.astype(u.dtype), updates)
    params = optax.apply_updates(params, updates)
    if after_step is not None:
        opt_state = opt_state.copy()  # named_chain's OrderedDict
        opt_state[optimizer] = after_step(opt_state[optimizer], params)
    return params, opt_state, loss, final


@dataclass
class Program:
    """What one configuration compiles: the graph definition, the optimizer, the jitted functions, each for a
    head that reads every position (False) and one that reads the last only (True)."""

    config: Config
    graphdef: Any
    tx: optax.GradientTransformation
    # jitted (params, opt_state, x, y, weights, reset, carry, masks) -> (..., loss, carry), by (last_only, fused)
    step: dict[tuple[bool, bool], Any]
    forward: dict[bool, Any]  # jitted (params, x, carry) -> (logits, carry)


class JaxState(NamedTuple):
    params: nnx.State  # the module's parameters, replicated over the mesh
    opt_state: optax.OptState
    program: Program


# x, y, weights, reset, masks, lr scale, length
STEP_SHARDING = ("data", "data", "data", "data", "masks", "replicated", "replicated")
FORWARD_UNROLL = 8  # recurrence steps unrolled in the forward-only program (the benchmark window is 5)


def _global_array(host: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A global array from the same host array on every process (each supplies its own shards)."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _padded_masks(masks: Masks | None, rows: int) -> Masks | None:
    """A step's masks with the batch masks padded to ``rows`` (padding rows have weight 0: their masks are never
    seen); the weight-drop mask is per weight, not per row, and goes in as it is."""
    if masks is None:
        return None
    return {k: m if m is None or k not in BATCH_MASKS else _pad_rows(m, rows) for k, m in masks.items()}


def _pad(a: np.ndarray, rows: int, positions: int) -> np.ndarray:
    """``a`` [B, T] or [B] padded with zeros to ``rows`` rows and, where it has positions, ``positions`` of them."""
    a = _pad_rows(a, rows)
    if a.ndim < 2 or a.shape[1] == positions:
        return a
    return np.concatenate([a, np.zeros((rows, positions - a.shape[1], *a.shape[2:]), a.dtype)], axis=1)


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    if len(a) == rows:
        return a
    return np.concatenate([a, np.zeros((rows - len(a), *a.shape[1:]), a.dtype)])


class JaxBackend:
    """``wordrnn.core.backend.Backend`` for Flax NNX, data-parallel over ``devices`` (default: the first device)."""

    framework = "jax"

    def __init__(self, devices: list | None = None):
        self.devices = list(devices) if devices else jax.local_devices()[:1]
        self.mesh = devs.data_mesh(self.devices)
        self.batch_sharding = devs.batch_sharding(self.mesh)
        self.replicated = devs.replicated(self.mesh)
        self.dtype = jnp.float32
        # in a multi-process run every process trains the same replicated model; only process 0
        # should write the run folder (the loop may look at this; 0 in a single-process run)
        self.process_index = jax.process_index()
        self._programs: dict[tuple, Program] = {}
        self._zeros: dict[tuple[int, int, int], tuple] = {}

    # -- building ---------------------------------------------------------------------------------

    def _program(self, config: Config, graphdef: Any) -> Program:
        # everything the compiled functions depend on (not the epoch count, patience or extra)
        key = tuple((k, v) for k, v in sorted(config.to_dict().items()) if k not in ("epochs", "patience", "extra"))
        if key not in self._programs:
            self._programs[key] = self._compile(config, graphdef)
        return self._programs[key]

    def _compile(self, config: Config, graphdef: Any) -> Program:
        if config.precision == "bfloat16":
            devs.check_bfloat16(self.devices[0])
        compute_dtype = COMPUTE_DTYPES[config.precision]
        tx = make_optimizer(config)
        rep, data = self.replicated, self.batch_sharding
        # the batch masks are cut with the batch, the weight-drop mask (one per step) is on every device
        masks = {k: data if k in BATCH_MASKS else rep for k in MASKS} if has_dropout(config) else data

        def forward(params, x, carry, last_only):
            # no gradient is taken here (evaluation, generation), so a window's short recurrence is unrolled: XLA's
            # loop overhead is a large part of a batch-1 step on the CPU (docs/PERFORMANCE.md)
            unroll = min(x.shape[1], FORWARD_UNROLL) if last_only else 1
            return model_logits(graphdef, params, x, carry, None, None, last_only, compute_dtype, unroll)

        return Program(
            config=config,
            graphdef=graphdef,
            tx=tx,
            step={(last, fused): jax.jit(partial(train_step, graphdef, tx, last_only=last, scaled=config.bptt_jitter,
                                        padded=config.bptt_jitter, optimizer=config.optimizer,
                                        after_step=JAX_OPTIMIZERS[config.optimizer].after_step, ar=config.ar,
                                        tar=config.tar, compute_dtype=compute_dtype, fused=fused),
                                     donate_argnums=(0, 1),
                                     in_shardings=(rep, rep, data, data, data, data, data, masks, rep, rep),
                                     out_shardings=(rep, rep, rep, data))
                  for last in (False, True) for fused in (False, True)},
            # the logits replicated, so every process of a multi-process run can read them (evaluation)
            forward={last: jax.jit(partial(forward, last_only=last), in_shardings=(rep, data, data),
                                   out_shardings=(rep, data)) for last in (False, True)},
        )

    def _put(self, tree: Any, sharding: Any) -> Any:
        """Host arrays -> global arrays with one ``sharding`` (weights and optimizer state, once)."""
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)
        return jax.tree.map(lambda a: _global_array(np.asarray(a), sharding), tree)

    def _feed(self, arrays: tuple, kinds: tuple[str, ...]) -> tuple:
        """A step's host arrays (or pytrees of them) as the jitted functions take them (``kinds``: "data",
        "replicated", or "masks": a dict of dropout masks, each placed as ``_compile`` places it).

        With one process they go in as they are: jit's dispatch copies them to their
        ``in_shardings`` in C++, cheaper on the CPU than a ``jax.device_put`` of the same
        arrays first (docs/PERFORMANCE.md). With several processes every
        process holds the same host batch and contributes the shards on its own devices.
        """
        if jax.process_count() == 1:
            return arrays
        shardings = {"data": self.batch_sharding, "replicated": self.replicated}

        def place(a: Any, kind: str) -> Any:
            if kind == "masks" and a is not None:
                return {k: place(m, "data" if k in BATCH_MASKS else "replicated") for k, m in a.items()}
            return jax.tree.map(lambda leaf: _global_array(leaf, shardings[kind]), a)

        return tuple(place(a, k) for a, k in zip(arrays, kinds, strict=True))

    # -- the Backend protocol ---------------------------------------------------------------------

    def init(self, params: Params, config: Config) -> JaxState:
        module = build_nnx_model(config, params, self.dtype)
        graphdef, state = nnx.split(module, nnx.Param)
        program = self._program(config, graphdef)
        opt_state = program.tx.init(state)
        return JaxState(self._put(state, self.replicated), self._put(opt_state, self.replicated), program)

    def padded_batch(self, batch: int, config: Config) -> int:
        """Rows a batch of ``batch`` windows is padded to: the full batch size, split evenly over the devices."""
        return _round_up(max(batch, config.batch_size), len(self.devices))

    def train_step(self, state: JaxState, chunk: Chunk, carry: tuple | None, step: int
                   ) -> tuple[JaxState, jax.Array, tuple]:
        program = state.program
        config = program.config
        rows = self.padded_batch(len(chunk.x), config)  # padding rows have weight 0 everywhere
        if carry is None:
            carry = self._zero_carry(config, rows)
        masks = _padded_masks(step_masks(config, step, chunk.x), rows)
        length = chunk.x.shape[1]
        # variable-length chunks padded to a few lengths (``state_after``), fixed ones as they are
        positions = bucketed_length(length) if config.bptt_jitter else length
        reset = None if chunk.reset is None else _pad(np.asarray(chunk.reset, bool), rows, positions)
        batch = (
            _pad(np.asarray(chunk.x, np.int32), rows, positions),
            _pad(np.asarray(chunk.y, np.int32), rows, positions),
            _pad(np.asarray(chunk.weights, np.float32), rows, positions),
            reset,
            masks,
            np.array(config.lr_scale(length), np.float32),
            np.array(length, np.int32),
        )
        x, y, weights, reset, masks, lr_scale, length = self._feed(batch, STEP_SHARDING)
        step_fn = program.step[chunk.last_only, self.fused_output(config, rows * positions)]
        params, opt_state, loss, carry = step_fn(state.params, state.opt_state, x, y, weights, reset, carry, masks,
                                                 lr_scale, length)
        return JaxState(params, opt_state, program), loss, carry

    def fused_output(self, config: Config, positions: int) -> bool:
        """Whether the training step runs the output layer and its cross-entropy of ``positions`` positions a
        block of rows at a time (``jaxmodels.output``), by ``wordrnn.core.fused_output.runs_fused``, on one
        device (the blocks would cut across a batch sharded over several); otherwise the logits."""
        return len(self.devices) == 1 and runs_fused(config.precision, self.devices[0].platform,
                                                     positions * config.vocab_size)

    def logits(self, state: JaxState, x: np.ndarray, carry: tuple | None = None, last_only: bool = False
               ) -> tuple[np.ndarray, tuple]:
        # padded to a power of two (and a multiple of the device count): few shapes, few compilations
        n = len(x)
        rows = _round_up(1 << max(n - 1, 0).bit_length(), len(self.devices))
        if carry is None:
            carry = self._zero_carry(state.program.config, rows)
        (x_in,) = self._feed((_pad_rows(np.asarray(x, np.int32), rows),), ("data",))
        logits, carry = state.program.forward[last_only](state.params, x_in, carry)
        return np.array(np.asarray(logits)[:n], dtype=np.float32), carry

    def _zero_carry(self, config: Config, rows: int) -> tuple:
        """A zero state placed as the step returns its carry (sharded over the streams): a host array would
        be another input type, and the step would compile twice (docs/PERFORMANCE.md). One per row count:
        nothing donates it."""
        states = len(get_cell(config.cell).states)
        key = (rows, config.state_size, states)
        if key not in self._zeros:
            self._zeros[key] = self._put((np.zeros(key[:2], np.float32),) * states,
                                         self.batch_sharding)
        return self._zeros[key]

    def canonical(self, state: JaxState) -> Params:
        return to_canonical(nnx.merge(state.program.graphdef, state.params))

    def optimizer_arrays(self, state: JaxState) -> dict[str, np.ndarray]:
        """The optimizer's step count and slots under the registry's names (found by stage name)."""
        spec = get_optimizer(state.program.config.optimizer)
        entry = JAX_OPTIMIZERS[spec.name]
        if not (entry.slots or entry.step):
            return {}
        own = state.opt_state[spec.name]
        arrays = {spec.step_name: np.array(getattr(own, entry.step), dtype=np.int64)} if entry.step else {}
        for counter, attr in entry.counters.items():
            arrays[spec.counter_name(counter)] = np.array(getattr(own, attr), dtype=np.int64)
        for slot, attr in entry.slots.items():
            for name, value in to_canonical(nnx.merge(state.program.graphdef, getattr(own, attr))).items():
                arrays[spec.slot_name(slot, name)] = value
        return arrays

    def load_optimizer_arrays(self, state: JaxState, arrays: dict[str, np.ndarray]) -> JaxState:
        config = state.program.config
        spec = get_optimizer(config.optimizer)
        entry = JAX_OPTIMIZERS[spec.name]
        if not (entry.slots or entry.step):
            return state
        canonical = self.canonical(state)  # the arrays were checked by the loop (check_optimizer_arrays)

        def slot_tree(slot: str) -> nnx.State:
            values = {name: arrays[spec.slot_name(slot, name)] for name in canonical}
            return nnx.split(build_nnx_model(config, values, self.dtype), nnx.Param)[1]

        own = state.opt_state[spec.name]
        fields = {attr: slot_tree(slot) for slot, attr in entry.slots.items()}
        if entry.step:
            # a scalar may come back from a checkpoint as shape (1,) (np.ascontiguousarray makes 0-d arrays 1-d)
            count = np.asarray(arrays[spec.step_name]).reshape(())
            fields[entry.step] = jnp.asarray(count, getattr(own, entry.step).dtype)
        for counter, attr in entry.counters.items():
            fields[attr] = jnp.asarray(np.asarray(arrays[spec.counter_name(counter)]).reshape(()),
                                       getattr(own, attr).dtype)
        opt_state = state.opt_state.copy()  # named_chain's OrderedDict: another container type would recompile
        opt_state[spec.name] = own._replace(**fields)
        return JaxState(state.params, self._put(opt_state, self.replicated), state.program)

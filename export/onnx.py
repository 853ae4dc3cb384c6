"""``python -m export.onnx``: a run folder -> one self-contained, checked ``.onnx`` file.

The graph is written from the run's canonical weights (``export.graph``), so a
run trained by NumPy, PyTorch or Flax exports the same way; ``--from jax``
traces the Flax model with jax2onnx instead (``export.jax_graph``). Before
anything is written the model must pass ``onnx.checker`` (full check, with
shape inference) and onnxruntime's logits must match the source model's
(PyTorch, or the NumPy reference where torch is not installed) within
docs/DESIGN.md's 1e-5 on random batches of several shapes; otherwise nothing is
written and the command exits 1 (``RunFailed``). A poem model (``"context":
"poem"`` in the run's config.json: the context is the run's, never a flag) is
checked against the float64 NumPy reference of the carried state
(``scratch.sequence``) at every position and on its final state, from a zero and
from a random state, whole and fed in two pieces with the state passed back,
within 1e-5 or a small multiple of how far correct float32 computations of the
same state drift from it, whichever is larger (``poem_check``: the state
amplifies rounding on some stretches of some streams). An existing ``--out`` is
replaced only with ``--overwrite``, as the trainers do with run folders.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command("onnx", "onnxruntime")  # a missing library or a Ctrl-C during the imports: one line

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnx.checker  # noqa: E402
import onnx.defs  # noqa: E402

from export.graph import DEFAULT_OPSET, MIN_OPSET, build_ensemble_graph, build_graph  # noqa: E402
from export.metadata import ModelCard, to_props, validation_summary  # noqa: E402
from export.session import OnnxLM, State, open_session  # noqa: E402
from scratch.cache_choice import chosen_cache  # noqa: E402
from wordrnn.core import tolerances  # noqa: E402
from wordrnn.core.cache import CacheSetup  # noqa: E402
from wordrnn.core.cells import get_cell  # noqa: E402
from wordrnn.core.config import Config  # noqa: E402
from wordrnn.core.errors import CommandParser, RunFailed, UsageError, cli  # noqa: E402
from wordrnn.core.metrics import average_probabilities, ensemble_window  # noqa: E402
from wordrnn.core.params import Params  # noqa: E402
from wordrnn.core.sampling import LogitsFn  # noqa: E402
from wordrnn.run.cache_flags import add_cache_flags, cache_from_args  # noqa: E402
from wordrnn.run.folder import Run, atomic_write_bytes, check_out_file, load_run, read_metrics  # noqa: E402

TOLERANCE = tolerances.ONNX  # onnxruntime vs the source model's logits, max abs diff
BATCHES = (1, 7)
REFERENCES = ("torch", "numpy")
SOURCES = ("weights", "jax")


def default_reference(config: Config) -> str:
    """PyTorch when it is installed, else the NumPy reference; a poem model: the NumPy reference of the state."""
    if config.layout.carries_state:
        return "numpy"
    return "torch" if importlib.util.find_spec("torch") is not None else "numpy"


def reference_logits(config: Config, params: Params, reference: str) -> tuple[str, LogitsFn]:
    """The source model to check against: its name and ``int64 [B, T] -> float32 [B, V]``."""
    if reference == "torch":
        import torch

        from torchmodels.model import build_module

        module = build_module(config, params).eval()

        def torch_logits(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(x), last_only=True)[0].numpy()

        return "PyTorch", torch_logits
    from scratch.sequence import window_logits

    return "the NumPy reference", lambda x: window_logits(params, x, cell=config.cell)


def ensemble_reference(config: Config, members: list[Params], reference: str) -> tuple[str, LogitsFn]:
    """``reference_logits`` of every member, their probabilities averaged (one member: that model)."""
    references = [reference_logits(config, params, reference) for params in members]
    name = references[0][0] if len(members) == 1 else f"{references[0][0]} (an ensemble of {len(members)})"
    return name, ensemble_window([fn for _, fn in references])


def check_shapes(config: Config) -> list[tuple[int, int]]:
    """(batch, seq) pairs to compare on: batch 1 and 7; one token, three, a full window, and for a poem model
    a training chunk (``bptt``)."""
    lengths = {1, 3, config.seq_len} | ({config.bptt} if config.layout.carries_state else set())
    return [(b, t) for b in BATCHES for t in sorted(lengths)]


def worst_difference(onnx_fn: LogitsFn, reference_fn: LogitsFn, config: Config, seed: int = 0) -> float:
    """Max |logit difference| over random token batches of every shape in ``check_shapes``."""
    rng = np.random.default_rng(seed)
    diffs = []
    for batch, seq in check_shapes(config):
        x = rng.integers(0, config.vocab_size, size=(batch, seq), dtype=np.int64)
        diffs.append(difference(onnx_fn(x), reference_fn(x)))
    return float(np.max(diffs))  # NaN propagates, and fails the check


def difference(got: np.ndarray, want: np.ndarray) -> float:
    """Max |got - want|, infinite where the shapes differ."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want))) if got.shape == want.shape else np.inf


def reference_forward(members: list[Params], config: Config
                      ) -> Callable[[np.ndarray, State], tuple[np.ndarray, State]]:
    """``scratch.sequence.forward`` of a poem model, ``(x, state) -> (logits [B, T, V], state)``; of an
    ensemble, every member from its slice of the state (members side by side), their probabilities averaged."""
    from scratch.sequence import forward

    H = config.state_size  # one member's state: its layers side by side

    def run(x: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        outs = [forward(params, x, config.cell, state=tuple(s[:, k * H:(k + 1) * H] for s in state))
                for k, params in enumerate(members)]
        logits = outs[0][0] if len(members) == 1 else average_probabilities([o[0] for o in outs])
        return logits, tuple(np.concatenate(parts, axis=1) for parts in zip(*(o[1] for o in outs), strict=True))

    return run


@dataclass
class Verdict:
    """The worst of a check's cases by difference over tolerance: that case's difference, its tolerance, and (a
    poem model) the drift of correct float32 computations that set it."""

    difference: float
    tolerance: float
    spread: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.difference <= self.tolerance)  # NaN fails

    @property
    def excess(self) -> float:
        """Difference over tolerance; infinite for NaN, the worst there is."""
        return float(np.nan_to_num(self.difference / self.tolerance, nan=np.inf))


def nudged(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Float32 copies of ``arrays`` with every entry moved one float32 step (one unit in the last place) up or
    down at random: the weights a correct computation that rounded differently once might hold."""
    out = []
    for a in arrays:
        a = np.asarray(a, np.float32)
        out.append(np.nextafter(a, np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(np.float32)))
    return out


@dataclass
class Drift:
    """The models ``drift`` runs: the float64 reference, the float32 reference, and ``DRIFT_SAMPLES`` float32
    models with every weight moved one float32 step at random (drawn once, for every case)."""

    exact: Callable[[np.ndarray, State], tuple[np.ndarray, State]]
    float32: list[Callable[[np.ndarray, State], tuple[np.ndarray, State]]]

    @classmethod
    def of(cls, members: list[Params], config: Config, rng: np.random.Generator) -> Drift:
        wide = [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in members]
        samples = [[dict(zip(p, nudged(list(p.values()), rng), strict=True)) for p in members]
                   for _ in range(tolerances.DRIFT_SAMPLES)]
        return cls(reference_forward(wide, config),
                   [reference_forward(m, config) for m in [members, *samples]])


def drift(models: Drift, x: np.ndarray, start: State, rng: np.random.Generator
          ) -> tuple[tuple[np.ndarray, State], float]:
    """The float64 reference's logits and final state from ``start``, and how far correct float32 computations
    stray from them: the float32 reference from ``start``, and the nudged models each from ``start`` with every
    entry moved one float32 step at random. Where the carried state amplifies rounding, these show it, whether or
    not the float32 reference's own rounding happens to point that way."""
    exact = models.exact(x, tuple(np.asarray(s, np.float64) for s in start))
    reference, *samples = models.float32
    runs = [reference(x, start), *(model(x, tuple(nudged(start, rng))) for model in samples)]
    return exact, max(distance(run, exact) for run in runs)


def distance(got: tuple[np.ndarray, State], want: tuple[np.ndarray, State]) -> float:
    """Max |difference| of the logits and of every state between two ``(logits, state)`` runs."""
    return max([difference(got[0], want[0]), *(difference(g, w) for g, w in zip(got[1], want[1], strict=True))])


def poem_check(lm: OnnxLM, members: list[Params], config: Config, seed: int = 0) -> Verdict:
    """The logits at every position and the final state against the float64 reference of ``scratch.sequence``
    (an ensemble's members averaged), over every shape in ``check_shapes``, from a zero and from a random state,
    whole and in two pieces; each case held to ``max(ONNX, ONNX_DRIFT * spread)`` (``drift``: docs/DESIGN.md's
    error model of a carried state). The case with the largest difference over tolerance is the verdict."""
    rng, rounding = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    models = Drift.of(members, config, rounding)
    worst: Verdict | None = None
    for batch, seq in check_shapes(config):
        x = rng.integers(0, config.vocab_size, size=(batch, seq), dtype=np.int64)
        random_state = tuple(rng.standard_normal(s.shape).astype(np.float32) * 0.5 for s in lm.zero_state(batch))
        for start in (lm.zero_state(batch), random_state):
            exact, spread = drift(models, x, start, rounding)
            tolerance = max(tolerances.ONNX, tolerances.ONNX_DRIFT * spread)
            runs = [lm.run(x, start), *([in_two_pieces(lm, x, start)] if seq > 1 else [])]
            case = Verdict(max(distance(run, exact) for run in runs), tolerance, spread)
            if worst is None or case.excess > worst.excess:
                worst = case
    return worst


def in_two_pieces(lm: OnnxLM, x: np.ndarray, start: State) -> tuple[np.ndarray, State]:
    """The first half of each row from ``start``, then the rest from the state the first half gave back."""
    half = x.shape[1] // 2
    first, middle = lm.run(x[:, :half], start)
    second, end = lm.run(x[:, half:], middle)
    return np.concatenate([first, second], axis=1), end


@dataclass
class Exported:
    """A serialized model that passed onnx.checker, and how far its logits are from the source model's."""

    payload: bytes
    exporter: str
    reference: str
    verdict: Verdict

    @property
    def worst(self) -> float:
        return self.verdict.difference


def graph_builder(source: str, cell: str = "rnn") -> tuple[str, Callable[..., onnx.ModelProto]]:
    """The exporter ``--from`` names for a ``cell`` model: its description and ``build(params, config, opset,
    metadata)``."""
    if source == "weights":
        op = get_cell(cell).onnx_op
        return f"export.graph (onnx.helper, {f'{op} op' if op else 'a Scan of the cell step'})", build_graph
    if importlib.util.find_spec("jax2onnx") is None:
        raise UsageError("--from jax needs jax2onnx (pip install jax2onnx); or use --from weights")
    from export import jax_graph

    return jax_graph.exporter_name(), jax_graph.build_jax_graph


def export_run(run: Run, opset: int = DEFAULT_OPSET, reference: str | None = None,
               source: str = "weights", cache: CacheSetup | None = None) -> Exported:
    """Build, check and compare the ONNX model for ``run`` (with a neural ``cache`` in its metadata, which every
    client applies); does not write anything."""
    exporter, build = graph_builder(source, run.config.cell)
    members = run.member_params
    if len(members) > 1:
        if source != "weights":
            raise UsageError(f"{run.path} holds an ensemble of {len(members)}, which only --from weights writes "
                             "as one graph; use --from weights")
        exporter = f"{exporter}, an ensemble of {len(members)} averaging their probabilities"
        build = functools.partial(_build_ensemble, members)
    card = ModelCard(run.config, run.vocab, {"framework": run.framework, "run": run.path.name,
                                             "exporter": exporter, **validation_summary(read_metrics(run.path))},
                     cache)
    reference = reference or default_reference(run.config)
    stateful = run.config.layout.carries_state
    if stateful and reference != "numpy":
        raise UsageError(f"{run.path} holds a poem model, which is checked against the NumPy reference of the "
                         f"carried state (scratch.sequence); drop --reference {reference} or give numpy")
    if stateful and source != "weights":
        raise UsageError(f"{run.path} holds a poem model: --from {source} traces the window interface only; "
                         "use --from weights")
    model = build(run.params, run.config, opset, metadata=to_props(card))
    onnx.checker.check_model(model, full_check=True)
    payload = model.SerializeToString()
    lm = OnnxLM(open_session(payload, "the exported model"), card, "the exported model")
    if stateful:
        verdict = poem_check(lm, members, run.config)
        return Exported(payload, exporter, "the float64 NumPy reference (scratch.sequence)", verdict)
    name, reference_fn = ensemble_reference(run.config, members, reference)
    verdict = Verdict(worst_difference(lm.logits, reference_fn, run.config), TOLERANCE)
    return Exported(payload, exporter, name, verdict)


def _build_ensemble(members: list[Params], _params: Params, config: Config, opset: int,
                    metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    return build_ensemble_graph(members, config, opset, metadata)


def tolerance_text(verdict: Verdict) -> str:
    """The tolerance and, where the drift set it, how: ``3.2e-05 = 4 x the float32 drift 8e-06``."""
    if verdict.tolerance <= TOLERANCE:
        return f"{verdict.tolerance:g}"
    return (f"{verdict.tolerance:.3g} = {tolerances.ONNX_DRIFT:g} x the drift of correct float32 computations of "
            f"the carried state, {verdict.spread:.3g}")


def human_size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m export.onnx",
        description="Export a run folder (trained by any framework) to one self-contained ONNX file: "
        "input 'tokens' int64 [batch, seq], output 'logits' float32 [batch, V], both axes dynamic, "
        "vocabulary and configuration in the metadata. A poem run (its config.json says context poem) "
        "exports statefully: inputs 'tokens' and 'h0' (and 'c0' for the LSTM) [batch, H], outputs 'logits' "
        "[batch, seq, V] and 'hn' (and 'cn'). The file is written only if onnx.checker "
        f"passes and onnxruntime's logits match the source model's within {TOLERANCE:g} (a poem model: within "
        f"{tolerances.ONNX_DRIFT:g} times the drift of correct float32 computations of its carried state, if "
        "larger; docs/DESIGN.md).",
    )
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder written by a trainer")
    parser.add_argument("--out", default=None, metavar="FILE", help="ONNX file to write (default: DIR/model.onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET} to {onnx.defs.onnx_opset_version()} (default: %(default)s)")
    parser.add_argument("--from", dest="source", choices=SOURCES, default="weights",
                        help="weights: write the graph from the canonical weights (ONNX's RNN, LSTM or GRU op, or a "
                        "Scan of the step of a cell ONNX lacks; default); "
                        "jax: trace jaxmodels.model.apply with jax2onnx (a Loop op; needs jax2onnx)")
    parser.add_argument("--reference", choices=REFERENCES, default=None,
                        help="source model the logits are checked against (default: torch if installed, "
                        "else numpy)")
    add_cache_flags(parser)
    return parser.parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= args.opset <= newest:
        raise UsageError(f"--opset must lie between {MIN_OPSET} and {newest} (this onnx), got {args.opset}")
    run = load_run(args.run)
    out = Path(args.out) if args.out else run.path / "model.onnx"
    check_out_file(out, args.overwrite)
    cache = cache_from_args(args, run, chosen_cache)
    exported = export_run(run, args.opset, args.reference, args.source, cache)
    config = run.config
    layers = f", {config.layers} layers" if config.layers > 1 else ""
    sizes = f"V={config.vocab_size}, H={config.hidden_size}{layers}" + (
        f", E={config.embed_dim}" if config.model == "embedding" else "")
    print(f"{run.path}: {config.model} {config.cell} model trained with {run.framework} ({sizes})")
    print(f"exporter: {exported.exporter}, opset {args.opset}; onnx.checker (full check): passed")
    shapes = ", ".join(f"{b}x{t}" for b, t in check_shapes(config))
    what = ("worst |logit difference|" if not config.layout.carries_state else
            "|difference| of the logits at every position and the final state, from a zero and a random state, "
            "whole and in two pieces, in the case furthest over its tolerance:")
    verdict = exported.verdict
    print(f"{config.context} context; onnxruntime vs {exported.reference} on batch x seq {shapes}: "
          f"{what} {verdict.difference:.3g} (tolerance {tolerance_text(verdict)})")
    if not verdict.passed:
        raise RunFailed(f"the exported model's logits differ from {exported.reference}'s by "
                        f"{verdict.difference:.3g} > {tolerance_text(verdict)}; nothing written")
    atomic_write_bytes(out, exported.payload)
    if cache:
        scoring, writing = cache.scoring, cache.writing
        print(f"neural cache: the last {scoring.size} positions, theta {scoring.theta:g}, lambda {scoring.lam:g}; "
              f"for writing {f'lambda {writing.lam:g}' if writing else 'none'} (generation contract version 4)")
    print(f"wrote {out} ({human_size(len(exported.payload))}, one self-contained file)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

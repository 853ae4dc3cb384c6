"""An exported ``.onnx`` file opened in onnxruntime: the model card, a logits function, and what generation reads.

Imports onnxruntime and NumPy, never torch or jax (docs/DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.metadata import INPUT_NAME, OUTPUT_NAME, ModelCard, TensorSpec, from_props
from wordrnn.core.cells import CELLS
from wordrnn.core.errors import UsageError
from wordrnn.core.sampling import Source, Stateful

State = tuple[np.ndarray, ...]  # a poem model's (h,) or (h, c), each float32 [batch, H]
EXPORT_AGAIN = "export it again with python -m export.onnx"


def graph_name(model: str, cell: str) -> str:
    """The name export gives the graph: it states the model and the cell, which ``load`` holds the metadata to."""
    return f"wordrnn_{model}_{cell}"


class OnnxLM:
    """The language model in one ONNX file.

    ``logits(int64 [B, T]) -> float32 [B, V]`` scores the token after each row, read from a zero state (a
    window model's whole interface). A poem model also runs with its state carried: ``run`` and ``source``.
    """

    def __init__(self, session: ort.InferenceSession, card: ModelCard, where: str):
        self.session = session
        self.card = card
        self.where = where
        self.state_inputs = [s.input for s in card.states]
        self.outputs = [OUTPUT_NAME, *(s.output for s in card.states)]
        # the neural cache generation applies: the file's writing setting (version 4; version 3's one setting);
        # None turns it off (--no-cache)
        self.cache = card.cache.writing if card.cache else None

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        if not self.card.states:
            return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return self.run(x, self.zero_state(x.shape[0]))[0][:, -1]

    def zero_state(self, batch: int) -> State:
        return tuple(np.zeros((batch, s.size), np.float32) for s in self.card.states)

    def run(self, x: np.ndarray, state: State | None) -> tuple[np.ndarray, State]:
        """A poem model from ``state``: logits of every position [B, T, V] and the state after the last."""
        x = np.asarray(x, dtype=np.int64)
        self.check_state(state, x.shape[0])
        feeds = {INPUT_NAME: x, **dict(zip(self.state_inputs, state))}
        logits, *state_out = self.session.run(self.outputs, feeds)
        return logits, tuple(state_out)

    def check_state(self, state: State | None, batch: int) -> None:
        """``UsageError`` unless ``state`` is one float32 [batch, size] array per state the card names."""
        specs = self.card.states
        if not specs:
            raise UsageError(f"{self.where} is a window model: it takes tokens alone and carries no state")
        shapes = None if state is None else [tuple(np.shape(s)) for s in state]
        want = [(batch, s.size) for s in specs]
        if shapes != want or any(np.asarray(s).dtype != np.float32 for s in state):
            names = ", ".join(f"{s.input} float32 [{batch}, {s.size}]" for s in specs)
            got = "no state" if state is None else ", ".join(f"{np.asarray(s).dtype} {list(np.shape(s))}"
                                                              for s in state)
            raise UsageError(f"{self.where} is a poem model: it needs its state {names} beside the tokens, "
                             f"got {got}; start a poem from zero_state({batch})")

    @property
    def source(self) -> Source:
        """What the sampler reads this model through: ``logits`` (windows of a window model), or a poem model's
        ``Stateful`` stepper, which runs only the tokens not yet read, from the state it carried."""
        if not self.card.states:
            return self.logits
        # the cache reads the first state: h for every cell (the LSTM's h, not its c)
        return Stateful(lambda x, carry: self.run(x, self.zero_state(len(x)) if carry is None else carry),
                        hidden=lambda carry: carry[0], cache=self.cache)


def open_session(model: bytes | str | Path, where: str, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime CPU session; ``UsageError`` if onnxruntime cannot load it."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failure is our one line, never a log line naming a C++ source file
    options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for every load failure
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{where} is not an ONNX model onnxruntime can load ({reason})") from None


def describe(specs: Sequence[TensorSpec]) -> str:
    """``tokens int64 [batch, seq], h0 float [batch, 16]``: what a list of inputs or outputs is."""
    return ", ".join(f"{s.name} {s.type.removeprefix('tensor(').rstrip(')')} "
                     f"[{', '.join('?' if d is None else str(d) for d in s.shape)}]" for s in specs)


def declared(values: Sequence[ort.NodeArg]) -> list[TensorSpec]:
    """The graph's inputs or outputs as it declares them (a symbolic or unknown axis: None)."""
    return [TensorSpec(v.name, v.type, tuple(d if isinstance(d, int) else None for d in (v.shape or [])))
            for v in values]


def fits(got: TensorSpec, want: TensorSpec) -> bool:
    """The same name and type, and the same rank and widths where the graph states them."""
    return got.name == want.name and got.type == want.type and len(got.shape) == len(want.shape) and all(
        g is None or w is None or g == w for g, w in zip(got.shape, want.shape))


def check_interface(session: ort.InferenceSession, lm: OnnxLM) -> None:
    """The graph takes and gives what its metadata describes, declared and on one probe token; else one line
    naming both sides. The probe catches widths a graph leaves symbolic, before any token is sampled."""
    card, where = lm.card, lm.where
    want_in, want_out = card.interface()
    got_in, got_out = declared(session.get_inputs()), declared(session.get_outputs())
    what = f"a {card.context} {card.cell} model of {card.config.vocab_size} tokens"
    for kind, got, want in (("inputs", got_in, want_in), ("outputs", got_out, want_out)):
        by_name = {s.name: s for s in got}
        if sorted(by_name) != sorted(s.name for s in want) or not all(fits(by_name[s.name], s) for s in want):
            raise UsageError(f"{where}: the graph's {kind} are {describe(got)} but its metadata describes {what}, "
                             f"whose {kind} are {describe(want)}; {EXPORT_AGAIN}")
    probe = np.zeros((1, 1), np.int64)
    try:
        results = lm.run(probe, lm.zero_state(1)) if card.states else (lm.logits(probe), ())
    except Exception as err:  # onnxruntime's own error types
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{where}: the graph fails on one token ({reason}); {EXPORT_AGAIN}") from None
    for spec, value in zip(want_out, [results[0], *results[1]]):
        shape = tuple(value.shape)
        if len(shape) != len(spec.shape) or shape[-1] != spec.shape[-1]:
            raise UsageError(f"{where}: the graph's output {spec.name} is {list(shape)} for one token but its "
                             f"metadata describes {what}, whose {spec.name} is {spec.shape[-1]} wide; {EXPORT_AGAIN}")


def load(path: str | Path) -> OnnxLM:
    """Open an exported model; ``UsageError`` for a missing file, a non-ONNX file, one without our metadata, or
    one whose graph does not match its metadata."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file; give the .onnx file written by python -m export.onnx")
    session = open_session(path, str(path))
    meta = session.get_modelmeta()
    card = from_props(meta.custom_metadata_map, str(path))
    graph_cell = meta.graph_name.split("_", 2)[-1]  # wordrnn_<model>_<cell>; a cell name may hold "_"
    if graph_cell in CELLS and graph_cell != card.cell:
        raise UsageError(f"{path} holds a {graph_cell} graph but its metadata says cell {card.cell}; {EXPORT_AGAIN}")
    lm = OnnxLM(session, card, str(path))
    check_interface(session, lm)
    return lm

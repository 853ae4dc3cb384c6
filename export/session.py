"""An exported ``.onnx`` file opened in onnxruntime: the model card and a logits function.

Imports onnxruntime and NumPy, never torch or jax (docs/DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.metadata import INPUT_NAME, OUTPUT_NAME, ModelCard, from_props
from wordrnn.core.cells import CELLS
from wordrnn.core.errors import UsageError


def graph_name(model: str, cell: str) -> str:
    """The name export gives the graph: it states the model and the cell, which ``load`` holds the metadata to."""
    return f"wordrnn_{model}_{cell}"


class OnnxLM:
    """The language model in one ONNX file: ``logits(int64 [B, T]) -> float32 [B, V]``."""

    def __init__(self, session: ort.InferenceSession, card: ModelCard, where: str):
        self.session = session
        self.card = card
        self.where = where

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, dtype=np.int64)})[0]


def open_session(model: bytes | str | Path, where: str, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime CPU session; ``UsageError`` if onnxruntime cannot load it."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no optimizer chatter between generated lines
    options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for every load failure
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{where} is not an ONNX model onnxruntime can load ({reason})") from None


def load(path: str | Path) -> OnnxLM:
    """Open an exported model; ``UsageError`` for a missing file, a non-ONNX file or one without our metadata."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file; give the .onnx file written by python -m export.onnx")
    session = open_session(path, str(path))
    meta = session.get_modelmeta()
    card = from_props(meta.custom_metadata_map, str(path))
    graph_cell = meta.graph_name.split("_", 2)[-1]  # wordrnn_<model>_<cell>; a cell name may hold "_"
    if graph_cell in CELLS and graph_cell != card.cell:
        raise UsageError(f"{path} holds a {graph_cell} graph but its metadata says cell {card.cell}; "
                         "export it again with python -m export.onnx")
    inputs = {i.name: i.type for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if inputs.get(INPUT_NAME) != "tensor(int64)" or OUTPUT_NAME not in outputs:
        raise UsageError(f"{path} has wordrnn metadata but no int64 input {INPUT_NAME!r} and output "
                         f"{OUTPUT_NAME!r}; export it again with python -m export.onnx")
    return OnnxLM(session, card, str(path))

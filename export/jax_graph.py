"""The other way to the same ONNX interface: trace the Flax model's pure function with jax2onnx.

``jaxmodels.model.apply`` runs the recurrence of any cell with ``jax.lax.scan``,
which jax2onnx turns into an ONNX ``Loop``; with symbolic ``batch`` and ``seq``
dimensions both axes stay dynamic. JAX computes in int32 unless x64 is on, so
the traced graph takes int32 tokens; a leading ``Cast`` gives the file the same
int64 ``tokens`` input as ``export.graph``'s.
"""

from __future__ import annotations

from importlib.metadata import version

import jax
import jax.numpy as jnp
import onnx
from jax2onnx import to_onnx
from onnx import TensorProto, helper

from export.metadata import INPUT_NAME, OUTPUT_NAME
from export.session import graph_name
from jaxmodels.model import apply
from wordrnn.core.config import Config
from wordrnn.core.params import Params

TRACED_INPUT = "tokens_int32"


def exporter_name() -> str:
    return f"jax2onnx {version('jax2onnx')} (jaxmodels.model.apply)"


def build_jax_graph(params: Params, config: Config, opset: int,
                    metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX model for canonical ``params``, traced from JAX; same input, output and metadata keys."""
    arrays = {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}
    spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("batch, seq"), jnp.int32)
    model = to_onnx(lambda tokens: apply(arrays, tokens, cell=config.cell, last_only=True)[0], [spec],
                    model_name=graph_name(config.model, config.cell),
                    opset=opset, input_names=[TRACED_INPUT], output_names=[OUTPUT_NAME])
    cast = helper.make_node("Cast", [INPUT_NAME], [TRACED_INPUT], to=TensorProto.INT32)
    nodes = [cast, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.input[:]
    model.graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT64, ["batch", "seq"]))
    model.producer_name = "wordrnn"
    helper.set_model_props(model, metadata or {})
    return model

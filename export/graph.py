"""The Elman RNN as a five-node ONNX graph, written from the canonical weights.

    tokens [B, T] --Gather--> [B, T, I] --Transpose--> [T, B, I] --RNN--> Y_h [1, B, H]
                  --Squeeze--> [B, H] --Gemm(out)--> logits [B, V]

We write the graph by hand (``onnx.helper``) instead of tracing a framework's
module: torch's dynamo exporter unrolls ``nn.RNN`` and freezes the sequence
length, and the legacy TorchScript exporter is deprecated. The standard ``RNN``
op keeps the batch and sequence axes symbolic, and every op here is plain ONNX.

The one-hot model multiplies a one-hot vector by ``W_ih``, which picks a row of
``W_ih^T``; so both models start with a Gather. The embedding model gathers
embedding rows and lets the RNN op apply ``W_ih``; the one-hot model gathers
rows of ``W_ih^T`` (the input projection, exactly) and gives the RNN op the
identity as its input weight, which passes them through unchanged.
onnxruntime implements ``RNN`` only time-major (``layout=0``), hence the Transpose.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.metadata import INPUT_NAME, OUTPUT_NAME
from wordrnn.core.config import Config
from wordrnn.core.params import Params

DEFAULT_OPSET = 17  # RNN-14 / Gather-13 / Squeeze-13 / Gemm-13: every onnxruntime since 1.11 runs it
MIN_OPSET = 14  # RNN-14 is the first RNN that states its layout


def input_table(params: Params, config: Config) -> tuple[str, np.ndarray, np.ndarray]:
    """What the Gather reads from, and the RNN op's input weight W ([H, I])."""
    if config.model == "embedding":
        return "embedding", params["embedding"], params["rnn.w_ih"]
    H = config.hidden_size
    return "rnn.w_ih_t", np.ascontiguousarray(params["rnn.w_ih"].T), np.eye(H, dtype=np.float32)


def build_model(params: Params, config: Config, opset: int = DEFAULT_OPSET,
                metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX model for canonical float32 ``params``; ``metadata`` goes into ``metadata_props``."""
    H, V = config.hidden_size, config.vocab_size
    table_name, table, w_ih = input_table(params, config)
    b = np.concatenate([params["rnn.b_ih"], params["rnn.b_hh"]])
    initializers = {
        table_name: table,
        "rnn.W": w_ih[None],  # [1, H, I]: one direction
        "rnn.R": params["rnn.w_hh"][None],
        "rnn.B": b[None],  # [1, 2H]: Wb then Rb, added inside the op
        "out.weight": params["out.weight"],
        "out.bias": params["out.bias"],
    }
    initializers = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()]
    initializers.append(numpy_helper.from_array(np.array([0], np.int64), "direction_axis"))
    nodes = [
        helper.make_node("Gather", [table_name, INPUT_NAME], ["inputs"], axis=0),
        helper.make_node("Transpose", ["inputs"], ["inputs_time_major"], perm=[1, 0, 2]),
        helper.make_node("RNN", ["inputs_time_major", "rnn.W", "rnn.R", "rnn.B"], ["", "h_last"],
                         hidden_size=H, activations=["Tanh"]),
        helper.make_node("Squeeze", ["h_last", "direction_axis"], ["h"]),
        helper.make_node("Gemm", ["h", "out.weight", "out.bias"], [OUTPUT_NAME], transB=1),
    ]
    graph = helper.make_graph(
        nodes, f"wordrnn_{config.model}",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT64, ["batch", "seq"])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", V])],
        initializer=initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="wordrnn",
                              ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string=f"wordrnn {config.model} Elman RNN language model: "
                                         f"int64 tokens [batch, seq] -> next-token logits [batch, {V}]")
    helper.set_model_props(model, metadata or {})
    return model

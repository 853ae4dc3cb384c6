"""The model as a small ONNX graph, written from the canonical weights, for every cell and both contexts.

A window model, five nodes:

    tokens [B, T] --Gather--> [B, T, I] --Transpose--> [T, B, I] --RNN/LSTM/GRU--> Y_h [1, B, H]
                  --Squeeze--> [B, H] --Gemm(out)--> logits [B, V]

A poem model gives the op its state in (``initial_h``, and ``initial_c`` for the LSTM) and keeps ``Y``, the
state of every step, so that a client feeds a prompt once and then one token a step, passing the state back:

    tokens [B, T], h0 [B, H] (c0) --...--> Y [T, 1, B, H] --> logits [B, T, V];  Y_h --> hn [B, H] (Y_c --> cn)

We write the graph by hand (``onnx.helper``) instead of tracing a framework's
module: torch's dynamo exporter unrolls the recurrent layers and freezes the
sequence length, and the legacy TorchScript exporter is deprecated. ONNX's
standard ``RNN``, ``LSTM`` and ``GRU`` ops keep the batch and sequence axes
symbolic, and every op here is plain ONNX. A cell ONNX has no op for (the minimal GRU) takes that node's place
as a ``Scan`` over the registry's ``onnx_step`` (``scan_nodes``), with the same inputs and outputs.

The ops stack their gate blocks in their own order (LSTM i, o, f, c; GRU z, r,
h), so torch's blocks are permuted with the cell registry's
``onnx_permutation()``; the GRU op with ``linear_before_reset=1`` applies the
reset gate to ``h W_hn^T + b_hn`` as torch does.

The one-hot model multiplies a one-hot vector by ``W_ih``, which picks a row of
``W_ih^T``; so both models start with a Gather. The embedding model gathers
embedding rows and lets the recurrent op apply ``W_ih``; the one-hot model gathers
rows of ``W_ih^T`` (the input projection, exactly) and gives the op the
identity as its input weight, which passes them through unchanged.
onnxruntime implements these ops only time-major (``layout=0``), hence the Transpose.

A stacked model chains one such op per layer (``stack_nodes``): layer l >= 1 reads the squeezed ``Y`` of the
layer below, with its own weights, every name of its nodes prefixed ``l{l}.``; the state in is split into the
layers' [1, B, H] parts and their final states joined again, so ``h0``/``hn`` are [B, L*H], layer 0 first. A
one-layer graph is exactly what it was.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.metadata import INPUT_NAME, OUTPUT_NAME, state_specs
from export.session import graph_name
from wordrnn.core.cells import Cell, get_cell
from wordrnn.core.config import Config
from wordrnn.core.params import Params, layer_params, num_layers, untie

DEFAULT_OPSET = 17  # RNN/LSTM/GRU-14, Gather-13, Squeeze-13, Gemm-13: every onnxruntime since 1.11 runs it
MIN_OPSET = 14  # the first RNN, LSTM and GRU that state their layout

def input_table(params: Params, config: Config) -> tuple[str, np.ndarray, np.ndarray]:
    """What the Gather reads from, and the recurrent op's input weight W ([G*H, I], torch's gate order)."""
    if config.model == "embedding":
        return "embedding", params["embedding"], params["rnn.w_ih"]
    GH = params["rnn.w_ih"].shape[0]
    return "rnn.w_ih_t", np.ascontiguousarray(params["rnn.w_ih"].T), np.eye(GH, dtype=np.float32)


def onnx_gate_order(stacked: np.ndarray, cell: Cell) -> np.ndarray:
    """Gate blocks (along the first axis) from torch's order into the ONNX op's."""
    blocks = np.split(stacked, cell.num_gates)
    return np.concatenate([blocks[k] for k in cell.onnx_permutation()])


def build_graph(params: Params, config: Config, opset: int = DEFAULT_OPSET,
                metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX model for canonical float32 ``params``; ``metadata`` goes into ``metadata_props``.

    A tied model's graph stores the output weight it makes (``untie``): an inference graph trains nothing, and
    one stored product is cheaper per token than the embedding times the projection at every step.
    """
    params = untie(params)
    cell = get_cell(config.cell)
    table_name, table, w_ih = input_table(params, config)
    initializers = {table_name: table, **layer_weights(params, cell, w_ih)}
    nodes = [
        helper.make_node("Gather", [table_name, INPUT_NAME], ["inputs"], axis=0),
        helper.make_node("Transpose", ["inputs"], ["inputs_time_major"], perm=[1, 0, 2]),
    ]
    if not cell.onnx_op:
        initializers.update(scan_constants(config.hidden_size))
    head = poem_head if config.layout.carries_state else window_head
    inputs, outputs, description = head(params, config, cell, nodes, initializers)
    tensors = [numpy_helper.from_array(v if v.dtype == np.int64 else np.asarray(v, np.float32), k)
               for k, v in initializers.items()]
    tensors.append(numpy_helper.from_array(np.array([0], np.int64), "direction_axis"))
    graph = helper.make_graph(
        nodes, graph_name(config.model, cell.name),
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT64, ["batch", "seq"]), *inputs],
        outputs=outputs, initializer=tensors,
    )
    return _model(graph, opset, f"wordrnn {config.model} {cell.onnx_op or cell.name} language model: {description}",
                  metadata)


def _model(graph: onnx.GraphProto, opset: int, doc: str, metadata: dict[str, str] | None) -> onnx.ModelProto:
    """The model of ``graph`` at ``opset`` (the lowest IR version that has it), its metadata in ``metadata_props``."""
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="wordrnn",
                              ir_version=helper.find_min_ir_version_for(opsets), doc_string=doc)
    helper.set_model_props(model, metadata or {})
    return model


def build_ensemble_graph(members: list[Params], config: Config, opset: int = DEFAULT_OPSET,
                         metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """One ONNX model for an ensemble: every member's graph (``build_graph``, its names prefixed ``m<k>.``) reads
    the same tokens, and ``logits`` is the log of their averaged probabilities. A poem model's state is the
    members' states side by side: ``h0`` [B, N*H] is split into each member's [B, H], and their ``hn`` joined
    again (``c0``/``cn`` likewise). One member is ``build_graph`` itself."""
    if len(members) == 1:
        return build_graph(members[0], config, opset, metadata)
    single = dataclasses.replace(config, ensemble=1)
    graphs = [_prefixed(build_graph(params, single, opset).graph, f"m{k}.") for k, params in enumerate(members)]
    N, H, V = len(members), config.state_size, config.vocab_size
    states = state_specs(config)
    nodes = [helper.make_node("Identity", [INPUT_NAME], [f"m{k}.{INPUT_NAME}"]) for k in range(N)]
    initializers = [numpy_helper.from_array(np.full(N, H, np.int64), "ensemble.split"),
                    numpy_helper.from_array(np.array(np.log(N), np.float32), "ensemble.log_n")]
    nodes += [helper.make_node("Split", [s.input, "ensemble.split"], [f"m{k}.{s.input}" for k in range(N)], axis=1)
              for s in states]
    for g in graphs:
        nodes += g.node
        initializers += g.initializer
    nodes += [helper.make_node("LogSoftmax", [f"m{k}.{OUTPUT_NAME}"], [f"m{k}.logp"], axis=-1) for k in range(N)]
    # log(p + q) = max(log p, log q) + softplus(-|log p - log q|): stable, and plain ONNX in every opset
    mixed = "m0.logp"
    for k in range(1, N):
        a, b, out = mixed, f"m{k}.logp", f"ensemble.sum{k}"
        nodes += [helper.make_node("Max", [a, b], [f"{out}.max"]),
                  helper.make_node("Sub", [a, b], [f"{out}.diff"]),
                  helper.make_node("Abs", [f"{out}.diff"], [f"{out}.abs"]),
                  helper.make_node("Neg", [f"{out}.abs"], [f"{out}.neg"]),
                  helper.make_node("Softplus", [f"{out}.neg"], [f"{out}.soft"]),
                  helper.make_node("Add", [f"{out}.max", f"{out}.soft"], [out])]
        mixed = out
    nodes.append(helper.make_node("Sub", [mixed, "ensemble.log_n"], [OUTPUT_NAME]))
    nodes += [helper.make_node("Concat", [f"m{k}.{s.output}" for k in range(N)], [s.output], axis=1) for s in states]
    logits_shape = ["batch", "seq", V] if config.layout.carries_state else ["batch", V]
    graph = helper.make_graph(
        nodes, graph_name(config.model, config.cell),
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT64, ["batch", "seq"]),
                *(helper.make_tensor_value_info(s.input, TensorProto.FLOAT, ["batch", s.size]) for s in states)],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, logits_shape),
                 *(helper.make_tensor_value_info(s.output, TensorProto.FLOAT, ["batch", s.size]) for s in states)],
        initializer=initializers,
    )
    return _model(graph, opset, f"wordrnn ensemble of {N} {config.model} {config.cell} language models "
                                f"({config.context} context): log of the members' averaged probabilities", metadata)


def _prefixed(graph: onnx.GraphProto, prefix: str) -> onnx.GraphProto:
    """A copy of ``graph`` with every name it uses (initializers, inputs, outputs, values, and those of a Scan's
    body, which reads the outer weights by name) prefixed, so that N members live in one graph."""
    graph = copy.deepcopy(graph)

    def rename(g: onnx.GraphProto) -> None:
        for value in (*g.input, *g.output, *g.initializer, *g.value_info):
            value.name = prefix + value.name
        for node in g.node:
            node.name = prefix + node.name if node.name else node.name
            node.input[:] = [prefix + name if name else name for name in node.input]
            node.output[:] = [prefix + name if name else name for name in node.output]
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    rename(attribute.g)
                for sub in attribute.graphs:
                    rename(sub)

    rename(graph)
    return graph


Head = tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto], str]


def layer_weights(params: Params, cell: Cell, w_ih: np.ndarray) -> dict[str, np.ndarray]:
    """One layer's weights as its recurrent nodes read them (``params`` under layer 0's names; ``w_ih`` the
    input weight the op applies)."""
    return (op_weights if cell.onnx_op else scan_weights)(params, cell, w_ih)


def stack_nodes(params: Params, config: Config, cell: Cell, initial: list[str], outputs: list[str],
                initializers: dict) -> list[onnx.NodeProto]:
    """``recurrent_nodes`` for every layer of ``params``, chained: ``initial`` states [1, B, L*H] (none: zero),
    ``outputs`` the last layer's every h [T, 1, B, H] ("" if unused) then the final states [1, B, L*H]. Layer
    l >= 1's weights go into ``initializers`` under its prefix."""
    H, L = config.hidden_size, num_layers(params)
    if L == 1:
        return recurrent_nodes(cell, H, initial, outputs)
    every, *finals = outputs
    initializers["direction_axis_y"] = np.array([1], np.int64)
    if initial:
        initializers["stack.split"] = np.full(L, H, np.int64)
    nodes = [helper.make_node("Split", [name, "stack.split"], [f"{name}.l{layer}" for layer in range(L)], axis=2)
             for name in initial]
    for layer in range(L):
        own_initial = [f"{name}.l{layer}" for name in initial]
        own_outputs = [every if layer == L - 1 else f"every.l{layer}", *(f"{name}.l{layer}" for name in finals)]
        if layer == 0:
            nodes += recurrent_nodes(cell, H, own_initial, own_outputs)
            continue
        weights = layer_params(params, layer)
        own = layer_weights(weights, cell, weights["rnn.w_ih"])
        prefix = f"l{layer}."
        layer_nodes = [helper.make_node("Squeeze", [f"every.l{layer - 1}", "direction_axis_y"],
                                        ["inputs_time_major"]),
                       *recurrent_nodes(cell, H, own_initial, own_outputs)]
        interface = {*own_initial, *own_outputs, f"every.l{layer - 1}"}
        local = {out for node in layer_nodes for out in node.output} | set(own) | {"inputs_time_major"}
        rename_values(layer_nodes, {name: prefix + name for name in local - interface})
        nodes += layer_nodes
        initializers.update({prefix + name: value for name, value in own.items()})
    nodes += [helper.make_node("Concat", [f"{name}.l{layer}" for layer in range(L)], [name], axis=2)
              for name in finals]
    return nodes


def rename_values(nodes: list[onnx.NodeProto], mapping: dict[str, str]) -> None:
    """Rename, in place, every input and output of ``nodes`` (and of their subgraphs', such as a Scan body
    reading outer weights) that ``mapping`` names."""
    for node in nodes:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                rename_values(list(sub.node), mapping)


def op_weights(params: Params, cell: Cell, w_ih: np.ndarray) -> dict[str, np.ndarray]:
    """The standard op's W, R and B, in its gate order."""
    b = np.concatenate([onnx_gate_order(params["rnn.b_ih"], cell), onnx_gate_order(params["rnn.b_hh"], cell)])
    return {
        "rnn.W": onnx_gate_order(w_ih, cell)[None],  # [1, G*H, I]: one direction
        "rnn.R": onnx_gate_order(params["rnn.w_hh"], cell)[None],
        "rnn.B": b[None],  # [1, 2*G*H]: Wb then Rb, added inside the op
    }


def scan_weights(params: Params, cell: Cell, w_ih: np.ndarray) -> dict[str, np.ndarray]:
    """The generic Scan's weights, one block per gate: W_<g> [I, H] and b_<g> [H]; R_<g> [H, H] and Rb_<g>."""
    weights = {}
    for g, w, b in zip(cell.gates, np.split(w_ih, cell.num_gates), np.split(params["rnn.b_ih"], cell.num_gates),
                       strict=True):
        weights[f"rnn.W_{g}"], weights[f"rnn.b_{g}"] = w.T, b
    if cell.recurrent_weights:
        for g, r, rb in zip(cell.gates, np.split(params["rnn.w_hh"], cell.num_gates),
                            np.split(params["rnn.b_hh"], cell.num_gates), strict=True):
            weights[f"R_{g}"], weights[f"Rb_{g}"] = r.T, rb
    return weights


def recurrent_nodes(cell: Cell, H: int, initial: list[str], outputs: list[str]) -> list[onnx.NodeProto]:
    """The recurrence over ``inputs_time_major`` [T, B, I], as the standard op's interface has it: ``initial``
    states [1, B, H] (none: zero), ``outputs`` every h [T, 1, B, H] ("" if unused) then the final states."""
    if cell.onnx_op:
        inputs = ["", *initial] if initial else []  # "": no sequence_lens, every row full
        return [helper.make_node(cell.onnx_op, ["inputs_time_major", "rnn.W", "rnn.R", "rnn.B", *inputs],
                                 outputs, hidden_size=H, **cell.onnx_attributes)]
    return scan_nodes(cell, H, initial, outputs)


def scan_nodes(cell: Cell, H: int, initial: list[str], outputs: list[str]) -> list[onnx.NodeProto]:
    """A cell without an ONNX op: the gates' input projections for every step at once, then a Scan whose body is
    the registry's ``onnx_step``; its results reshaped to the standard op's outputs."""
    nodes = []
    for g in cell.gates:
        nodes += [helper.make_node("MatMul", ["inputs_time_major", f"rnn.W_{g}"], [f"xw_{g}"]),
                  helper.make_node("Add", [f"xw_{g}", f"rnn.b_{g}"], [f"a_{g}_seq"])]
    if initial:
        starts = [f"{s}_start" for s in cell.states]
        nodes += [helper.make_node("Squeeze", [name, "direction_axis"], [start])
                  for name, start in zip(initial, starts, strict=True)]
    else:  # a zero state of the batch's size
        starts = ["zero_state"]
        nodes += [helper.make_node("Shape", ["inputs_time_major"], ["input_shape"]),
                  helper.make_node("Gather", ["input_shape", "batch_index"], ["batch"]),
                  helper.make_node("Concat", ["batch", "hidden_shape"], ["state_shape"], axis=0),
                  helper.make_node("ConstantOfShape", ["state_shape"], ["zero_state"],
                                   value=numpy_helper.from_array(np.zeros(1, np.float32)))]
        starts *= len(cell.states)
    body = helper.make_graph(
        [*(helper.make_node(op, list(ins), list(outs), **attrs) for op, ins, outs, attrs in cell.onnx_step),
         helper.make_node("Identity", ["h_next"], ["h_out"])],
        f"{cell.name}_step",
        inputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", H])
                for n in (*cell.states, *(f"a_{g}" for g in cell.gates))],
        outputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", H])
                 for n in (*(f"{s}_next" for s in cell.states), "h_out")],
    )
    finals = [f"{s}_final" for s in cell.states]
    nodes.append(helper.make_node("Scan", [*starts, *(f"a_{g}_seq" for g in cell.gates)], [*finals, "every_h"],
                                  body=body, num_scan_inputs=cell.num_gates))
    every, *last = outputs
    if every:
        nodes.append(helper.make_node("Unsqueeze", ["every_h", "direction_axis_y"], [every]))
    nodes += [helper.make_node("Unsqueeze", [final, "direction_axis"], [name])
              for final, name in zip(finals, last, strict=True)]
    return nodes


def scan_constants(H: int) -> dict[str, np.ndarray]:
    """What ``scan_nodes`` reads besides the weights."""
    return {"batch_index": np.array([1], np.int64), "hidden_shape": np.array([H], np.int64),
            "direction_axis_y": np.array([1], np.int64)}


def window_head(params: Params, config: Config, cell: Cell, nodes: list, initializers: dict) -> Head:
    """From a zero state, the last step only: Y_h [1, B, H] --Squeeze--> [B, H] --Gemm(out)--> logits [B, V]."""
    initializers.update({"out.weight": params["out.weight"], "out.bias": params["out.bias"]})
    nodes += [
        *stack_nodes(params, config, cell, [], ["", "h_layers" if config.layers > 1 else "h_last"], initializers),
        *last_layer(config, "h_layers", "h_last", initializers),
        helper.make_node("Squeeze", ["h_last", "direction_axis"], ["h"]),
        helper.make_node("Gemm", ["h", "out.weight", "out.bias"], [OUTPUT_NAME], transB=1),
    ]
    V = config.vocab_size
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", V])]
    return [], outputs, f"int64 tokens [batch, seq] -> next-token logits [batch, {V}]"


def last_layer(config: Config, stacked: str, out: str, initializers: dict) -> list[onnx.NodeProto]:
    """A stacked model's last layer's part [1, B, H] of the final states [1, B, L*H]; none for one layer."""
    if config.layers == 1:
        return []
    H, L = config.hidden_size, config.layers
    initializers.update({"last_layer.start": np.array([(L - 1) * H], np.int64),
                         "last_layer.end": np.array([L * H], np.int64), "last_layer.axis": np.array([2], np.int64)})
    return [helper.make_node("Slice", [stacked, "last_layer.start", "last_layer.end", "last_layer.axis"], [out])]


def poem_head(params: Params, config: Config, cell: Cell, nodes: list, initializers: dict) -> Head:
    """From the state in, every step: h0 [B, H] --Unsqueeze--> the op's initial_h [1, B, H] (c0 likewise);
    Y [T, 1, B, H] --Squeeze, Transpose--> [B, T, H] --MatMul, Add(out)--> logits [B, T, V];
    Y_h [1, B, H] --Squeeze--> hn [B, H] (Y_c to cn); a stacked model's states are [B, L*H]."""
    V = config.vocab_size
    states = state_specs(config)
    initializers.update({"out.weight_t": params["out.weight"].T, "out.bias": params["out.bias"]})
    initial = [f"{s.input}_op" for s in states]
    last = [f"{s.output}_op" for s in states]
    nodes += [helper.make_node("Unsqueeze", [s.input, "direction_axis"], [name]) for s, name in zip(states, initial)]
    nodes += [
        *stack_nodes(params, config, cell, initial, ["states_op", *last], initializers),
        helper.make_node("Squeeze", ["states_op", "direction_axis_y"], ["states_time_major"]),
        helper.make_node("Transpose", ["states_time_major"], ["states"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["states", "out.weight_t"], ["scores"]),
        helper.make_node("Add", ["scores", "out.bias"], [OUTPUT_NAME]),
    ]
    nodes += [helper.make_node("Squeeze", [name, "direction_axis"], [s.output]) for s, name in zip(states, last)]
    initializers["direction_axis_y"] = np.array([1], np.int64)
    inputs = [helper.make_tensor_value_info(s.input, TensorProto.FLOAT, ["batch", s.size]) for s in states]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", "seq", V]),
               *(helper.make_tensor_value_info(s.output, TensorProto.FLOAT, ["batch", s.size]) for s in states)]
    names = ", ".join(s.input for s in states)
    return inputs, outputs, (f"int64 tokens [batch, seq] and the state {names} [batch, {config.state_size}] -> "
                             "logits of every "
                             f"position [batch, seq, {V}] and the state after the last")

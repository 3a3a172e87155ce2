"""Per-layer features of a TFLite model, read from the flatbuffer alone (no runtime).

``read_layers`` gives one ``LayerInfo`` per node that runs on every inference: weight-preparing
nodes (``DEQUANTIZE``/``DENSIFY`` of constants) are folded into their consumers, as the splitter
does, so the list lines up with ``split_model`` and ``LayerChain.layers``.

MACs (multiply-accumulates, per inference, batch included) and kernels come from the op
registry (``joulefarm.tflite.ops``), which defines them per op.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from joulefarm.tflite.flatbuffer import dtype_name, shape_of, tensor_nbytes
from joulefarm.tflite.graph import Graph, load_graph
from joulefarm.tflite.ops import OpShapes, op_entry
from joulefarm.tflite.schema import activation_names, padding_names

Shape = tuple[int, ...]



@dataclass(frozen=True)
class LayerInfo:
    """Static features of one layer (one TFLite node).

    Shapes and dtype describe activations, i.e. non-constant tensors; weights appear only in
    ``param_bytes`` (and ``kernel``). Byte counts are per inference.
    """

    index: int
    """Node index in the model's subgraph."""
    op: str
    """Builtin op name, e.g. ``"CONV_2D"``."""
    input_shapes: tuple[Shape, ...]
    """Shapes of the non-constant inputs, in the node's input order."""
    output_shapes: tuple[Shape, ...]
    dtype: str
    """Element type of the first non-constant input (of the first output if none), e.g.
    ``"float32"``."""
    kernel: tuple[int, int] | None
    """(kh, kw) of convolutions and pools."""
    stride: tuple[int, int] | None
    """(sh, sw) of convolutions and pools."""
    padding: str | None
    """``"SAME"`` or ``"VALID"`` for ops that pad."""
    activation: str | None
    """Fused activation (``"NONE"``, ``"RELU"``, ``"RELU6"``, ...) of ops that have one."""
    macs: int | None
    """Multiply-accumulates (or element counts), defined per op family in
    ``joulefarm.tflite.ops``; None for an op without a cost formula (never a made-up count)."""
    param_bytes: int
    """Bytes of the constant inputs (weights, biases, shape/axis operands) as the kernel reads
    them, i.e. after folded dequantization."""
    act_in_bytes: int
    """Bytes of the non-constant inputs (each distinct tensor once)."""
    act_out_bytes: int
    """Bytes of the outputs."""
    file_shapes_differ: bool = False
    """The shapes above are the runtime's, and the file stores others for some of these
    tensors (a converter's placeholders): read with ``shapes`` from a run."""


def layer_to_dict(layer: LayerInfo) -> dict[str, Any]:
    """A JSON-ready dict of a ``LayerInfo`` (tuples become lists)."""
    data = asdict(layer)
    data["input_shapes"] = [list(s) for s in layer.input_shapes]
    data["output_shapes"] = [list(s) for s in layer.output_shapes]
    for key in ("kernel", "stride"):
        data[key] = None if data[key] is None else list(data[key])
    return data


def layer_from_dict(data: Mapping[str, Any]) -> LayerInfo:
    """Inverse of ``layer_to_dict``."""
    fields = dict(data)
    fields["input_shapes"] = tuple(tuple(s) for s in fields["input_shapes"])
    fields["output_shapes"] = tuple(tuple(s) for s in fields["output_shapes"])
    for key in ("kernel", "stride"):
        fields[key] = None if fields[key] is None else tuple(fields[key])
    return LayerInfo(**fields)


def read_layers(model_bytes: bytes, *, shapes: Mapping[int, Shape] | None = None,
                include_weight_prep: bool = False) -> list[LayerInfo]:
    """One ``LayerInfo`` per node, in execution order.

    ``shapes`` overrides the static shapes of some tensors (tensor index -> shape), e.g. with
    shapes observed at run time in models with dynamic dimensions. Folded nodes (weight
    preparation, variable handles, one-time initialisation) are left out unless
    ``include_weight_prep``. Raises ``ModelError`` for models it cannot read.
    """
    graph = load_graph(model_bytes)
    return [
        _layer_info(graph, n, shapes or {})
        for n in range(len(graph.ops))
        if include_weight_prep or n not in graph.folded
    ]


def model_summary(model_bytes: bytes) -> dict[str, Any]:
    """Whole-model totals: layer count, op histogram, MACs, bytes, input/output signatures."""
    graph = load_graph(model_bytes)
    layers = [_layer_info(graph, n, {}) for n in graph.layer_nodes]
    ops: dict[str, int] = {}
    for layer in layers:
        ops[layer.op] = ops.get(layer.op, 0) + 1
    tensors = graph.subgraph.tensors or []

    def signature(indices: list[int]) -> list[dict[str, Any]]:
        return [{"index": int(t), "shape": shape_of(tensors[t]),
                 "dtype": dtype_name(tensors[t].type)} for t in indices]

    return {
        "layers": len(layers),
        "ops": ops,
        "macs": sum(layer.macs or 0 for layer in layers),
        "layers_without_cost_formula": sum(layer.macs is None for layer in layers),
        "param_bytes": sum(_tensor_bytes(graph, t, {}) for t in graph.constants
                           if t not in _prep_inputs(graph)),
        "inputs": signature(list(graph.subgraph.inputs or [])),
        "outputs": signature(list(graph.subgraph.outputs or [])),
        "weight_prep_nodes": sorted(graph.weight_prep),
        "setup_nodes": sorted(graph.setup),
        "subgraphs": len(graph.model.subgraphs),
    }


def _prep_inputs(graph: Graph) -> set[int]:
    """Stored forms (fp16, sparse) of weights that folded nodes expand."""
    ops = graph.subgraph.operators or []
    return {t for n in graph.weight_prep for t in ops[n].inputs or [] if t >= 0}


def _shape(graph: Graph, t: int, shapes: Mapping[int, Shape]) -> Shape:
    if t in shapes:
        return tuple(int(d) for d in shapes[t])
    return tuple(shape_of(graph.subgraph.tensors[t]))


def _tensor_bytes(graph: Graph, t: int, shapes: Mapping[int, Shape]) -> int:
    tensor = graph.subgraph.tensors[t]
    if tensor.sparsity is not None:  # stored compressed; the buffer length is the truth
        buffer = graph.model.buffers[tensor.buffer]
        return 0 if buffer.data is None else len(buffer.data)
    return tensor_nbytes(tensor.type, _shape(graph, t, shapes))


def _layer_info(graph: Graph, n: int, shapes: Mapping[int, Shape]) -> LayerInfo:
    operator = graph.subgraph.operators[n]
    tensors = graph.subgraph.tensors
    op = graph.ops[n]
    inputs = [t for t in operator.inputs or [] if t >= 0]
    outputs = list(operator.outputs or [])
    act_inputs = [t for t in inputs if not graph.is_constant(t)]
    const_inputs = [t for t in inputs if graph.is_constant(t)]
    in_shapes = tuple(_shape(graph, t, shapes) for t in act_inputs)
    out_shapes = tuple(_shape(graph, t, shapes) for t in outputs)
    first = act_inputs[0] if act_inputs else (outputs[0] if outputs else None)
    dtype = dtype_name(tensors[first].type) if first is not None else "none"

    options = operator.builtinOptions
    padding = getattr(options, "padding", None)
    activation = getattr(options, "fusedActivationFunction", None)
    stride = None
    if hasattr(options, "strideH") and hasattr(options, "strideW"):
        stride = (int(options.strideH), int(options.strideW))
    operands = tuple(_shape(graph, t, shapes) if t >= 0 else () for t in operator.inputs or [])
    differ = any(t in shapes and tuple(shapes[t]) != tuple(shape_of(tensors[t]))
                 for t in (*act_inputs, *outputs))
    node = OpShapes(in_shapes, out_shapes, operands, options)
    entry = op_entry(op)

    return LayerInfo(
        index=n,
        op=op,
        input_shapes=in_shapes,
        output_shapes=out_shapes,
        dtype=dtype,
        kernel=entry.kernel(node),
        stride=stride,
        padding=None if padding is None else padding_names().get(padding, str(padding)),
        activation=None if activation is None else activation_names().get(activation,
                                                                         str(activation)),
        macs=entry.macs(node),
        param_bytes=sum(_tensor_bytes(graph, t, shapes) for t in dict.fromkeys(const_inputs)),
        act_in_bytes=sum(_tensor_bytes(graph, t, shapes) for t in dict.fromkeys(act_inputs)),
        act_out_bytes=sum(_tensor_bytes(graph, t, shapes) for t in dict.fromkeys(outputs)),
        file_shapes_differ=differ,
    )

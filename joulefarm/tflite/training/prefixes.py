"""Trainable prefixes of a model: its first 1..n layers, for THOR's subtraction method.

THOR (Zhang et al., arXiv 2501.16397) measures the training step of the model's first k layers
for k = 1..n and takes E(k) - E(k-1) as layer k's training energy (forward, backward and
update): it needs only whole-step energies, which a meter too slow to resolve single ops can
give. ``prefix_model`` cuts an inference model after its k-th node; ``trainable_prefixes``
makes each prefix trainable (``trainable_from_model``); ``joulefarm.subtraction`` does the
arithmetic and ``agent.measure_prefixes`` the measuring.

What the method cannot separate, and so carries as its error:

- **The loss.** Every prefix is trained with MSE against a target of its own output's shape
  (softmax cross-entropy needs a class vector; MSE fits any output), so the loss's own cost
  follows the prefix's output size and changes from prefix to prefix: E(k) - E(k-1) holds
  layer k plus loss(k) - loss(k-1). The first prefix also carries what every step does once
  whatever its layers (the loss, the optimizer's per-step work, the runtime's invoke).
- **Layers without weights before any trainable one** (a leading pooling or padding layer,
  or frozen layers with ``trainable``) cannot train. Their prefixes are still measured, made
  "trainable" with no trainable layer: their ``train`` signature is forward and loss only,
  which is exactly what such a layer costs in the full model too (the backward pass stops at
  the first trainable layer: a layer before it gets no gradient). So every layer gets its
  own difference; no pair is merged. A weightless layer *after* a trainable one (a Flatten, a
  pooling layer) needs nothing special: its prefix trains the layers before it, and its
  difference is its forward and backward pass.
- **Branches.** A prefix's output is its k-th node's first output. A prefix that ends on a
  side branch (``builder.Branch``) leaves the other branch's last nodes without a path to
  the loss: they run forward but get no backward pass or update in that prefix, though they
  do in the full model. ``dead_layers`` names them; their backward and update then land in
  a later layer's difference. A prefix that ends mid-residual (before the ``Add``) has no
  such node: every node still reaches its output.
"""

from __future__ import annotations

from collections.abc import Collection

from joulefarm.errors import ModelError
from joulefarm.tflite.builder import Reshape, build_model
from joulefarm.tflite.flatbuffer import make_buffer, pack_model, shape_of, unpack_model
from joulefarm.tflite.schema import tfl
from joulefarm.tflite.training.model import trainable_from_model
from joulefarm.tflite.training.optimizers import Optimizer

PREFIX_LOSS = "mse"
"""The loss of every prefix: it fits any output shape (see the module's notes on its cost)."""


def _one_subgraph(model: tfl.ModelT) -> tfl.SubGraphT:
    if len(model.subgraphs) != 1:
        raise ModelError(f"prefixes are cut from a model of one subgraph, got "
                         f"{len(model.subgraphs)}")
    return model.subgraphs[0]


def layer_count(inference_model_bytes: bytes) -> int:
    """Nodes of a one-subgraph model: its prefixes are k = 1..this."""
    return len(_one_subgraph(unpack_model(inference_model_bytes)).operators)


def prefix_model(inference_model_bytes: bytes, k: int) -> bytes:
    """The model of the first ``k`` nodes of a one-subgraph model, its one output the k-th
    node's first output (``ValueError`` unless 1 <= k <= nodes; ``ModelError`` for a model of
    several subgraphs).

    Tensors and constant buffers that no kept node, model input or output uses are dropped,
    so the prefix holds its own weights only; inputs keep their order. A signature of the
    subgraph is pointed at the new output; metadata buffers are kept.
    """
    model = unpack_model(inference_model_bytes)
    graph = _one_subgraph(model)
    n = len(graph.operators)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"prefix length k must be an integer in 1..{n} (the model's nodes), "
                         f"got {k!r}")
    operators = graph.operators[:k]
    if not operators[-1].outputs:
        raise ModelError(f"node {k - 1} has no output to end a prefix with")
    output = operators[-1].outputs[0]
    used: list[int] = []
    seen: set[int] = set()
    for t in [*graph.inputs, *(t for op in operators for t in (*op.inputs, *op.outputs,
                                                                 *(op.intermediates or []))),
              output]:
        if t >= 0 and t not in seen:
            seen.add(t)
            used.append(t)
    tensor_map = {old: new for new, old in enumerate(used)}
    # Buffer 0 stays the empty buffer; then those of kept tensors and of the metadata.
    buffers = [make_buffer()]
    buffer_map = {0: 0}

    def keep_buffer(old: int) -> int:
        if old not in buffer_map:
            buffer_map[old] = len(buffers)
            buffers.append(model.buffers[old])
        return buffer_map[old]

    tensors = []
    for old in used:
        tensor = graph.tensors[old]
        tensor.buffer = keep_buffer(tensor.buffer)
        tensors.append(tensor)
    for entry in model.metadata or []:
        entry.buffer = keep_buffer(entry.buffer)
    for op in operators:
        op.inputs = [tensor_map[t] if t >= 0 else -1 for t in op.inputs]
        op.outputs = [tensor_map[t] for t in op.outputs]
        if op.intermediates:
            op.intermediates = [tensor_map[t] for t in op.intermediates]
    graph.inputs = [tensor_map[t] for t in graph.inputs]
    graph.outputs = [tensor_map[output]]
    graph.operators = operators
    graph.tensors = tensors
    model.buffers = buffers
    for signature in model.signatureDefs or []:
        for entry in signature.inputs or []:
            entry.tensorIndex = tensor_map[entry.tensorIndex]
        out = tfl.TensorMapT()
        out.name = "output_0"
        out.tensorIndex = tensor_map[output]
        signature.outputs = [out]
    return pack_model(model)


def dead_layers(inference_model_bytes: bytes, k: int) -> tuple[int, ...]:
    """Nodes of prefix ``k`` with no path to its output (a side branch the prefix does not
    end on): in that prefix they run forward only, with no backward pass or update."""
    graph = _one_subgraph(unpack_model(inference_model_bytes))
    n = len(graph.operators)
    if not 1 <= k <= n:
        raise ValueError(f"prefix length k must be in 1..{n}, got {k!r}")
    needed = {graph.operators[k - 1].outputs[0]}
    live: set[int] = set()
    for i in range(k - 1, -1, -1):
        op = graph.operators[i]
        if any(t in needed for t in op.outputs):
            live.add(i)
            needed.update(t for t in op.inputs if t >= 0)
    return tuple(i for i in range(k) if i not in live)


def trainable_prefixes(inference_model_bytes: bytes, *, optimizer: str | Optimizer,
                       trainable: Collection[int] | None = None) -> list[tuple[int, bytes]]:
    """(k, trainable model of prefix k) for k = 1..n, each trained with MSE
    (``PREFIX_LOSS``); prefix n is the whole model with that loss.

    ``trainable``: layers of the whole model whose weights train (default: every layer with
    weights); prefix k trains those among its first k. A prefix with none of them (leading
    weightless or frozen layers) is made with no trainable layer: forward and loss only, as
    those layers cost in the full model. ``ValueError`` as ``trainable_from_model`` raises
    it (a layer without weights named in ``trainable``, a layer without a gradient rule)."""
    n = layer_count(inference_model_bytes)
    chosen = None if trainable is None else set(trainable)
    if chosen is not None:
        outside = sorted(i for i in chosen if not 0 <= i < n)
        if outside:
            raise ValueError(f"trainable layers {outside} are not layers of the model "
                             f"(0..{n - 1})")
    out = []
    for k in range(1, n + 1):
        prefix = prefix_model(inference_model_bytes, k)
        mine = None if chosen is None else {i for i in chosen if i < k}
        out.append((k, trainable_from_model(
            prefix, loss=PREFIX_LOSS, optimizer=optimizer, trainable=mine,
            description=f"joulefarm trainable prefix: first {k} of {n} layers")))
    return out


def baseline_model(inference_model_bytes: bytes, *, optimizer: str | Optimizer) -> bytes:
    """Prefix 0, trainable: the model's input through one RESHAPE to its own shape, trained
    with the prefixes' loss. Its step is the work every prefix's step does besides its
    layers (the invoke, the loss and its gradient on an input-sized tensor, the loop): E(0),
    which the first layer's difference would otherwise hold whole."""
    graph = _one_subgraph(unpack_model(inference_model_bytes))
    if len(graph.inputs) != 1:
        raise ModelError(f"prefixes are cut from a model of one input, got {len(graph.inputs)}")
    shape = tuple(int(d) for d in shape_of(graph.tensors[graph.inputs[0]]))
    identity = build_model(shape, [Reshape(shape)], name="prefix 0")
    return trainable_from_model(identity, loss=PREFIX_LOSS, optimizer=optimizer,
                                description="joulefarm trainable prefix: no layer (baseline)")

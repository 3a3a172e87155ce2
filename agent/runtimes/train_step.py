"""A trainable model (``joulefarm.tflite.training``) made ready for the per-op profiler.

The profiler (``agent.runtimes.profiler``) runs a model's first signature and reads the events
of subgraph 0. A trainable model's ``train`` signature runs another subgraph, so
``train_first`` reorders the subgraphs (and the signatures) so that ``train``'s comes first:
node for node the same ops, the same node indices, hence the same (layer, phase) tags
(``training_info(model).ops("train")``). Nothing else changes: the other subgraphs keep their
ops, and every CALL_ONCE and signature is pointed at its subgraph's new index.

A model with a ``train`` signature but without joulefarm's training metadata (converted by
TensorFlow's converter, say) runs too: its ops carry no layer or phase, so each is tagged
``UNTAGGED`` with its op name, and the step is reported per op type; its variables, which such
a model leaves for a checkpoint to fill, get initial values (``variable_init``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.runtimes.variable_init import initialise_variables, needs_initialisation
from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import (
    decode_name,
    numpy_dtype,
    op_name,
    pack_model,
    shape_of,
    unpack_model,
)
from joulefarm.tflite.schema import tfl
from joulefarm.tflite.training import TrainingInfo, training_info
from joulefarm.tflite.training.phases import METADATA_NAME

TRAIN_SIGNATURE = "train"
UNTAGGED = "untagged"
"""The phase of every op of a model that does not say which layer and phase its ops are."""
TARGET_NAME = "y_true"
"""The ``train`` signature's target input, as ``trainable_model`` names it."""


@dataclass(frozen=True)
class TrainStep:
    """A trainable model with ``train`` as subgraph 0, its tags and a seeded batch."""

    model_bytes: bytes
    info: TrainingInfo | None
    """None for a model without joulefarm's training metadata."""
    tags: tuple[tuple[int | None, str, str], ...]
    """(layer, op, phase) of each op of subgraph 0: the layer's op and its phase from the
    metadata (op ``""`` for model-wide work), else (None, the op's name, ``UNTAGGED``)."""
    inputs: tuple[np.ndarray, ...]
    """The batch and its targets, in subgraph 0's input order."""


def _custom_ops(model: tfl.ModelT, graph: tfl.SubGraphT) -> list[str]:
    names = []
    for op in graph.operators or []:
        if op_name(model, op) == "CUSTOM":
            code = model.operatorCodes[op.opcodeIndex]
            names.append(decode_name(code.customCode) or "CUSTOM")
    return sorted(set(names))


def train_step(model_bytes: bytes, seed: int = 0) -> TrainStep:
    """``model_bytes`` with its ``train`` subgraph first, and a seeded batch for it: inputs
    uniform in [-1, 1); targets one-hot rows for softmax cross-entropy (the loss expects
    distributions), uniform values for MSE; integer inputs (a converted model's labels) 0 or
    1. ``ModelError`` for a model without a ``train`` signature, or whose train subgraph
    needs custom ops (naming them)."""
    model = unpack_model(model_bytes)
    keys = [decode_name(s.signatureKey) for s in model.signatureDefs or []]
    if TRAIN_SIGNATURE not in keys:
        raise ModelError(f"the model has no {TRAIN_SIGNATURE!r} signature (signatures: "
                         f"{', '.join(keys) or 'none'}); make one with "
                         "joulefarm.tflite.training.trainable_from_model")
    train = model.signatureDefs[keys.index(TRAIN_SIGNATURE)].subgraphIndex
    custom = _custom_ops(model, model.subgraphs[train])
    if custom:
        raise ModelError(f"the train signature uses custom ops ({', '.join(custom)}): train "
                         "mode runs builtin ops only (convert without them, e.g. without "
                         "SELECT_TF_OPS)")
    info = _info(model_bytes)
    if info is None and needs_initialisation(model, train):
        # A converted model: its variables are a checkpoint's to fill (variable_init).
        initialise_variables(model, train, seed)
    order = list(range(len(model.subgraphs)))
    order[0], order[train] = train, 0
    new_index = {old: new for new, old in enumerate(order)}
    model.subgraphs = [model.subgraphs[i] for i in order]
    for signature in model.signatureDefs:
        signature.subgraphIndex = new_index[signature.subgraphIndex]
    # LiteRT's CompiledModel runs signature 0: the train signature must be first.
    model.signatureDefs = sorted(model.signatureDefs, key=lambda s: s.subgraphIndex)
    for graph in model.subgraphs:
        for op in graph.operators or []:
            options = op.builtinOptions
            if options is not None and hasattr(options, "initSubgraphIndex"):
                options.initSubgraphIndex = new_index[options.initSubgraphIndex]
    graph = model.subgraphs[0]
    if info is not None:
        tags = tuple((tag.layer, "" if tag.layer is None else info.layers[tag.layer], tag.phase)
                     for tag in info.ops(TRAIN_SIGNATURE))
    else:
        tags = tuple((None, op_name(model, op), UNTAGGED) for op in graph.operators or [])
    loss = info.loss if info is not None else None
    rng = np.random.default_rng(seed)
    inputs = []
    for t in graph.inputs or []:
        tensor = graph.tensors[int(t)]
        shape = tuple(int(d) for d in shape_of(tensor))
        dtype = numpy_dtype(tensor.type)
        if decode_name(tensor.name) == TARGET_NAME and loss == "softmax_cross_entropy":
            rows = int(np.prod(shape[:-1]))
            labels = rng.integers(0, shape[-1], rows)
            inputs.append(np.eye(shape[-1], dtype=np.float32)[labels].reshape(shape))
        elif dtype is not None and np.issubdtype(dtype, np.integer):
            inputs.append(rng.integers(0, 2, shape).astype(dtype))
        elif dtype is not None and np.issubdtype(dtype, np.floating):
            inputs.append(rng.uniform(-1.0, 1.0, shape).astype(dtype))
        else:
            raise ModelError(f"train signature input {decode_name(tensor.name)!r}: no batch of "
                             f"tensor type {tensor.type} can be made")
    return TrainStep(pack_model(model), info, tags, tuple(inputs))


def _info(model_bytes: bytes) -> TrainingInfo | None:
    """The model's training metadata, or None when it has none (a converted model)."""
    try:
        return training_info(model_bytes)
    except ModelError as e:
        if METADATA_NAME in str(e):
            return None
        raise

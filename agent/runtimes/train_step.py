"""A trainable model (``joulefarm.tflite.training``) made ready for the per-op profiler.

The profiler (``agent.runtimes.profiler``) runs a model's first signature and reads the events
of subgraph 0. A trainable model's ``train`` signature runs another subgraph, so
``train_first`` reorders the subgraphs (and the signatures) so that ``train``'s comes first:
node for node the same ops, the same node indices, hence the same (layer, phase) tags
(``training_info(model).ops("train")``). Nothing else changes: the other subgraphs keep their
ops, and every CALL_ONCE and signature is pointed at its subgraph's new index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import decode_name, op_name, pack_model, shape_of, unpack_model
from joulefarm.tflite.schema import tfl
from joulefarm.tflite.training import TrainingInfo, training_info

TRAIN_SIGNATURE = "train"
TARGET_NAME = "y_true"
"""The ``train`` signature's target input, as ``trainable_model`` names it."""


@dataclass(frozen=True)
class TrainStep:
    """A trainable model with ``train`` as subgraph 0, its tags and a seeded batch."""

    model_bytes: bytes
    info: TrainingInfo
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
    distributions), uniform values for MSE. ``ModelError`` for a model without a ``train``
    signature or joulefarm's training metadata, or whose train subgraph needs custom ops."""
    model = unpack_model(model_bytes)
    keys = [decode_name(s.signatureKey) for s in model.signatureDefs or []]
    if TRAIN_SIGNATURE not in keys:
        raise ModelError(f"the model has no {TRAIN_SIGNATURE!r} signature (signatures: "
                         f"{', '.join(keys) or 'none'}); make one with "
                         "joulefarm.tflite.training.trainable_from_model")
    info = training_info(model_bytes)
    train = model.signatureDefs[keys.index(TRAIN_SIGNATURE)].subgraphIndex
    custom = _custom_ops(model, model.subgraphs[train])
    if custom:
        raise ModelError(f"the train signature uses custom ops ({', '.join(custom)}): train "
                         "mode runs builtin ops only")
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
    rng = np.random.default_rng(seed)
    inputs = []
    for t in graph.inputs or []:
        tensor = graph.tensors[int(t)]
        shape = tuple(int(d) for d in shape_of(tensor))
        if decode_name(tensor.name) == TARGET_NAME and info.loss == "softmax_cross_entropy":
            rows = int(np.prod(shape[:-1]))
            labels = rng.integers(0, shape[-1], rows)
            inputs.append(np.eye(shape[-1], dtype=np.float32)[labels].reshape(shape))
        else:
            inputs.append(rng.uniform(-1.0, 1.0, shape).astype(np.float32))
    return TrainStep(pack_model(model), info, tuple(inputs))

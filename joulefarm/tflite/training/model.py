"""Trainable models: ``infer``, ``train`` and ``weights`` signatures over resource variables.

The layout is the one TensorFlow's converter gives on-device training models (what Android's
``Interpreter.runSignature`` runs): one subgraph per signature, each starting with CALL_ONCE of
an initialisation subgraph that assigns the weights' initial values to their variables, so
the weights live in the interpreter between calls and ``train`` changes what ``infer`` sees.

- ``infer(x) -> y``: the inference model's nodes, weights read from their variables.
- ``train(x, y_true) -> loss``: the same forward pass, the loss, the backward pass of every
  node between a trainable layer and the loss (``gradients.RULES``), the optimizer's update
  of every trainable weight (right after its gradient, so gradients die early and the arena
  stays small). ``gradient_outputs=True`` adds each weight's gradient as an output
  ``grad/<variable>`` (for checking; the ops are the same).
- ``weights() -> {<variable>: value}``: the trainable weights' current values.

Every op is tagged with its layer and phase; ``phases.training_info`` reads the tags back.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from joulefarm.tflite.builder import LayerSpec, build_model
from joulefarm.tflite.training import emit, losses
from joulefarm.tflite.training.gradients import RULES, Backward, activation_gradient
from joulefarm.tflite.training.optimizers import Optimizer, Updater, Variable, optimizer_from
from joulefarm.tflite.training.phases import METADATA_NAME, TrainingInfo, encode, signature_ops
from joulefarm.tflite.training.source import Node, SourceModel, Weight
from joulefarm.tflite.training.spatial_gradients import SPATIAL_RULES
from joulefarm.tflite.training.writer import ModelWriter, SubgraphWriter

_RULES = {**RULES, **SPATIAL_RULES}


def trainable_model(layers: Sequence[LayerSpec], input_shape: Sequence[int], *, loss: str,
                    optimizer: str | Optimizer, batch_size: int,
                    trainable: Collection[int] | None = None, seed: int = 0,
                    name: str = "model", gradient_outputs: bool = False) -> bytes:
    """A trainable model of ``layers`` (``builder`` specs) on inputs of ``input_shape`` (one
    example, without the batch), for batches of ``batch_size``.

    ``loss``: ``"mse"`` or ``"softmax_cross_entropy"`` (``losses``). ``optimizer``:
    ``"sgd"``, ``"adam"`` or an ``SGD``/``Adam`` with its settings. ``trainable``: the
    indices of the layers whose weights train (default: every layer with weights); the others
    keep their weights as constants, yet pass the gradient on to trainable layers before
    them. The initial weights are ``build_model``'s for ``seed``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = build_model((batch_size, *input_shape), layers, seed=seed, name=name)
    return trainable_from_model(model, loss=loss, optimizer=optimizer, trainable=trainable,
                                gradient_outputs=gradient_outputs,
                                description=f"joulefarm trainable: {name} (seed {seed})")


def trainable_from_model(model_bytes: bytes, *, loss: str, optimizer: str | Optimizer,
                         trainable: Collection[int] | None = None,
                         gradient_outputs: bool = False,
                         description: str = "joulefarm trainable model") -> bytes:
    """A trainable model made from a float32 inference model of one input and one output
    (a recipe's, a sweep's), at that model's batch size; see ``trainable_model``."""
    if loss not in losses.LOSSES:
        raise ValueError(f"loss must be one of {losses.LOSSES}, got {loss!r}")
    source = SourceModel(model_bytes)
    return _Assembler(source, loss, optimizer_from(optimizer), trainable, gradient_outputs,
                      description).build()


class _Assembler:
    def __init__(self, source: SourceModel, loss: str, optimizer: Optimizer,
                 trainable: Collection[int] | None, gradient_outputs: bool,
                 description: str) -> None:
        self.source = source
        self.loss = loss
        self.optimizer = optimizer
        self.gradient_outputs = gradient_outputs
        with_weights = {node.index for node in source.nodes if source.weights(node)}
        if trainable is None:
            chosen = with_weights
        else:
            chosen = set(trainable)
            unknown = sorted(chosen - with_weights)
            if unknown:
                raise ValueError(f"layers {unknown} have no weights to train (layers with "
                                 f"weights: {sorted(with_weights)})")
        self.trainable = chosen
        self.weights: dict[int, list[Weight]] = {
            node.index: source.weights(node) for node in source.nodes if node.index in chosen}
        self.m = ModelWriter(description)
        self.infer = self.m.subgraph("infer")
        self.train = self.m.subgraph("train")
        self.read = self.m.subgraph("weights")
        self.init = self.m.subgraph("init")

    # ------------------------------------------------------------ variables

    def _variables(self) -> list[Variable]:
        out = []
        for weights in self.weights.values():
            for w in weights:
                out.append(Variable(w.variable, w.value.shape, value=w.value))
                out.extend(self.optimizer.slots(w.variable, w.value.shape))
        if self.weights:
            out.extend(self.optimizer.globals())
        return out

    def _write_init(self) -> None:
        g = self.init
        with g.phase(None, "init"):
            for v in self._variables():
                handle = emit.var_handle(g, v.name)
                if v.value is not None:
                    value = g.const(v.value, v.name)
                elif v.shape:
                    value = g.emit("FILL", [g.const(list(v.shape), dtype=np.int32),
                                            g.const(float(v.fill or 0.0))], v.shape,
                                   f"{v.name}/fill")
                else:
                    value = g.const(float(v.fill or 0.0), v.name)
                emit.assign_variable(g, handle, value)

    # ------------------------------------------------------------ forward

    def _forward(self, g: SubgraphWriter
                 ) -> tuple[dict[int, int], dict[int, tuple[Weight, int, int]]]:
        """Write the forward pass into ``g``: (source tensor -> tensor of ``g``, source
        tensor of each trainable weight -> (weight, variable handle, value read))."""
        with g.phase(None, "init"):
            emit.call_once(g, self.m.index(self.init))
        source = self.source
        x = g.tensor(source.shape(source.input), "x")
        tensors = {source.input: x}
        variables: dict[int, tuple[Weight, int, int]] = {}
        for node in source.nodes:
            weights = {w.position: w for w in self.weights.get(node.index, [])}
            with g.phase(node.index, "forward"):
                inputs = []
                for position, t in enumerate(node.inputs):
                    if t < 0:
                        inputs.append(-1)
                    elif t in tensors:
                        inputs.append(tensors[t])
                    elif position in weights:
                        w = weights[position]
                        handle = emit.var_handle(g, w.variable)
                        value = emit.read_variable(g, handle, w.value.shape, w.variable)
                        variables[t] = (w, handle, value)
                        tensors[t] = value
                        inputs.append(value)
                    else:
                        constant = source.constant(t)
                        if constant is None:
                            raise ValueError(f"node {node.index} ({node.op}) reads tensor {t}, "
                                             "which nothing before it writes")
                        tensors[t] = g.const(constant)
                        inputs.append(tensors[t])
                outputs = []
                for t in node.outputs:
                    outputs.append(g.tensor(source.shape(t), f"{node.index}_{node.op.lower()}",
                                            source.tensor_type(t)))
                    tensors[t] = outputs[-1]
                g.op(node.op, inputs, outputs, node.options_type, node.options)
        return tensors, variables

    # ------------------------------------------------------------ train

    def _requires_grad(self) -> set[int]:
        """Source tensors on a path from a trainable weight (their gradient is needed)."""
        needed: set[int] = set()
        for node in self.source.nodes:
            if node.index in self.trainable or any(t in needed for t in node.inputs):
                needed.update(node.outputs)
        return needed

    def _write_train(self) -> dict[str, int]:
        g, source = self.train, self.source
        tensors, variables = self._forward(g)
        y = tensors[source.output]
        target = g.tensor(source.shape(source.output), "y_true")
        last = next(node for node in reversed(source.nodes) if source.output in node.outputs)
        grads: dict[int, int] = {}
        skip: set[int] = set()
        with g.phase(None, "loss"):
            if (self.loss == "softmax_cross_entropy" and last.op == "SOFTMAX"
                    and float(getattr(last.options, "beta", 1.0) or 1.0) == 1.0):
                logits = last.inputs[0]
                loss, grads[logits] = losses.softmax_cross_entropy(g, tensors[logits], target,
                                                                   probs=y)
                skip.add(last.index)
            elif self.loss == "softmax_cross_entropy":
                loss, grads[source.output] = losses.softmax_cross_entropy(g, y, target)
            else:
                loss, grads[source.output] = losses.mse(g, y, target)
        outputs = {"loss": loss}
        needed = self._requires_grad()
        updater = Updater(g, self.optimizer)
        if self.weights:
            with g.phase(None, "update"):
                updater.begin_step()
        for node in reversed(source.nodes):
            if node.index in skip or node.outputs[0] not in grads:
                continue
            weights = {w.position: w for w in self.weights.get(node.index, [])}
            wanted = {p for p, t in enumerate(node.inputs) if t in needed} | set(weights)
            if not wanted:
                continue
            self._backward(g, node, tensors, grads, wanted, weights)
            for position, w in weights.items():
                _, handle, value = variables[node.inputs[position]]
                grad = grads.pop(node.inputs[position])
                if self.gradient_outputs:
                    outputs[f"grad/{w.variable}"] = grad
                with g.phase(node.index, "update"):
                    updater.update(handle, w.variable, value, grad)
        self.m.signature("train", g, {"x": tensors[source.input], "y_true": target}, outputs)
        return outputs

    def _backward(self, g: SubgraphWriter, node: Node, tensors: dict[int, int],
                  grads: dict[int, int], wanted: set[int], weights: dict[int, Weight]) -> None:
        if node.op not in _RULES:
            raise ValueError(f"layer {node.index} ({node.op}) lies between a trainable layer "
                             "and the loss, and joulefarm has no gradient for it")
        if len(node.outputs) != 1:
            raise ValueError(f"layer {node.index} ({node.op}): gradients need one output")
        out = tensors[node.outputs[0]]
        with g.phase(node.index, "backward-activation"):
            dz = activation_gradient(g, node.activation, out, grads[node.outputs[0]])
        inputs = [tensors[t] if t >= 0 else -1 for t in node.inputs]
        b = Backward(g, node, node.index, inputs, out, wanted)
        _RULES[node.op](b, dz)
        missing = wanted - set(b.grads)
        if missing:
            raise AssertionError(f"{node.op}: no gradient for inputs {sorted(missing)}")
        for position, grad in sorted(b.grads.items()):
            t = node.inputs[position]
            if position in weights or t not in grads:
                grads[t] = grad
            else:  # a tensor several layers read: their gradients add up
                with g.phase(node.index, "backward-input"):
                    grads[t] = emit.add(g, grads[t], grad, "grad_sum")

    # ------------------------------------------------------------ assemble

    def build(self) -> bytes:
        tensors, _ = self._forward(self.infer)
        self.m.signature("infer", self.infer, {"x": tensors[self.source.input]},
                         {"y": tensors[self.source.output]})
        self._write_train()
        g = self.read
        with g.phase(None, "init"):
            emit.call_once(g, self.m.index(self.init))
        reads = {}
        with g.phase(None, "read"):
            for weights in self.weights.values():
                for w in weights:
                    reads[w.variable] = emit.read_variable(g, emit.var_handle(g, w.variable),
                                                           w.value.shape, w.variable)
        self.m.signature("weights", g, {}, reads)
        self._write_init()
        info = TrainingInfo(
            loss=self.loss, optimizer=self.optimizer.describe(),
            batch_size=self.source.shape(self.source.input)[0],
            layers=tuple(node.op for node in self.source.nodes),
            trainable=frozenset(self.trainable), variables=tuple(reads),
            signatures={key: signature_ops(self.m.index(sub), sub.tags) for key, sub in
                        (("infer", self.infer), ("train", self.train), ("weights", self.read))})
        self.m.add_metadata(METADATA_NAME, encode(info))
        return self.m.finish()

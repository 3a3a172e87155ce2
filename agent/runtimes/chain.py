"""Run a model as a chain of single-layer interpreters, or whole, with the same inputs.

``LayerChain`` is what the agent times: ``feed`` pushes one inference through the chain, which
leaves every layer's interpreter holding exactly the inputs that layer sees in the real model;
then ``invoke_layer(i)`` re-runs layer ``i`` alone on them, as often as the measurement needs,
with nothing but ``interpreter.invoke()`` in the loop. ``LayerPairs`` does the same for
adjacent data-dependent pairs of layers, each pair in one interpreter (the fusion check).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# A module import, not a name: agent.runtimes.backend imports joulefarm.errors, so either package
# may be imported first while the other is half-initialised.
import agent.runtimes.backend as runtime
from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import numpy_dtype, per_tensor_quantization, shape_of
from joulefarm.tflite.graph import load_graph
from joulefarm.tflite.inputs import GivenShapes, InputPlan, given_pairs, resolve_input_shapes
from joulefarm.tflite.parse import LayerInfo, read_layers
from joulefarm.tflite.split import (
    LayerModel,
    computed_shape_operands,
    freeze_inputs,
    pair_model,
    split_model,
)

TensorSpec = tuple[tuple[int, ...], np.dtype, tuple[float, int] | None]
"""(shape, dtype, (scale, zero point) or None) of a model input."""


def random_array(shape: Sequence[int], dtype: np.dtype | type, rng: np.random.Generator,
                 quantization: tuple[float, int] | None = None) -> np.ndarray:
    """A random array: standard normal floats; for quantised integer tensors (``quantization``
    = (scale, zero point), scale > 0) standard normal values quantised with those parameters,
    so that they look like the float data the model was calibrated on; other integers small and
    non-negative (they are usually indices or sizes), bools fair coin flips."""
    dtype = np.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if quantization is not None and quantization[0] > 0:
            scale, zero_point = quantization
            values = np.round(rng.standard_normal(shape) / scale) + zero_point
            return np.clip(values, info.min, info.max).astype(dtype)
        return rng.integers(0, 9, shape, endpoint=True).astype(dtype)
    raise ModelError(f"cannot make random inputs of dtype {dtype}")


def _as_inputs(inputs: Sequence[np.ndarray], specs: Sequence[TensorSpec]) -> list[np.ndarray]:
    if len(inputs) != len(specs):
        raise ValueError(f"model has {len(specs)} inputs, got {len(inputs)}")
    arrays = []
    for i, (array, (_, dtype, _)) in enumerate(zip(inputs, specs, strict=True)):
        array = np.asarray(array)
        if array.dtype != dtype:
            raise ValueError(f"input {i} must be {dtype}, got {array.dtype}")
        arrays.append(np.ascontiguousarray(array))
    return arrays


def _set_input(interpreter: Any, index: int, array: np.ndarray) -> bool:
    """Resize input ``index`` if ``array`` has another shape; True if it did (then allocate)."""
    if _input_shape(interpreter, index) == array.shape:
        return False
    interpreter.resize_tensor_input(index, list(array.shape), strict=False)
    return True


def _load_inputs(interpreter: Any, indices: Sequence[int], arrays: Sequence[np.ndarray],
                 what: str) -> None:
    """Set an interpreter's inputs, resizing (and reallocating) first where shapes differ."""
    resized = [_set_input(interpreter, i, a) for i, a in zip(indices, arrays, strict=True)]
    if any(resized):
        _allocate(interpreter, what)
    for index, array in zip(indices, arrays, strict=True):
        interpreter.set_tensor(index, array)


def _io_indices(interpreter: Any, model: LayerModel) -> tuple[list[int], list[int]]:
    """The interpreter's input and output tensor indices, checked against the split."""
    ins = [d["index"] for d in interpreter.get_input_details()]
    outs = [d["index"] for d in interpreter.get_output_details()]
    if len(ins) != len(model.input_tensors) or len(outs) != len(model.output_tensors):
        raise ModelError(f"node {'+'.join(map(str, model.nodes))} ({model.op}): the runtime "
                         f"reports {len(ins)} inputs/{len(outs)} outputs, the split "
                         f"{len(model.input_tensors)}/{len(model.output_tensors)}")
    return ins, outs


def _allocate(interpreter: Any, what: str) -> None:
    try:
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{what}: the runtime could not allocate tensors for the new input "
                         f"shapes: {' '.join(str(exc).split())}") from exc


def _input_shape(interpreter: Any, index: int) -> tuple[int, ...]:
    for detail in interpreter.get_input_details():
        if detail["index"] == index:
            return tuple(int(d) for d in detail["shape"])
    raise KeyError(index)


class _SubModels:
    """The interpreters of a list of sub-models. A sub-model whose output shape depends on an
    input computed at run time (``computed_shape_operands``) gets its interpreter only when the
    values are known (``prepare``): those inputs are then frozen to the values the real model
    computed, so that its outputs are static, as every runtime can bind them (the LiteRT C API
    cannot bind dynamic outputs), and rebuilt if a later inference computes other values.

    ``lazy``: every sub-model gets its interpreter at the first ``prepare``, sized for the
    values it is fed. For a model run at other input shapes than its file's: the shapes stored
    for its inner tensors are then placeholders that a layer may not even allocate at (a
    convolution wider than a placeholder dimension of 1)."""

    def __init__(self, model_bytes: bytes, models: list[LayerModel],
                 options: dict[str, Any],
                 on_load: Callable[[int, int], None] | None = None, *,
                 lazy: bool = False) -> None:
        self._source = model_bytes
        self._options = options
        self._lazy = lazy
        self._on_load = on_load
        self.originals = list(models)
        self.models = list(models)
        graph = load_graph(model_bytes)  # once: per layer it was quadratic in the layers
        self._deferred = [computed_shape_operands(graph, m) for m in models]
        self._frozen: list[dict[int, np.ndarray]] = [{} for _ in models]
        self.interpreters: list[Any] = [None] * len(models)
        self.inputs: list[list[int]] = [[] for _ in models]
        self.outputs: list[list[int]] = [[] for _ in models]
        self.invokers: list[Callable[[], None]] = [_not_fed] * len(models)
        if lazy:
            return
        for k, model in enumerate(models):
            if on_load:
                on_load(k, len(models))
            if not self._deferred[k]:
                try:
                    self._load(k, model)
                except ModelError:
                    # The file's shapes of its inner tensors may be a converter's placeholders
                    # it cannot allocate at (a CONV_2D input stored as [1, 1]): build it at the
                    # first feed, sized for what it is fed; a failure there names the layer.
                    self.interpreters[k] = None

    def _load(self, k: int, model: LayerModel,
              input_shapes: list[tuple[int, ...]] | None = None) -> None:
        interpreter = runtime.load_interpreter(model.model_bytes, input_shapes=input_shapes,
                                               **self._options)
        self.models[k] = model
        self.interpreters[k] = interpreter
        self.inputs[k], self.outputs[k] = _io_indices(interpreter, model)
        self.invokers[k] = interpreter.invoke

    def prepare(self, k: int, values: dict[int, np.ndarray]) -> None:
        """Make sure sub-model ``k`` has an interpreter fit for this inference's ``values``."""
        wanted = {t: values[t] for t in self._deferred[k] if values[t].size}
        frozen = self._frozen[k]
        if self.interpreters[k] is not None and wanted.keys() == frozen.keys() and all(
                np.array_equal(wanted[t], frozen[t]) for t in wanted):
            return
        if self._lazy and self.interpreters[k] is None and self._on_load:
            self._on_load(k, len(self.models))
        self._frozen[k] = wanted
        model = (self.originals[k] if not self._deferred[k]
                 else freeze_inputs(self._source, self.originals[k], wanted))
        # Sized as this inference's inputs: the file's shapes may not fit the frozen values.
        try:
            self._load(k, model, [values[t].shape for t in model.input_tensors])
        except ModelError as exc:
            shapes = ", ".join(str(list(values[t].shape)) for t in model.input_tensors)
            raise ModelError(f"node {model.index} ({model.op}) cannot run on its own at the "
                             f"shapes the model feeds it ({shapes}): {exc}") from exc


def _not_fed() -> None:
    raise ModelError("this layer's sub-model is built on the first feed (its output shape is "
                     "computed at run time): call feed() first")


class WholeModel:
    """The unsplit model in one interpreter: the reference the chain is checked against.

    Its inputs are sized by ``joulefarm.tflite.inputs.resolve_input_shapes`` from
    ``input_shapes`` (by input name or position) before the interpreter allocates: an input
    with a dynamic dimension other than the batch and no shape given is an ``InputError``."""

    def __init__(self, model_bytes: bytes, *, num_threads: int = 1,
                 use_xnnpack: bool = False, delegate_path: str | None = None,
                 input_shapes: GivenShapes | None = None) -> None:
        self.model_bytes = bytes(model_bytes)
        self.input_plan: InputPlan = resolve_input_shapes(self.model_bytes, input_shapes)
        """The shape each input runs at, and which were given or defaulted."""
        # What a LayerChain of the same model needs to run as this one does (``run_layers``).
        self._options: dict[str, Any] = {
            "num_threads": num_threads, "use_xnnpack": use_xnnpack,
            "delegate_path": delegate_path, "input_shapes": given_pairs(input_shapes)}
        self.interpreter = runtime.load_interpreter(
            self.model_bytes, num_threads=num_threads, use_xnnpack=use_xnnpack,
            delegate_path=delegate_path,
            input_shapes=self.input_plan.shapes if self.input_plan.resized else None)
        self._inputs = [d["index"] for d in self.interpreter.get_input_details()]
        self._outputs = [d["index"] for d in self.interpreter.get_output_details()]
        self.input_specs: list[TensorSpec] = [
            (tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]),
             tuple(d["quantization"]) if d["quantization"][0] else None)
            for d in self.interpreter.get_input_details()
        ]
        """(shape, dtype, quantisation) of each model input."""
        self.invoke: Callable[[], None] = self.interpreter.invoke
        """Run one inference on the inputs set last (the bare bound ``invoke``)."""

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [random_array(shape, dtype, rng, q) for shape, dtype, q in self.input_specs]

    def set_inputs(self, inputs: Sequence[np.ndarray]) -> None:
        arrays = _as_inputs(inputs, self.input_specs)
        resized = [_set_input(self.interpreter, i, a)
                   for i, a in zip(self._inputs, arrays, strict=True)]
        if any(resized):
            _allocate(self.interpreter, "whole model")
        for index, array in zip(self._inputs, arrays, strict=True):
            self.interpreter.set_tensor(index, array)

    def outputs(self) -> list[np.ndarray]:
        """Copies of the model outputs after the last ``invoke``."""
        return [self.interpreter.get_tensor(i) for i in self._outputs]

    def tensor_shapes(self) -> dict[int, tuple[int, ...]]:
        """Every tensor's shape as the runtime sized it for the inputs set last, by tensor
        index (call it after an ``invoke``: tensors whose shapes are computed at run time are
        sized during it); empty where the runtime reaches only the model's inputs and outputs
        (litert-c)."""
        details = getattr(self.interpreter, "get_tensor_details", None)
        if details is None:
            return {}
        try:
            return {int(d["index"]): tuple(int(x) for x in d["shape"]) for d in details()}
        except (ValueError, RuntimeError, KeyError):
            return {}

    def run_layers(self, seed: int = 0) -> list[LayerInfo]:
        """The layers' features (``read_layers``) at the shapes this model runs at: the file's
        when the inputs keep their stored shapes; else the shapes of one inference on seeded
        random inputs (every tensor's from the runtime, or, where it reaches only inputs and
        outputs, from a ``LayerChain`` of the model run on the same inputs)."""
        inputs = self.random_inputs(seed)
        self.set_inputs(inputs)
        self.invoke()
        shapes = self.tensor_shapes()
        if shapes:
            return read_layers(self.model_bytes, shapes=shapes)
        if not self.input_plan.resized:
            return read_layers(self.model_bytes)
        chain = LayerChain(self.model_bytes, **self._options)
        chain.feed(inputs)
        return chain.layers


def run_layers(model_bytes: bytes, *, seed: int = 0, input_shapes: GivenShapes | None = None,
               **options: Any) -> list[LayerInfo]:
    """``read_layers`` at the shapes ``model_bytes`` runs at with ``input_shapes``
    (``WholeModel.run_layers``; no runtime is loaded when the inputs keep their stored
    shapes). ``options``: those of ``WholeModel`` (threads, XNNPACK, delegate)."""
    if not resolve_input_shapes(model_bytes, input_shapes).resized:
        return read_layers(model_bytes)
    return WholeModel(model_bytes, input_shapes=input_shapes, **options).run_layers(seed)


class LayerChain:
    """One interpreter per layer sub-model, chained to compute the whole model."""

    def __init__(self, model_bytes: bytes, *, num_threads: int = 1,
                 use_xnnpack: bool = False, delegate_path: str | None = None,
                 input_shapes: GivenShapes | None = None,
                 on_load: Callable[[int, int], None] | None = None,
                 check: Callable[[], None] = lambda: None) -> None:
        """``on_load(k, n)`` is told before each of the ``n`` layer interpreters is built
        (a model of hundreds of layers takes a while). ``check`` is called for each layer as
        the model is split and run once; it may raise to give up (a cancelled benchmark).
        ``input_shapes`` (by input name or position) sizes the model inputs as ``WholeModel``'s
        do (``joulefarm.tflite.inputs.resolve_input_shapes``): ``input_specs`` and
        ``random_inputs`` have those shapes. When they differ from the file's, every layer's
        interpreter is built at the first ``feed``, sized for what the layer is fed there."""
        graph = load_graph(model_bytes)
        self.input_plan: InputPlan = resolve_input_shapes(model_bytes, input_shapes)
        """The shape each input runs at, and which were given or defaulted."""
        tensors = graph.subgraph.tensors
        self.model_bytes = bytes(model_bytes)
        """The model the chain was split from."""
        self.runtime_options: dict[str, Any] = {
            "num_threads": num_threads, "use_xnnpack": use_xnnpack,
            "delegate_path": delegate_path}
        """How every interpreter of the chain is configured (``LayerPairs`` uses the same)."""
        self._model_inputs = [int(t) for t in graph.subgraph.inputs or []]
        self._model_outputs = [int(t) for t in graph.subgraph.outputs or []]
        self.input_specs: list[TensorSpec] = []
        """(shape, dtype, quantisation) of each model input."""
        run_shapes = self.input_plan.by_tensor()
        for t in self._model_inputs:
            dtype = numpy_dtype(tensors[t].type)
            if dtype is None:
                raise ModelError(f"model input {t} has an unsupported type ({tensors[t].type})")
            self.input_specs.append((run_shapes.get(t, tuple(shape_of(tensors[t]))), dtype,
                                     per_tensor_quantization(tensors[t])))
        self._static_shapes = {t: tuple(shape_of(tensor)) for t, tensor in enumerate(tensors)}

        self._check = check
        self.layer_models: list[LayerModel] = split_model(model_bytes, check=check)
        by_index = {layer.index: layer for layer in read_layers(model_bytes)}
        self.layers: list[LayerInfo] = [by_index[m.index] for m in self.layer_models]
        """Features of each layer, in chain order. After ``feed``, shapes (and so MACs and
        bytes) reflect the shapes seen at run time if they differ from the file's."""
        self._subs = _SubModels(self.model_bytes, self.layer_models, self.runtime_options,
                                on_load, lazy=self.input_plan.resized)
        self.interpreters = self._subs.interpreters
        """Each layer's interpreter (built at the first ``feed`` for a layer whose output shape
        is computed at run time, and for every layer when the inputs are resized)."""
        self.invokers: list[Callable[[], None]] = self._subs.invokers
        """Bound ``invoke`` of each layer's interpreter: the hot loop calls these."""
        self.not_isolated: dict[int, str] = {}
        """Chain position -> why that layer cannot run on its own (found at ``feed``). Its
        outputs then come from the whole model run on the same inputs, so every other layer is
        still fed what it sees in the model and still measured."""
        self._reference: Any = None  # the whole model, every inner tensor kept (on need)

    def __len__(self) -> int:
        return len(self.layer_models)

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        """Seeded random arrays for the model inputs (see ``random_array``)."""
        rng = np.random.default_rng(seed)
        return [random_array(shape, dtype, rng, q) for shape, dtype, q in self.input_specs]

    def feed(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the chain once on ``inputs``; returns the model outputs.

        Afterwards every layer's interpreter holds the inputs it saw, so ``invoke_layer(i)``
        repeats layer ``i`` exactly as it ran inside the model.
        """
        values = self.tensor_values(inputs)
        return [values[t] for t in self._model_outputs]

    def tensor_values(self, inputs: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
        """Run the chain once (as ``feed``) and return every non-constant tensor's value, by
        original tensor index (for calibration and debugging)."""
        values: dict[int, np.ndarray] = dict(
            zip(self._model_inputs, _as_inputs(inputs, self.input_specs), strict=True)
        )
        arrays = [values[t] for t in self._model_inputs]
        reference: Any = None  # the whole model, run on these inputs (on need)
        subs = self._subs
        for k in range(len(subs.models)):
            self._check()
            m = subs.models[k]
            if k not in self.not_isolated:
                try:
                    subs.prepare(k, values)
                    m, it = subs.models[k], subs.interpreters[k]  # prepare may rebuild it
                    _load_inputs(it, subs.inputs[k], [values[t] for t in m.input_tensors],
                                 f"node {m.index} ({m.op})")
                    it.invoke()
                    for index, t in zip(subs.outputs[k], m.output_tensors, strict=True):
                        values[t] = it.get_tensor(index)
                    continue
                except (ModelError, RuntimeError, ValueError) as exc:
                    self._not_isolated(k, f"node {m.index} ({m.op}) cannot run on its own: "
                                          f"{' '.join(str(exc).split())}")
            if reference is None:
                reference = self._run_reference(arrays, k)
            for t in m.output_tensors:
                values[t] = reference.get_tensor(t)
        self._refresh_layers(values)
        return values

    def _not_isolated(self, k: int, reason: str) -> None:
        self.not_isolated[k] = reason

        def refuse() -> None:
            raise ModelError(reason)

        self.invokers[k] = refuse

    def _run_reference(self, arrays: list[np.ndarray], k: int) -> Any:
        """The whole model, every inner tensor kept, run on ``arrays``: where the outputs of
        layer ``k``, which cannot run on its own, are read."""
        try:
            if self._reference is None:
                self._reference = runtime.load_interpreter(
                    self.model_bytes, preserve_all_tensors=True,
                    input_shapes=[a.shape for a in arrays], **self.runtime_options)
            whole = self._reference
            _load_inputs(whole, [d["index"] for d in whole.get_input_details()], arrays,
                         "whole model")
            whole.invoke()
        except (ModelError, RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.not_isolated[k]}; and the whole model cannot give its "
                             f"outputs to the layers after it: {exc}") from exc
        return whole

    def adjacent_pairs(self) -> list[tuple[int, int]]:
        """Chain positions ``(i, i + 1)`` where layer ``i + 1`` reads an output of layer ``i``:
        the pairs a runtime could fuse."""
        models = self.layer_models
        return [(i, i + 1) for i in range(len(models) - 1)
                if set(models[i].output_tensors) & set(models[i + 1].input_tensors)]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model outputs for ``inputs``, computed layer by layer (same as ``feed``)."""
        return self.feed(inputs)

    def invoke_layer(self, i: int) -> None:
        """Re-run layer ``i`` (chain position) on the inputs the last ``feed`` gave it."""
        self.invokers[i]()

    def _refresh_layers(self, values: dict[int, np.ndarray]) -> None:
        observed = {t: tuple(a.shape) for t, a in values.items()}
        changed = {t: s for t, s in observed.items() if self._static_shapes.get(t) != s}
        if changed:
            by_index = {info.index: info for info in read_layers(self.model_bytes,
                                                                  shapes=observed)}
            self.layers = [by_index[m.index] for m in self.layer_models]
            self._static_shapes.update(changed)


class LayerPairs:
    """One interpreter per adjacent data-dependent pair of a chain's layers (``pair_model``),
    configured like the chain's. ``feed(chain.tensor_values(inputs))`` gives every pair the
    inputs it sees in the real model; ``invokers[k]`` then re-runs pair ``k`` alone."""

    def __init__(self, chain: LayerChain, check: Callable[[], None] = lambda: None) -> None:
        """``check`` is called for each pair as it is built and fed; it may raise to give up
        (a cancelled benchmark)."""
        self.positions: list[tuple[int, int]] = chain.adjacent_pairs()
        """Chain positions of the two layers of each pair."""
        self._check = check
        models = []
        for a, b in self.positions:
            check()
            models.append(pair_model(chain.model_bytes, chain.layer_models[a].index,
                                     chain.layer_models[b].index))
        self._subs = _SubModels(chain.model_bytes, models, chain.runtime_options,
                                lambda k, n: check(), lazy=chain.input_plan.resized)
        self.pair_models: list[LayerModel] = self._subs.models
        self.interpreters = self._subs.interpreters
        self.invokers: list[Callable[[], None]] = self._subs.invokers
        """Bound ``invoke`` of each pair's interpreter: the hot loop calls these."""
        self.not_isolated: dict[int, str] = {}
        """Pair index -> why that pair cannot run on its own (found at ``feed``)."""

    def __len__(self) -> int:
        return len(self.pair_models)

    def feed(self, values: dict[int, np.ndarray]) -> None:
        """Set every pair's inputs from the tensor values of one chain run
        (``LayerChain.tensor_values``)."""
        subs = self._subs
        for k in range(len(subs.models)):
            self._check()
            if k in self.not_isolated:
                continue
            m = subs.models[k]
            try:
                subs.prepare(k, values)
                _load_inputs(subs.interpreters[k], subs.inputs[k],
                             [values[t] for t in m.input_tensors], f"pair {m.op}")
            except (ModelError, RuntimeError, ValueError) as exc:
                # Like a layer that cannot run alone: the pair is left out, the rest measured.
                self.not_isolated[k] = (f"pair {m.op} cannot run on its own: "
                                        f"{' '.join(str(exc).split())}")

    def outputs(self, k: int) -> dict[int, np.ndarray]:
        """Pair ``k``'s outputs after its last invoke, by original tensor index."""
        it, m = self.interpreters[k], self.pair_models[k]
        return {t: it.get_tensor(i)
                for t, i in zip(m.output_tensors, self._subs.outputs[k], strict=True)}


def calibration_ranges(model_bytes: bytes, seed: int = 0, samples: int = 4
                       ) -> dict[int, tuple[float, float]]:
    """(low, high) of every float32 activation tensor over ``samples`` runs of the model on
    seeded random inputs (seeds ``seed`` .. ``seed + samples - 1``): what
    ``joulefarm.tflite.variants.quantize_int8`` calibrates with."""
    chain = LayerChain(model_bytes)
    ranges: dict[int, tuple[float, float]] = {}
    for k in range(samples):
        for t, value in chain.tensor_values(chain.random_inputs(seed + k)).items():
            if value.dtype == np.float32:
                low, high = ranges.get(t, (np.inf, -np.inf))
                ranges[t] = (min(low, float(value.min())), max(high, float(value.max())))
    return ranges

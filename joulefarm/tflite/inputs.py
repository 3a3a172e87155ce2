"""The shapes a model's inputs are run at: one rule for every runtime (``resolve_input_shapes``).

A model input may have dynamic dimensions: -1 in its ``shape_signature`` (an audio model that
takes any number of samples: ``[-1, -1]``). The file's ``shape`` then holds a placeholder, often
all 1s, that says nothing about the size the model is meant for. So the user gives the shape
(``joulefarm bench --input-shape NAME=1,16000``, or a suite model's ``input_shapes``), by input
name or by input position, and every runtime that runs the model (whole, layer by layer, in situ)
runs it at the shapes this module resolves. Nothing here imports a TFLite runtime.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from joulefarm.errors import InputError
from joulefarm.tflite.flatbuffer import decode_name, pack_model, shape_of, unpack_model

Shape = tuple[int, ...]

GivenShapes = Mapping[str, Sequence[int]] | Iterable[tuple[str, Sequence[int]]]
"""Input shapes as given: input name (or position, in decimal) -> shape, as a mapping or as
pairs (``MeasureSettings.input_shapes``)."""

CLI_OPTION = "--input-shape"
"""The ``joulefarm bench`` option that gives an input's shape (``NAME=1,16000``)."""
SUITE_KEY = "input_shapes"
"""The key of a suite's ``[[model]]`` table that gives its inputs' shapes."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ModelInput:
    """One input of a model, as the file declares it."""

    position: int
    """Its place among the model's inputs (0-based)."""
    tensor: int
    """Its tensor index in the subgraph."""
    name: str
    shape: Shape
    """The shape stored in the file (for a dynamic input, a placeholder)."""
    signature: Shape
    """``shape_signature``: -1 where any size goes. The stored shape where the file has none."""

    @property
    def dynamic(self) -> tuple[int, ...]:
        """The dimensions (axes) of any size."""
        return tuple(k for k, d in enumerate(self.signature) if d < 0)

    def describe(self) -> str:
        """``'audio' (position 0)``, or ``position 0`` for an input without a name."""
        return f"{self.name!r} (position {self.position})" if self.name else \
            f"position {self.position}"


@dataclass(frozen=True)
class InputPlan:
    """The shape every model input runs at (``resolve_input_shapes``)."""

    inputs: tuple[ModelInput, ...]
    shapes: tuple[Shape, ...]
    """In model input order."""
    given: tuple[bool, ...]
    """Whether each input's shape was given (else: fixed, or a defaulted batch)."""
    batch_defaulted: tuple[int, ...] = ()
    """Positions of the inputs whose only dynamic dimension, the leading (batch) one, was set
    to 1 because no shape was given."""

    @property
    def resized(self) -> bool:
        """Whether any input runs at another shape than the one stored in the file: runtimes
        must then size the model for these shapes before allocating it."""
        return any(s != i.shape for s, i in zip(self.shapes, self.inputs, strict=True))

    def by_tensor(self) -> dict[int, Shape]:
        """Tensor index -> shape of every model input."""
        return {i.tensor: s for i, s in zip(self.inputs, self.shapes, strict=True)}


def model_inputs(model_bytes: bytes) -> tuple[ModelInput, ...]:
    """The inputs of the model's first subgraph, in order. ``ModelError`` for bad bytes."""
    model = unpack_model(model_bytes)
    if not model.subgraphs:
        return ()
    graph = model.subgraphs[0]
    tensors = graph.tensors or []
    found = []
    for position, t in enumerate(int(t) for t in graph.inputs or []):
        tensor = tensors[t]
        shape = tuple(shape_of(tensor))
        signature = (tuple(int(d) for d in tensor.shapeSignature)
                     if tensor.shapeSignature is not None and len(tensor.shapeSignature)
                     else shape)
        found.append(ModelInput(position, t, decode_name(tensor.name), shape, signature))
    return tuple(found)


def given_pairs(given: GivenShapes | None) -> tuple[tuple[str, Shape], ...]:
    """``given`` as (key, shape) pairs, in the order given."""
    if not given:
        return ()
    items = given.items() if isinstance(given, Mapping) else given
    return tuple((str(key), tuple(int(d) for d in shape)) for key, shape in items)


def resolve_input_shapes(model: bytes | Sequence[ModelInput],
                         given: GivenShapes | None = None) -> InputPlan:
    """The shape to run each input of ``model`` (its bytes, or its ``model_inputs``) at.

    The rule, for each input:

    - a shape given for it (by name, else by position: ``"0"``) is used. It must have the
      input's rank and agree with every fixed dimension of its ``shape_signature``;
    - no shape given, a dynamic dimension other than the leading one: ``InputError``, naming
      the input (name, position, shape_signature) and saying how to give its shape (the
      ``--input-shape`` option, the suite's ``input_shapes`` key);
    - no shape given, only the leading (batch) dimension dynamic: the batch is 1, the
      convention Keras exports follow (the input's position is in ``batch_defaulted``, which
      results report as the run flag ``batch_defaulted``);
    - no dynamic dimension: the stored shape.

    A given key that names no input (nor a position) is an ``InputError`` listing the model's
    inputs; so is a shape given twice for one input (by name and by position) or a dimension
    below 1.
    """
    inputs = tuple(model_inputs(model) if isinstance(model, bytes | bytearray) else model)
    chosen: dict[int, tuple[str, Shape]] = {}
    by_name = {i.name: i for i in inputs if i.name}
    for key, shape in given_pairs(given):
        target = by_name.get(key)
        if target is None and key.isdigit() and int(key) < len(inputs):
            target = inputs[int(key)]
        if target is None:
            raise InputError(f"an input shape is given for {key!r}, but the model has no input "
                             f"of that name or position; its inputs: {_listing(inputs)}")
        if target.position in chosen:
            raise InputError(f"model input {target.describe()}: a shape is given twice "
                             f"({chosen[target.position][0]!r} and {key!r})")
        chosen[target.position] = (key, shape)

    shapes: list[Shape] = []
    defaulted: list[int] = []
    for i in inputs:
        if i.position in chosen:
            shapes.append(_check_given(i, chosen[i.position][1]))
        elif any(k > 0 for k in i.dynamic):
            raise InputError(_missing_shape(i))
        elif i.dynamic:  # the batch alone
            shapes.append((1, *i.signature[1:]))
            defaulted.append(i.position)
        else:
            shapes.append(i.shape)
    return InputPlan(inputs, tuple(shapes), tuple(i.position in chosen for i in inputs),
                     tuple(defaulted))


def with_input_shapes(model_bytes: bytes, shapes: Sequence[Sequence[int]]) -> bytes:
    """``model_bytes`` with the shape stored for each input (``shapes``, in model input order)
    replaced, signatures kept: for a runtime that sizes a model when it compiles it (the LiteRT
    C API), which could not allocate it at placeholder shapes first. The same bytes when the
    shapes are those stored, or their count is not the inputs' (the caller reports that)."""
    inputs = model_inputs(model_bytes)
    wanted = [tuple(int(d) for d in shape) for shape in shapes]
    if len(wanted) != len(inputs) or all(
            w == i.shape for w, i in zip(wanted, inputs, strict=True)):
        return model_bytes
    model = unpack_model(model_bytes)
    tensors = model.subgraphs[0].tensors
    for i, shape in zip(inputs, wanted, strict=True):
        tensors[i.tensor].shape = list(shape)
    return pack_model(model)


def parse_input_shape(text: str) -> tuple[str, Shape]:
    """``"audio=1,16000"`` (or ``"0=1,16000"``, by position) -> ``("audio", (1, 16000))``;
    ``InputError`` saying what is expected otherwise. The name may itself hold ``=``: the
    shape is what follows the last one."""
    name, sep, dims = text.rpartition("=")
    example = f"{CLI_OPTION} audio=1,16000"
    if not sep or not name:
        raise InputError(f"{CLI_OPTION} {text!r}: expected NAME=D0,D1,... (an input name or "
                         f"position, then its shape), e.g. {example}")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"{CLI_OPTION} {text!r}: the shape must be integers separated by "
                         f"commas, e.g. {example}") from None
    if any(d < 1 for d in shape):
        raise InputError(f"{CLI_OPTION} {text!r}: every dimension must be >= 1")
    return name, shape


def _check_given(i: ModelInput, shape: Shape) -> Shape:
    given, signature = list(shape), list(i.signature)
    if any(d < 1 for d in shape):
        raise InputError(f"model input {i.describe()}: the given shape {given} has a dimension "
                         "below 1")
    if len(shape) != len(i.signature):
        raise InputError(f"model input {i.describe()}: the given shape {given} has "
                         f"{len(shape)} dimensions, the model's shape_signature {signature} "
                         f"has {len(signature)}")
    fixed = [k for k, (d, s) in enumerate(zip(shape, i.signature, strict=True))
             if s >= 0 and d != s]
    if fixed:
        k = fixed[0]
        raise InputError(f"model input {i.describe()}: the given shape {given} contradicts the "
                         f"model's shape_signature {signature}: dimension {k} is fixed at "
                         f"{i.signature[k]} (-1 marks the dimensions that may take any size)")
    return shape


def _template(i: ModelInput) -> list[str]:
    """The input's shape with placeholders for what the user must choose: a dynamic batch is
    shown as 1, other dynamic dimensions as N (N1, N2, ... when several)."""
    free = [k for k in i.dynamic if k > 0]
    out = []
    for k, d in enumerate(i.signature):
        if d >= 0:
            out.append(str(d))
        elif k == 0:
            out.append("1")
        else:
            out.append("N" if len(free) == 1 else f"N{free.index(k) + 1}")
    return out


def _missing_shape(i: ModelInput) -> str:
    dims = _template(i)
    key = i.name or str(i.position)
    cli = shlex.quote(f"{key}={','.join(dims)}")
    toml_key = key if _BARE_KEY.fullmatch(key) else '"' + key.replace("\\", "\\\\").replace(
        '"', '\\"') + '"'
    sizes = "N is" if "N" in dims else "N1, N2, ... are"
    return (f"model input {i.describe()} has a dynamic shape: shape_signature "
            f"{list(i.signature)} (-1: any size), and no shape was given for it. Give the shape "
            f"to run it at: on the command line {CLI_OPTION} {cli}, or in a suite file "
            f"{SUITE_KEY} = {{ {toml_key} = [{', '.join(dims)}] }} in the model's [[model]] "
            f"table, where {sizes} the size to measure at")


def _listing(inputs: Sequence[ModelInput]) -> str:
    if not inputs:
        return "none"
    return ", ".join(f"{i.describe()} shape_signature {list(i.signature)}" for i in inputs)

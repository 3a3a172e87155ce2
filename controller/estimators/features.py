"""Feature vectors of layers and devices, the same at fit time (DuckDB rows) and at predict time
(``read_layers`` of a .tflite file).

No scikit-learn, no DuckDB: ``predict.py`` imports this module on machines that have neither.

A layer is described only by what ``layer_measurements`` stores (op, MACs, byte counts, shapes);
kernel area and stride are derived from those, not read from the flatbuffer, so that a layer
read from a file and the same layer read back from the database give identical vectors.
Sizes enter as natural logs: latency and energy scale by ratios over five orders of magnitude.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from joulefarm.results import parse_shapes
from joulefarm.tflite.ops import FAMILIES, elements, op_entry
from joulefarm.tflite.ops import kernel_area as ops_kernel_area
from joulefarm.tflite.parse import LayerInfo

Shape = tuple[int, ...]

OTHER_OP = "_OTHER"
"""Key of the model that serves ops without a model of their own (and op one-hot column of
ops unseen in training)."""

LAYER_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("log_macs", "ln(MAC)", "ln(1 + multiply-accumulates per inference; element count for "
                            "elementwise ops, as joulefarm.tflite.ops defines; 0 for ops "
                            "without a cost formula)"),
    ("log_param_bytes", "ln(byte)", "ln(1 + bytes of constant inputs)"),
    ("log_act_in_bytes", "ln(byte)", "ln(1 + bytes of activation inputs)"),
    ("log_act_out_bytes", "ln(byte)", "ln(1 + bytes of outputs)"),
    ("log_intensity", "ln(MAC/byte)", "ln((1 + MACs) / (1 + all bytes moved))"),
    ("log_batch", "ln(count)", "ln(first dimension of the first input)"),
    ("log_in_h", "ln(count)", "ln(input height; NHWC dim 1, else 1)"),
    ("log_in_w", "ln(count)", "ln(input width; NHWC dim 2, rank-3 dim 1, else 1)"),
    ("log_in_c", "ln(count)", "ln(input channels: last dimension)"),
    ("log_out_h", "ln(count)", "ln(output height)"),
    ("log_out_w", "ln(count)", "ln(output width)"),
    ("log_out_c", "ln(count)", "ln(output channels: last dimension)"),
    ("log_kernel_area", "ln(count)", "ln(kh*kw) of convolutions and pools, derived from "
                                     "MACs and shapes; 0 for other ops"),
    ("log_stride_h", "ln(ratio)", "ln(input height / output height), >= 0"),
    ("log_stride_w", "ln(ratio)", "ln(input width / output width), >= 0"),
    ("n_inputs", "count", "number of activation (non-constant) inputs"),
    ("in_rank", "count", "rank of the first activation input"),
    ("log_elem_bytes", "ln(byte)", "ln(bytes per activation input element): 0 for int8, "
                                   "ln 4 for float32 (the kernel a runtime picks)"),
    *((f"family={name}", "0/1", f"the op is of the op registry's {name!r} family "
       "(joulefarm.tflite.ops): what a model of an op never seen in training goes by")
      for name in FAMILIES),
)
"""(name, unit, description) of each layer feature, in vector order."""

GP_FEATURES: tuple[str, ...] = (
    "log_macs", "log_param_bytes", "log_act_in_bytes", "log_act_out_bytes", "log_in_h",
    "log_in_w", "log_in_c", "log_out_c", "log_kernel_area", "log_stride_w", "log_elem_bytes",
)
"""The layer features a Gaussian process sees: an ARD kernel over all of them overfits the few
hundred points a sweep gives per op type."""

DEVICE_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("cpu_max_ghz", "GHz", "highest CPU clock (0 when unknown)"),
    ("cpu_count", "count", "logical CPUs"),
    ("log_memory_gb", "ln(GB)", "ln(1 + memory in GB)"),
)
"""(name, unit, description) of each numeric device feature; platform one-hot columns and the
reference-model embedding follow them in the cross-hardware vector."""



@dataclass(frozen=True)
class LayerDesc:
    """What the estimators know of a layer: the columns ``layer_measurements`` stores."""

    op: str
    macs: int
    param_bytes: int
    act_in_bytes: int
    act_out_bytes: int
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]

    # Computed once per layer: a fit asks a layer's kernel and features for every op and
    # fold (millions of calls on 50,000 rows). Kept out of the fields: equality and hashing
    # stay those of the stored columns.
    @functools.cached_property
    def kernel(self) -> str:
        """``kernel_key`` of this layer."""
        return f"{self.op}:int8" if elem_bytes(self) <= 1.0 else self.op

    @functools.cached_property
    def vector(self) -> np.ndarray:
        """``layer_vector`` of this layer (read-only)."""
        values = _layer_vector(self)
        values.flags.writeable = False
        return values


def from_layer_info(info: LayerInfo) -> LayerDesc:
    """The description of a layer read from a model file."""
    # An op without a cost formula (macs None) counts no MACs in the features.
    return LayerDesc(info.op, int(info.macs or 0), int(info.param_bytes), int(info.act_in_bytes),
                     int(info.act_out_bytes), tuple(info.input_shapes),
                     tuple(info.output_shapes))


def from_row(op: str, macs: int | None, param_bytes: int | None, act_in_bytes: int | None,
             act_out_bytes: int | None, input_shapes: str | None, output_shapes: str | None
             ) -> LayerDesc:
    """The description of a layer read back from ``layer_measurements`` (NULL counts as 0)."""
    return LayerDesc(op, int(macs or 0), int(param_bytes or 0), int(act_in_bytes or 0),
                     int(act_out_bytes or 0), parse_shapes(input_shapes),
                     parse_shapes(output_shapes))


def _hwc(shape: Shape) -> tuple[int, int, int, int]:
    """(batch, h, w, c) of a shape: NHWC for rank 4, (N, W, C) for rank 3, (N, C) for rank 2."""
    dims = [max(int(d), 1) for d in shape]
    if not dims:
        return 1, 1, 1, 1
    if len(dims) == 1:
        return 1, 1, 1, dims[0]
    if len(dims) == 2:
        return dims[0], 1, 1, dims[1]
    if len(dims) == 3:
        return dims[0], 1, dims[1], dims[2]
    return dims[0], dims[1], math.prod(dims[2:-1]), dims[-1]


def kernel_area(desc: LayerDesc) -> float:
    """kh * kw recovered from MACs (the inverse of the op registry's MAC rule)."""
    return ops_kernel_area(op_entry(desc.op).family, desc.macs, desc.input_shapes,
                           desc.output_shapes)


def elem_bytes(desc: LayerDesc) -> float:
    """Bytes per activation input element (4 when the layer has no activation input)."""
    in_elements = sum(elements(shape) for shape in desc.input_shapes)
    return desc.act_in_bytes / in_elements if in_elements and desc.act_in_bytes else 4.0


def kernel_key(desc: LayerDesc) -> str:
    """What the per-op models are keyed by: the op, and ``:int8`` where its activations are
    one byte (an int8 kernel is another kernel: nn-Meter keys its models the same way)."""
    return desc.kernel


def layer_vector(desc: LayerDesc) -> np.ndarray:
    """The ``LAYER_FEATURES`` of one layer, float64, in order (a copy)."""
    return desc.vector.copy()


def _layer_vector(desc: LayerDesc) -> np.ndarray:
    first_in = desc.input_shapes[0] if desc.input_shapes else ()
    first_out = desc.output_shapes[0] if desc.output_shapes else ()
    n, h, w, c = _hwc(first_in)
    _, oh, ow, oc = _hwc(first_out)
    moved = desc.param_bytes + desc.act_in_bytes + desc.act_out_bytes
    family = op_entry(desc.op).family
    values = (
        math.log1p(desc.macs),
        math.log1p(desc.param_bytes),
        math.log1p(desc.act_in_bytes),
        math.log1p(desc.act_out_bytes),
        math.log((1 + desc.macs) / (1 + moved)),
        math.log(n),
        math.log(h),
        math.log(w),
        math.log(c),
        math.log(oh),
        math.log(ow),
        math.log(oc),
        math.log(kernel_area(desc)),
        max(math.log(h / oh), 0.0),
        max(math.log(w / ow), 0.0),
        float(len(desc.input_shapes)),
        float(len(first_in)),
        math.log(max(elem_bytes(desc), 0.125)),
        *(1.0 if family == name else 0.0 for name in FAMILIES),
    )
    return np.asarray(values, dtype=np.float64)


def op_onehot_names(ops: Sequence[str]) -> list[str]:
    """Column names of the op one-hot block for the kernels (``kernel_key``) known at fit time
    (plus ``OTHER_OP``)."""
    return [f"op={op}" for op in ops] + [f"op={OTHER_OP}"]


def op_onehot(op: str, ops: Sequence[str]) -> np.ndarray:
    vector = np.zeros(len(ops) + 1, dtype=np.float64)
    vector[list(ops).index(op) if op in ops else len(ops)] = 1.0
    return vector


def layer_matrix(descs: Sequence[LayerDesc], ops: Sequence[str]) -> np.ndarray:
    """Rows of ``LAYER_FEATURES`` followed by the op one-hot block: the input of every
    per-device model."""
    if not descs:
        return np.zeros((0, len(LAYER_FEATURES) + len(ops) + 1))
    index = {op: i for i, op in enumerate(ops)}
    onehot = np.zeros((len(descs), len(ops) + 1), dtype=np.float64)
    onehot[np.arange(len(descs)), [index.get(d.kernel, len(ops)) for d in descs]] = 1.0
    return np.hstack([np.vstack([d.vector for d in descs]), onehot])


@dataclass(frozen=True)
class DeviceInfo:
    """A device as the estimators see it (from the ``devices`` table or the manifest)."""

    name: str
    platform: str
    cpu_max_khz: int
    cpu_count: int
    memory_bytes: int
    simulated_meter: bool = False


def device_vector(device: DeviceInfo, platforms: Sequence[str]) -> np.ndarray:
    """``DEVICE_FEATURES`` followed by the platform one-hot block (``platforms`` fixed at fit
    time; an unknown platform is all zeros)."""
    numeric = [device.cpu_max_khz / 1e6, float(device.cpu_count),
               math.log1p(device.memory_bytes / 1e9)]
    onehot = [1.0 if device.platform == p else 0.0 for p in platforms]
    return np.asarray(numeric + onehot, dtype=np.float64)


def device_feature_names(platforms: Sequence[str], reference: Sequence[str]) -> list[str]:
    """Names of the device block: numeric facts, platform one-hot, reference embedding."""
    return ([name for name, _, _ in DEVICE_FEATURES] + [f"platform={p}" for p in platforms]
            + [f"ref={r}" for r in reference])


def embedding(reference_values: Mapping[str, float], reference: Sequence[str]) -> np.ndarray:
    """The HELP-style embedding: ln(measured target) on each reference model, in order.
    Raises ``KeyError`` naming the first missing reference model."""
    missing = [r for r in reference if r not in reference_values]
    if missing:
        raise KeyError(missing[0])
    return np.log(np.asarray([reference_values[r] for r in reference], dtype=np.float64))


def cross_matrix(layers: np.ndarray, device_block: np.ndarray) -> np.ndarray:
    """Per-device layer rows with the device block (features + embedding) appended to each."""
    return np.hstack([layers, np.tile(device_block, (layers.shape[0], 1))])

"""The backward pass of convolutions and pooling, written in builtin ops (NHWC).

Notation: the forward op reads x [n, h, w, c] (padded by (top, bottom), (left, right) as
TensorFlow pads for SAME, not at all for VALID), steps by stride s, and writes [n, p, q, .];
the rows its windows read are the first (p - 1) s + kh of the padded input (``_window_fit``).

- ``CONV_2D``, input: ``TRANSPOSE_CONV`` of the output gradient by the filter transposed to
  [cin, kh, kw, cout] (the op *is* the adjoint of the convolution, the padding worked out from
  the output shape it is given, which resolves SAME's odd sizes).
- ``CONV_2D``, filter: dW[o, i, j, c] = sum over n, p, q of dz[n, p, q, o] xpad[n, ps + i,
  qs + j, c], which is one ``CONV_2D`` with batch and channels swapped: the padded input
  transposed to [c, h, w, n] convolved (VALID, dilation = stride) with dz transposed to
  [o, p, q, n] as the filter, giving [c, kh, kw, o], transposed back. One op, exact, and the
  work of a convolution rather than of an explicit im2col.
- ``DEPTHWISE_CONV_2D``, input: no builtin transposes a depthwise convolution, so the output
  gradient is spread out by the stride (zeros between its rows and columns: ``PAD`` of a
  reshaped tensor, data movement only), padded, and convolved with the filter flipped in both
  spatial axes (``REVERSE_V2``): a full correlation. With a depth multiplier m, the m output
  channels of each input channel are summed.
- ``DEPTHWISE_CONV_2D``, filter: like the convolution's, with the batch folded into the
  channels: [1, h, w, n * c] convolved depthwise (dilation = stride) with dz as
  [1, p, q, n * c * m], then summed over n.
- Pooling where windows tile the input (stride = pool size, the usual case): the output (and
  its gradient) repeated over each window (``TILE``); max pooling passes the gradient where the
  input equals its window's maximum (an equality mask: tied maxima all get it, where
  TensorFlow picks the first); average pooling divides by each window's count of real
  (unpadded) elements.
- Overlapping windows: average pooling spreads dz / count like a depthwise convolution by a
  filter of ones (the depthwise route above); max pooling visits each kernel offset: the
  window's elements (``STRIDED_SLICE``) equal to the maximum take dz, spread back by the stride
  and shifted by the offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from joulefarm.tflite.schema import tfl
from joulefarm.tflite.training import emit
from joulefarm.tflite.training.gradients import Backward, Rule
from joulefarm.tflite.training.writer import SubgraphWriter

Pads = tuple[tuple[int, int], tuple[int, int]]

_LOWEST = float(np.finfo(np.float32).min)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _forward_pads(options: Any, h: int, w: int, kh: int, kw: int) -> Pads:
    """The (before, after) padding of rows and of columns the forward op applies."""
    if int(options.padding) == tfl.Padding.SAME:
        return (_same_pad(h, kh, int(options.strideH)), _same_pad(w, kw, int(options.strideW)))
    return (0, 0), (0, 0)


def _check_dilation(b: Backward) -> None:
    for name in ("dilationHFactor", "dilationWFactor"):
        if int(getattr(b.node.options, name, 1) or 1) != 1:
            raise ValueError(f"layer {b.layer} ({b.node.op}): no gradient for dilated "
                             "convolutions")


def _fit(g: SubgraphWriter, x: int, rows: tuple[int, int], cols: tuple[int, int],
         value: float = 0.0, label: str = "fit") -> int:
    """Add (positive) or remove (negative) rows and columns before and after: a PAD, then a
    SLICE where something is removed. ``_fit`` by the negated amounts is its adjoint."""
    n, h, w, c = g.shapes[x]
    grow = [(0, 0), (max(rows[0], 0), max(rows[1], 0)), (max(cols[0], 0), max(cols[1], 0)),
            (0, 0)]
    x = emit.pad(g, x, grow, value, label)
    begin = [0, max(-rows[0], 0), max(-cols[0], 0), 0]
    size = [n, h + rows[0] + rows[1], w + cols[0] + cols[1], c]
    return emit.slice_(g, x, begin, size, label)


def _window_fit(g: SubgraphWriter, x: int, pads: Pads, rows: int, cols: int,
                value: float = 0.0) -> int:
    """``x`` padded as the forward op pads it, cut to the ``rows`` x ``cols`` its windows
    read."""
    _, h, w, _ = g.shapes[x]
    (top, _), (left, _) = pads
    return _fit(g, x, (top, rows - h - top), (left, cols - w - left), value, "window_input")


def _window_unfit(g: SubgraphWriter, grad: int, pads: Pads, h: int, w: int) -> int:
    """The adjoint of ``_window_fit``: a gradient on the windows' rows back on the input."""
    _, rows, cols, _ = g.shapes[grad]
    (top, _), (left, _) = pads
    return _fit(g, grad, (-top, -(rows - h - top)), (-left, -(cols - w - left)),
                label="window_grad")


def _spread(g: SubgraphWriter, x: int, stride: tuple[int, int]) -> int:
    """[n, p, q, c] -> [n, (p - 1) sh + 1, (q - 1) sw + 1, c] with x[:, i, j] at
    (i sh, j sw) and zeros between (a PAD of a reshape per axis)."""
    n, p, q, c = g.shapes[x]
    sh, sw = stride
    if sw > 1:
        x = emit.reshape(g, x, (n * p, q, 1, c))
        x = emit.pad(g, x, [(0, 0), (0, 0), (0, sw - 1), (0, 0)], label="spread_w")
        x = emit.slice_(g, emit.reshape(g, x, (n, p, q * sw, c)), [0, 0, 0, 0],
                        (n, p, (q - 1) * sw + 1, c))
    if sh > 1:
        width = g.shapes[x][2]
        x = emit.reshape(g, x, (n, p, 1, width * c))
        x = emit.pad(g, x, [(0, 0), (0, 0), (0, sh - 1), (0, 0)], label="spread_h")
        x = emit.slice_(g, emit.reshape(g, x, (n, p * sh, width, c)), [0, 0, 0, 0],
                        (n, (p - 1) * sh + 1, width, c))
    return x


def _repeat(g: SubgraphWriter, x: int, pool: tuple[int, int]) -> int:
    """[n, p, q, c] -> [n, p kh, q kw, c], each element repeated over its window."""
    n, p, q, c = g.shapes[x]
    kh, kw = pool
    if kw > 1:
        x = emit.tile(g, emit.reshape(g, x, (n * p, q, 1, c)), [1, 1, kw, 1], "repeat_w")
    if kh > 1:
        x = emit.tile(g, emit.reshape(g, x, (n, p, 1, q * kw * c)), [1, 1, kh, 1], "repeat_h")
    return emit.reshape(g, x, (n, p * kh, q * kw, c))


def _full_correlation(g: SubgraphWriter, dz: int, flipped: int, stride: tuple[int, int],
                      pads: Pads, h: int, w: int) -> int:
    """The input gradient of a depthwise convolution (multiplier 1) by the filter whose
    flip is ``flipped`` [1, kh, kw, c]: dz spread by the stride, padded so that a VALID
    depthwise convolution by ``flipped`` lands on the h x w input."""
    _, kh, kw, _ = g.shapes[flipped]
    spread = _spread(g, dz, stride)
    _, rows, cols, _ = g.shapes[spread]
    (top, _), (left, _) = pads
    before_h, before_w = kh - 1 - top, kw - 1 - left
    padded = _fit(g, spread, (before_h, h + kh - 1 - before_h - rows),
                  (before_w, w + kw - 1 - before_w - cols), label="full_pad")
    return emit.depthwise_conv2d(g, padded, flipped, -1, label="depthwise_dx")


def _conv2d(b: Backward, dz: int) -> None:
    _check_dilation(b)
    g, options = b.g, b.node.options
    x, w = b.inputs[0], b.inputs[1]
    n, h, wd, c = b.shape(0)
    _, kh, kw, _ = b.shape(1)
    _, p, q, _ = g.shapes[dz]
    stride = (int(options.strideH), int(options.strideW))
    same = int(options.padding) == tfl.Padding.SAME
    pads = _forward_pads(options, h, wd, kh, kw)
    if b.want(0):
        with b.input_phase():
            w_t = emit.transpose(g, w, [3, 1, 2, 0], "filter_t")  # [cin, kh, kw, cout]
            b.give(0, emit.transpose_conv(g, dz, w_t, (n, h, wd, c), stride=stride, same=same,
                                          label="conv_dx"))
    if b.want(1):
        with b.weights_phase():
            xp = _window_fit(g, x, pads, (p - 1) * stride[0] + kh, (q - 1) * stride[1] + kw)
            x_t = emit.transpose(g, xp, [3, 1, 2, 0], "input_t")  # [c, rows, cols, n]
            dz_t = emit.transpose(g, dz, [3, 1, 2, 0], "grad_t")  # [cout, p, q, n]
            dw_t = emit.conv2d(g, x_t, dz_t, -1, dilation=stride, label="conv_dw")
            b.give(1, emit.transpose(g, dw_t, [3, 1, 2, 0], "conv_dw_t"))
    if b.want(2):
        with b.weights_phase():
            b.give(2, emit.reduce(g, "SUM", dz, [0, 1, 2], label="conv_db"))


def _depthwise_conv2d(b: Backward, dz: int) -> None:
    _check_dilation(b)
    g, options = b.g, b.node.options
    x, w = b.inputs[0], b.inputs[1]
    n, h, wd, c = b.shape(0)
    _, kh, kw, cm = b.shape(1)
    m = cm // c
    _, p, q, _ = g.shapes[dz]
    stride = (int(options.strideH), int(options.strideW))
    pads = _forward_pads(options, h, wd, kh, kw)
    if b.want(0):
        with b.input_phase():
            flipped = g.emit("REVERSE_V2", [w, g.const(np.asarray([1, 2], np.int32))],
                             b.shape(1), "filter_flipped", tfl.BuiltinOptions.ReverseV2Options,
                             tfl.ReverseV2OptionsT())
            dx = _full_correlation(g, dz, flipped, stride, pads, h, wd)
            if m > 1:
                dx = emit.reshape(g, emit.reduce(
                    g, "SUM", emit.reshape(g, dx, (n, h, wd * c, m)), [3], label="multiplier"),
                    (n, h, wd, c))
            b.give(0, dx)
    if b.want(1):
        with b.weights_phase():
            rows, cols = (p - 1) * stride[0] + kh, (q - 1) * stride[1] + kw
            xp = _window_fit(g, x, pads, rows, cols)
            x_f = emit.reshape(g, emit.transpose(g, xp, [1, 2, 0, 3], "input_t"),
                               (1, rows, cols, n * c))
            dz_f = emit.reshape(g, emit.transpose(g, dz, [1, 2, 0, 3], "grad_t"),
                                (1, p, q, n * cm))
            dw = emit.depthwise_conv2d(g, x_f, dz_f, -1, multiplier=m, dilation=stride,
                                       label="depthwise_dw")
            dw = emit.reduce(g, "SUM", emit.reshape(g, dw, (kh * kw, n, cm)), [1],
                             label="batch_sum")
            b.give(1, emit.reshape(g, dw, (1, kh, kw, cm)))
    if b.want(2):
        with b.weights_phase():
            b.give(2, emit.reduce(g, "SUM", dz, [0, 1, 2], label="depthwise_db"))


def _pool_geometry(b: Backward, dz: int) -> tuple[tuple[int, int], tuple[int, int], Pads,
                                                  int, int]:
    options = b.node.options
    _, h, w, _ = b.shape(0)
    pool = (int(options.filterHeight), int(options.filterWidth))
    stride = (int(options.strideH), int(options.strideW))
    pads = _forward_pads(options, h, w, *pool)
    _, p, q, _ = b.g.shapes[dz]
    return pool, stride, pads, p, q


def _window_counts(h: int, w: int, pool: Sequence[int], stride: Sequence[int], pads: Pads,
                   p: int, q: int) -> np.ndarray:
    """How many real (unpadded) input elements each output's window holds: [1, p, q, 1]."""
    def along(size: int, k: int, s: int, before: int, out: int) -> np.ndarray:
        starts = np.arange(out) * s - before
        return np.minimum(starts + k, size) - np.maximum(starts, 0)

    rows = along(h, pool[0], stride[0], pads[0][0], p)
    cols = along(w, pool[1], stride[1], pads[1][0], q)
    return np.outer(rows, cols).astype(np.float32).reshape(1, p, q, 1)


def _average_pool(b: Backward, dz: int) -> None:
    if not b.want(0):
        return
    g = b.g
    _, h, w, c = b.shape(0)
    pool, stride, pads, p, q = _pool_geometry(b, dz)
    counts = _window_counts(h, w, pool, stride, pads, p, q)
    with b.input_phase():
        if np.all(counts == counts.flat[0]):
            scaled = emit.scale(g, dz, 1.0 / float(counts.flat[0]), "per_window")
        else:
            scaled = emit.mul(g, dz, g.const(1.0 / counts), "per_window")
        if stride == pool:
            spread = _repeat(g, scaled, pool)
            b.give(0, _window_unfit(g, spread, pads, h, w))
        else:
            ones = g.const(np.ones((1, *pool, c), np.float32))  # its own flip
            b.give(0, _full_correlation(g, scaled, ones, stride, pads, h, w))


def _max_pool(b: Backward, dz: int) -> None:
    if not b.want(0):
        return
    g = b.g
    x, y = b.inputs[0], b.output
    n, h, w, c = b.shape(0)
    pool, stride, pads, p, q = _pool_geometry(b, dz)
    zero = g.const(0.0)
    rows, cols = (p - 1) * stride[0] + pool[0], (q - 1) * stride[1] + pool[1]
    with b.input_phase():
        # Padding never wins the maximum: pad with the lowest float.
        xp = _window_fit(g, x, pads, rows, cols, _LOWEST)
        if stride == pool:
            winners = emit.equal(g, xp, _repeat(g, y, pool), "argmax_mask")
            grad = emit.select(g, winners, _repeat(g, dz, pool), zero, "max_grad")
            b.give(0, _window_unfit(g, grad, pads, h, w))
            return
        total = -1
        for i in range(pool[0]):
            for j in range(pool[1]):
                window = emit.strided_slice(
                    g, xp, [0, i, j, 0], [n, i + (p - 1) * stride[0] + 1,
                                          j + (q - 1) * stride[1] + 1, c],
                    [1, stride[0], stride[1], 1], "window")
                picked = emit.select(g, emit.equal(g, window, y, "argmax_mask"), dz, zero,
                                     "max_grad")
                spread = _spread(g, picked, stride)
                _, sr, sc, _ = g.shapes[spread]
                placed = _fit(g, spread, (i, rows - sr - i), (j, cols - sc - j),
                              label="offset")
                total = placed if total < 0 else emit.add(g, total, placed, "window_sum")
        b.give(0, _window_unfit(g, total, pads, h, w))


SPATIAL_RULES: dict[str, Rule] = {
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv2d,
    "AVERAGE_POOL_2D": _average_pool,
    "MAX_POOL_2D": _max_pool,
}
"""Gradient rules of the NHWC window ops (merged into ``gradients.RULES`` by ``model``)."""

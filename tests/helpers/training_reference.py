"""A numpy reference of training (forward, loss, backward, optimizers) in float64, for the
``test_training_*`` modules.

The reference reads the *inference* model (``build_model``'s bytes) node by node and writes
each op's forward and backward pass as plain loops over kernel offsets: nothing here is shared
with ``joulefarm.tflite.training``, which the tests check against it (and this reference
against finite differences: tests/library/test_training_numpy.py).
"""

from __future__ import annotations

import math

import numpy as np

from joulefarm.tflite.builder import (
    Add,
    AveragePool2D,
    Binary,
    Concatenation,
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    MaxPool2D,
    Mean,
    Pad,
    Softmax,
    Transpose,
    Unary,
    build_model,
)
from joulefarm.tflite.flatbuffer import numpy_dtype, op_name, shape_of, unpack_model

WEIGHT_NAMES = {"FULLY_CONNECTED": ("weights", "bias"), "CONV_2D": ("filter", "bias"),
                "DEPTHWISE_CONV_2D": ("filter", "bias")}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 3: "RELU6"}


def same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pads(options, h: int, w: int, kh: int, kw: int) -> tuple[tuple[int, int], tuple[int, int]]:
    if options.padding == 0:  # SAME
        return same_pad(h, kh, options.strideH), same_pad(w, kw, options.strideW)
    return (0, 0), (0, 0)


def _out_len(size: int, k: int, s: int, same: bool) -> int:
    return -(-size // s) if same else (size - k) // s + 1


class Reference:
    """Forward and backward of an inference model's nodes, in float64."""

    def __init__(self, model_bytes: bytes) -> None:
        model = unpack_model(model_bytes)
        graph = model.subgraphs[0]
        self.nodes = [(op_name(model, op), op.builtinOptions, list(op.inputs), list(op.outputs))
                      for op in graph.operators]
        self.input, self.output = graph.inputs[0], graph.outputs[0]
        self.constants: dict[int, np.ndarray] = {}
        for t, tensor in enumerate(graph.tensors):
            data = model.buffers[tensor.buffer].data
            if data is not None and len(data):
                self.constants[t] = np.frombuffer(data.tobytes(), numpy_dtype(tensor.type)
                                                  ).reshape(shape_of(tensor))
        self.shapes = {t: tuple(shape_of(tensor)) for t, tensor in enumerate(graph.tensors)}

    def weights(self) -> dict[str, np.ndarray]:
        """Every weight tensor by its training variable name, as float64."""
        out = {}
        for n, (op, _, inputs, _) in enumerate(self.nodes):
            for position, name in enumerate(WEIGHT_NAMES.get(op, ()), start=1):
                out[f"{n}/{name}"] = self.constants[inputs[position]].astype(np.float64)
        return out

    def _value(self, t: int, values: dict[int, np.ndarray], params: dict[str, np.ndarray],
               n: int, position: int) -> np.ndarray:
        op = self.nodes[n][0]
        if position in (1, 2) and op in WEIGHT_NAMES:
            return params[f"{n}/{WEIGHT_NAMES[op][position - 1]}"]
        if t in values:
            return values[t]
        return self.constants[t]

    # ---------------------------------------------------------------- forward

    def forward(self, x: np.ndarray, params: dict[str, np.ndarray]
                ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """(tensor -> value, node -> its value before the fused activation)."""
        values = {self.input: x.astype(np.float64)}
        pre: dict[int, np.ndarray] = {}
        for n, (op, options, inputs, outputs) in enumerate(self.nodes):
            args = [self._value(t, values, params, n, p) for p, t in enumerate(inputs)]
            z = getattr(self, "_f_" + op.lower())(options, args, self.shapes[outputs[0]])
            pre[n] = z
            values[outputs[0]] = _activate(z, getattr(options, "fusedActivationFunction", 0))
        return values, pre

    @staticmethod
    def _f_fully_connected(options, args, out_shape):
        x, w, b = args
        return x.reshape(-1, w.shape[1]) @ w.T + b

    @staticmethod
    def _f_conv_2d(options, args, out_shape):
        x, w, b = args
        xp, oh, ow = _padded(options, x, w.shape[1], w.shape[2], 0.0)
        sh, sw = options.strideH, options.strideW
        out = np.zeros((x.shape[0], oh, ow, w.shape[0]))
        for i in range(w.shape[1]):
            for j in range(w.shape[2]):
                patch = xp[:, i: i + sh * oh: sh, j: j + sw * ow: sw, :][:, :oh, :ow]
                out += np.einsum("nhwc,oc->nhwo", patch, w[:, i, j, :])
        return out + b

    @staticmethod
    def _f_depthwise_conv_2d(options, args, out_shape):
        x, w, b = args
        xr = np.repeat(x, options.depthMultiplier, axis=3)
        xp, oh, ow = _padded(options, xr, w.shape[1], w.shape[2], 0.0)
        sh, sw = options.strideH, options.strideW
        out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
        for i in range(w.shape[1]):
            for j in range(w.shape[2]):
                out += xp[:, i: i + sh * oh: sh, j: j + sw * ow: sw, :][:, :oh, :ow] * w[0, i, j]
        return out + b

    @staticmethod
    def _f_max_pool_2d(options, args, out_shape):
        (x,) = args
        xp, oh, ow = _padded(options, x, options.filterHeight, options.filterWidth, -np.inf)
        return np.max(_windows(options, xp, oh, ow), axis=0)

    @staticmethod
    def _f_average_pool_2d(options, args, out_shape):
        (x,) = args
        xp, oh, ow = _padded(options, x, options.filterHeight, options.filterWidth, 0.0)
        ones, _, _ = _padded(options, np.ones_like(x), options.filterHeight,
                             options.filterWidth, 0.0)
        return (np.sum(_windows(options, xp, oh, ow), axis=0)
                / np.sum(_windows(options, ones, oh, ow), axis=0))

    @staticmethod
    def _f_add(options, args, out_shape):
        return args[0] + args[1]

    @staticmethod
    def _f_reshape(options, args, out_shape):
        return args[0].reshape(out_shape)

    @staticmethod
    def _f_softmax(options, args, out_shape):
        z = args[0] * options.beta
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    @staticmethod
    def _f_sub(options, args, out_shape):
        return args[0] - args[1]

    @staticmethod
    def _f_mul(options, args, out_shape):
        return args[0] * args[1]

    @staticmethod
    def _f_relu(options, args, out_shape):
        return np.maximum(args[0], 0)

    @staticmethod
    def _f_relu6(options, args, out_shape):
        return np.clip(args[0], 0, 6)

    @staticmethod
    def _f_transpose(options, args, out_shape):
        return np.transpose(args[0], args[1])

    @staticmethod
    def _f_pad(options, args, out_shape):
        return np.pad(args[0], np.asarray(args[1]).reshape(-1, 2))

    @staticmethod
    def _f_concatenation(options, args, out_shape):
        return np.concatenate(args, axis=options.axis)

    @staticmethod
    def _f_mean(options, args, out_shape):
        axes = tuple(int(a) % args[0].ndim for a in args[1])
        return args[0].mean(axis=axes, keepdims=True).reshape(out_shape)

    # ---------------------------------------------------------------- loss and backward

    def _backward_from(self, start: int, grad: np.ndarray, values, pre, params
                       ) -> dict[str, np.ndarray]:
        """The gradient of every weight, from the gradient ``grad`` of tensor ``start``
        (nodes after it are skipped)."""
        grads = {start: grad}
        out = {}
        for n in reversed(range(len(self.nodes))):
            op, options, inputs, outputs = self.nodes[n]
            if outputs[0] not in grads:
                continue
            dz = grads[outputs[0]] * _activation_mask(
                pre[n], getattr(options, "fusedActivationFunction", 0))
            args = [self._value(t, values, params, n, p) for p, t in enumerate(inputs)]
            for position, g in getattr(self, "_b_" + op.lower())(options, args, dz, values,
                                                                 outputs[0]).items():
                if op in WEIGHT_NAMES and position in (1, 2):
                    out[f"{n}/{WEIGHT_NAMES[op][position - 1]}"] = g
                elif inputs[position] not in self.constants:
                    grads[inputs[position]] = grads.get(inputs[position], 0.0) + g
        return out

    @staticmethod
    def _b_fully_connected(options, args, dz, values, out):
        x, w, _ = args
        x2 = x.reshape(-1, w.shape[1])
        return {0: (dz @ w).reshape(x.shape), 1: dz.T @ x2, 2: dz.sum(axis=0)}

    @staticmethod
    def _b_conv_2d(options, args, dz, values, out):
        x, w, _ = args
        xp, oh, ow = _padded(options, x, w.shape[1], w.shape[2], 0.0)
        sh, sw = options.strideH, options.strideW
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        for i in range(w.shape[1]):
            for j in range(w.shape[2]):
                rows, cols = slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw)
                dxp[:, rows, cols, :] += np.einsum("nhwo,oc->nhwc", dz, w[:, i, j, :])
                dw[:, i, j, :] = np.einsum("nhwc,nhwo->oc", xp[:, rows, cols, :], dz)
        return {0: _unpad(options, dxp, x, w.shape[1], w.shape[2]), 1: dw,
                2: dz.sum(axis=(0, 1, 2))}

    @staticmethod
    def _b_depthwise_conv_2d(options, args, dz, values, out):
        x, w, _ = args
        m = options.depthMultiplier
        xr = np.repeat(x, m, axis=3)
        xp, oh, ow = _padded(options, xr, w.shape[1], w.shape[2], 0.0)
        sh, sw = options.strideH, options.strideW
        dxp, dw = np.zeros_like(xp), np.zeros_like(w)
        for i in range(w.shape[1]):
            for j in range(w.shape[2]):
                rows, cols = slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw)
                dxp[:, rows, cols, :] += dz * w[0, i, j]
                dw[0, i, j] = np.einsum("nhwc,nhwc->c", xp[:, rows, cols, :], dz)
        dxr = _unpad(options, dxp, xr, w.shape[1], w.shape[2])
        dx = dxr.reshape(*x.shape, m).sum(axis=-1)
        return {0: dx, 1: dw, 2: dz.sum(axis=(0, 1, 2))}

    @staticmethod
    def _b_max_pool_2d(options, args, dz, values, out):
        (x,) = args
        kh, kw = options.filterHeight, options.filterWidth
        xp, oh, ow = _padded(options, x, kh, kw, -np.inf)
        y = values[out]
        dxp = np.zeros_like(xp)
        sh, sw = options.strideH, options.strideW
        # Every element equal to its window's maximum gets the gradient (ties share it).
        for i in range(kh):
            for j in range(kw):
                rows, cols = slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw)
                dxp[:, rows, cols, :] += dz * (xp[:, rows, cols, :] == y)
        return {0: _unpad(options, dxp, x, kh, kw)}

    @staticmethod
    def _b_average_pool_2d(options, args, dz, values, out):
        (x,) = args
        kh, kw = options.filterHeight, options.filterWidth
        ones, oh, ow = _padded(options, np.ones_like(x), kh, kw, 0.0)
        count = np.sum(_windows(options, ones, oh, ow), axis=0)
        dxp = np.zeros_like(ones)
        sh, sw = options.strideH, options.strideW
        for i in range(kh):
            for j in range(kw):
                dxp[:, i: i + sh * oh: sh, j: j + sw * ow: sw, :] += dz / count
        return {0: _unpad(options, dxp, x, kh, kw)}

    @staticmethod
    def _b_add(options, args, dz, values, out):
        return {0: dz, 1: dz}

    @staticmethod
    def _b_reshape(options, args, dz, values, out):
        return {0: dz.reshape(args[0].shape)}

    @staticmethod
    def _b_softmax(options, args, dz, values, out):
        y = values[out]
        return {0: options.beta * y * (dz - np.sum(dz * y, axis=-1, keepdims=True))}

    @staticmethod
    def _b_sub(options, args, dz, values, out):
        return {0: dz, 1: -dz}

    @staticmethod
    def _b_mul(options, args, dz, values, out):
        return {0: dz * args[1], 1: dz * args[0]}

    @staticmethod
    def _b_relu(options, args, dz, values, out):
        return {0: dz * (args[0] > 0)}

    @staticmethod
    def _b_relu6(options, args, dz, values, out):
        return {0: dz * ((args[0] > 0) & (args[0] < 6))}

    @staticmethod
    def _b_transpose(options, args, dz, values, out):
        return {0: np.transpose(dz, np.argsort(args[1]))}

    @staticmethod
    def _b_pad(options, args, dz, values, out):
        x, paddings = args[0], np.asarray(args[1]).reshape(-1, 2)
        window = tuple(slice(int(a), int(a) + d)
                       for (a, _), d in zip(paddings, x.shape, strict=True))
        return {0: dz[window]}

    @staticmethod
    def _b_concatenation(options, args, dz, values, out):
        bounds = np.cumsum([0] + [a.shape[options.axis] for a in args])
        return {k: np.take(dz, range(bounds[k], bounds[k + 1]), axis=options.axis)
                for k in range(len(args))}

    @staticmethod
    def _b_mean(options, args, dz, values, out):
        x = args[0]
        axes = tuple(int(a) % x.ndim for a in args[1])
        kept = tuple(1 if d in axes else s for d, s in enumerate(x.shape))
        count = math.prod(x.shape[d] for d in axes)
        return {0: np.broadcast_to(dz.reshape(kept) / count, x.shape).copy()}


def _activate(z: np.ndarray, activation: int) -> np.ndarray:
    name = _ACTIVATIONS[activation]
    return np.maximum(z, 0) if name == "RELU" else np.clip(z, 0, 6) if name == "RELU6" else z


def _activation_mask(z: np.ndarray, activation: int) -> np.ndarray:
    name = _ACTIVATIONS[activation]
    if name == "RELU":
        return (z > 0).astype(np.float64)
    if name == "RELU6":
        return ((z > 0) & (z < 6)).astype(np.float64)
    return np.ones_like(z)


def _padded(options, x: np.ndarray, kh: int, kw: int, value: float):
    """(x padded as the op pads it, output height, output width)."""
    (pt, pb), (pl, pr) = _pads(options, x.shape[1], x.shape[2], kh, kw)
    same = options.padding == 0
    oh = _out_len(x.shape[1], kh, options.strideH, same)
    ow = _out_len(x.shape[2], kw, options.strideW, same)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=value)
    return xp, oh, ow


def _unpad(options, dxp: np.ndarray, x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    (pt, _), (pl, _) = _pads(options, x.shape[1], x.shape[2], kh, kw)
    return dxp[:, pt: pt + x.shape[1], pl: pl + x.shape[2], :]


def _windows(options, xp: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Every kernel offset's strided view, stacked: [kh * kw, n, oh, ow, c]."""
    sh, sw = options.strideH, options.strideW
    return np.stack([xp[:, i: i + sh * oh: sh, j: j + sw * ow: sw, :]
                     for i in range(options.filterHeight) for j in range(options.filterWidth)])


class TrainingReference(Reference):
    """The reference with the losses as ``trainable_model`` defines them: MSE on the output,
    cross-entropy on the logits (the input of a final SOFTMAX, else the output)."""

    def __init__(self, model_bytes: bytes, loss: str) -> None:
        super().__init__(model_bytes)
        self.loss_name = loss

    def _loss(self, x, target, params):
        """(loss, its gradient, the tensor that gradient is of, values, pre-activations)."""
        values, pre = self.forward(x, params)
        if self.loss_name == "mse":
            y = values[self.output]
            return float(np.mean((y - target) ** 2)), 2 * (y - target) / y.size, \
                self.output, values, pre
        last = self.nodes[-1]
        logits_tensor = last[2][0] if last[0] == "SOFTMAX" else self.output
        z = values[logits_tensor]
        shifted = z - z.max(axis=-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        batch = z.shape[0]
        return float(-np.sum(target * log_p) / batch), (np.exp(log_p) - target) / batch, \
            logits_tensor, values, pre

    def loss_value(self, x, target, params) -> float:
        return self._loss(x, target, params)[0]

    def grads(self, x, target, params) -> tuple[float, dict[str, np.ndarray]]:
        """(loss, the gradient of every weight by variable name)."""
        value, grad, start, values, pre = self._loss(x, target, params)
        return value, self._backward_from(start, grad, values, pre, params)


def sgd_steps(weights, grad_fn, steps, lr, momentum):
    """Keras SGD: v <- momentum v - lr g; w <- w + v."""
    weights = {k: v.copy() for k, v in weights.items()}
    velocity = {k: np.zeros_like(v) for k, v in weights.items()}
    for _ in range(steps):
        grads = grad_fn(weights)
        for k in weights:
            velocity[k] = momentum * velocity[k] - lr * grads[k]
            weights[k] = weights[k] + velocity[k]
    return weights


def adam_steps(weights, grad_fn, steps, lr, beta1, beta2, epsilon):
    """Keras Adam (epsilon outside the square root)."""
    weights = {k: v.copy() for k, v in weights.items()}
    m = {k: np.zeros_like(v) for k, v in weights.items()}
    v = {k: np.zeros_like(w) for k, w in weights.items()}
    for t in range(1, steps + 1):
        grads = grad_fn(weights)
        alpha = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        for k in weights:
            m[k] = beta1 * m[k] + (1 - beta1) * grads[k]
            v[k] = beta2 * v[k] + (1 - beta2) * grads[k] ** 2
            weights[k] = weights[k] - alpha * m[k] / (np.sqrt(v[k]) + epsilon)
    return weights


def finite_differences(loss_fn, params: dict[str, np.ndarray], eps: float = 1e-6
                       ) -> dict[str, np.ndarray]:
    """Central differences of ``loss_fn(params)`` for every element of every weight."""
    out = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            grad[index] = (loss_fn(plus) - loss_fn(minus)) / (2 * eps)
        out[name] = grad
    return out


# ---------------------------------------------------------------- checks of the reference

REFERENCE_MODELS = {
    "mlp": ((4, 6), [FullyConnected(7, "RELU"), FullyConnected(5, "RELU6"),
                     FullyConnected(3)]),
    # Standalone activations, an input squared (MUL of x and x: two gradients add up), a
    # per-channel constant subtracted (broadcast), transposes there and back.
    "elementwise": ((3, 6), [FullyConnected(6), Unary("RELU6"), Binary("MUL", "input"),
                             Binary("SUB", "channel"), Unary("RELU"), Transpose((1, 0)),
                             Transpose((1, 0)), FullyConnected(2)]),
    "mlp_softmax": ((4, 5), [FullyConnected(6, "RELU"), FullyConnected(3), Softmax()]),
    # Each window op under test follows a trainable 1x1 convolution, so that its input
    # gradient is needed and checked too.
    "conv_same_s1": ((2, 6, 5, 3), [Conv2D(3, (1, 1), activation="NONE"),
                                    Conv2D(4, (3, 3), (1, 1), "SAME", "RELU"), Flatten(),
                                    FullyConnected(2)]),
    "conv_valid_s1": ((2, 5, 5, 2), [Conv2D(3, (3, 3), (1, 1), "VALID", "RELU"),
                                     DepthwiseConv2D((3, 3), (1, 1), "VALID", "RELU6"),
                                     Flatten(), FullyConnected(2)]),
    "conv_valid_s2": ((2, 7, 6, 2), [Conv2D(2, (1, 1), activation="NONE"),
                                     Conv2D(3, (3, 2), (2, 2), "VALID", "NONE"), Flatten(),
                                     FullyConnected(2)]),
    "conv_same_s2_even": ((1, 7, 7, 2), [Conv2D(2, (1, 1), activation="NONE"),
                                         Conv2D(3, (4, 4), (2, 2), "SAME", "RELU6"),
                                         Flatten(), FullyConnected(2)]),
    "depthwise_same_s2": ((2, 6, 6, 2), [Conv2D(2, (1, 1), activation="NONE"),
                                         DepthwiseConv2D((3, 3), (2, 2), "SAME", "RELU", 2),
                                         Flatten(), FullyConnected(2)]),
    "depthwise_valid_s2": ((1, 7, 6, 3), [Conv2D(3, (1, 1), activation="NONE"),
                                          DepthwiseConv2D((3, 3), (2, 2), "VALID", "NONE"),
                                          Flatten(), FullyConnected(2)]),
    "pools_overlapping": ((2, 6, 6, 2), [Conv2D(3, (3, 3)), MaxPool2D((3, 3), (2, 2), "SAME"),
                                         AveragePool2D((2, 2), (1, 1), "SAME"), Flatten(),
                                         FullyConnected(2)]),
    "pools_tiled": ((2, 7, 7, 2), [Conv2D(3, (3, 3), activation="NONE"),
                                   MaxPool2D((2, 2), padding="SAME"),
                                   AveragePool2D((3, 3), padding="SAME"), Flatten(),
                                   FullyConnected(2)]),
    "pool_leftover": ((2, 5, 5, 2), [Conv2D(2, (1, 1), activation="NONE"), MaxPool2D((2, 2)),
                                     Flatten(), FullyConnected(2)]),
    "pad_concat_mean": ((2, 5, 5, 2), [Conv2D(3, (1, 1), activation="NONE"),
                                       Pad(((0, 0), (1, 1), (1, 1), (0, 0))),
                                       Conv2D(3, (3, 3), padding="VALID"),
                                       Concatenation(source=0), Mean((1, 2)),
                                       FullyConnected(2)]),
    "residual": ((2, 5, 5, 2), [Conv2D(3, (1, 1)), Conv2D(3, (3, 3), activation="NONE"),
                                Add(0, "RELU"), AveragePool2D((2, 2)), Flatten(),
                                FullyConnected(2)]),
}


def reference_case(name: str, loss: str = "mse", seed: int = 0):
    shape, layers = REFERENCE_MODELS[name]
    model = build_model(shape, layers, seed=seed)
    ref = TrainingReference(model, loss)
    rng = np.random.default_rng(seed + 100)
    x = rng.standard_normal(shape)
    out_shape = ref.shapes[ref.output]
    if loss == "mse":
        target = rng.standard_normal(out_shape)
    else:
        target = np.eye(out_shape[-1])[rng.integers(0, out_shape[-1], out_shape[0])]
    return model, ref, x, target

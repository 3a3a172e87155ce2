"""Optimizer updates in builtin ops: SGD with momentum and Adam, as Keras defines them.

Each weight's slots (momentum; Adam's first and second moments) are resource variables of the
weight's shape, initialised to zeros; Adam's bias correction keeps two scalar variables, the
running powers beta1^t and beta2^t, updated once per step.

- ``SGD``: v <- momentum * v - lr * g; w <- w + v (momentum 0: w <- w - lr * g, no slot).
- ``Adam``: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
  w <- w - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from joulefarm.tflite.training import emit
from joulefarm.tflite.training.writer import SubgraphWriter


@dataclass(frozen=True)
class Variable:
    """A resource variable: its shared name, shape and initial value (a fill value, so that
    zeros cost no bytes in the model)."""

    name: str
    shape: tuple[int, ...]
    fill: float | None = None
    value: np.ndarray | None = None


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, with momentum when ``momentum`` > 0."""

    learning_rate: float = 0.01
    momentum: float = 0.9

    def slots(self, weight: str, shape: tuple[int, ...]) -> list[Variable]:
        return [Variable(f"{weight}/momentum", shape, 0.0)] if self.momentum else []

    def globals(self) -> list[Variable]:
        return []

    def describe(self) -> dict[str, float | str]:
        return {"name": "sgd", "learning_rate": self.learning_rate, "momentum": self.momentum}


@dataclass(frozen=True)
class Adam:
    """Adam with Keras's defaults (epsilon outside the square root)."""

    learning_rate: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7

    def slots(self, weight: str, shape: tuple[int, ...]) -> list[Variable]:
        return [Variable(f"{weight}/m", shape, 0.0), Variable(f"{weight}/v", shape, 0.0)]

    def globals(self) -> list[Variable]:
        return [Variable("adam/beta1_power", (), 1.0), Variable("adam/beta2_power", (), 1.0)]

    def describe(self) -> dict[str, float | str]:
        return {"name": "adam", "learning_rate": self.learning_rate, "beta1": self.beta1,
                "beta2": self.beta2, "epsilon": self.epsilon}


Optimizer = SGD | Adam

OPTIMIZERS = ("sgd", "adam")


def optimizer_from(value: str | Optimizer) -> Optimizer:
    """An optimizer from its name (default settings) or as given."""
    if isinstance(value, SGD | Adam):
        return value
    if value == "sgd":
        return SGD()
    if value == "adam":
        return Adam()
    raise ValueError(f"optimizer must be one of {OPTIMIZERS} or an SGD/Adam, got {value!r}")


class Updater:
    """Writes the optimizer's update of each weight into the train subgraph."""

    def __init__(self, g: SubgraphWriter, optimizer: Optimizer) -> None:
        self.g = g
        self.optimizer = optimizer
        self._step_size: int | None = None

    def begin_step(self) -> None:
        """Once per step, before any update: Adam advances its powers and works out the
        bias-corrected step size (tag the caller's phase: model-wide update work)."""
        opt = self.optimizer
        if not isinstance(opt, Adam):
            return
        g = self.g
        powers = []
        for name, beta in (("adam/beta1_power", opt.beta1), ("adam/beta2_power", opt.beta2)):
            handle = emit.var_handle(g, name)
            power = emit.scale(g, emit.read_variable(g, handle, (), name), beta, "power")
            emit.assign_variable(g, handle, power)
            powers.append(power)
        one = g.const(1.0)
        # lr * sqrt(1 - b2^t) / (1 - b1^t)
        correction = emit.div(g, emit.unary(g, "SQRT", emit.sub(g, one, powers[1])),
                              emit.sub(g, one, powers[0]), "bias_correction")
        self._step_size = emit.scale(g, correction, opt.learning_rate, "step_size")

    def update(self, handle: int, name: str, w: int, grad: int) -> None:
        """Assign the updated value of the weight (variable ``name``, current value ``w``)."""
        g, opt = self.g, self.optimizer
        shape = g.shapes[w]
        if isinstance(opt, SGD):
            step = emit.scale(g, grad, -opt.learning_rate, "lr_grad")
            if opt.momentum:
                v_handle = emit.var_handle(g, f"{name}/momentum")
                v = emit.read_variable(g, v_handle, shape, f"{name}/momentum")
                step = emit.add(g, emit.scale(g, v, opt.momentum, "momentum"), step, "velocity")
                emit.assign_variable(g, v_handle, step)
            emit.assign_variable(g, handle, emit.add(g, w, step, "sgd"))
            return
        if self._step_size is None:
            raise RuntimeError("Updater.begin_step must run before Adam's updates")
        m_handle, v_handle = emit.var_handle(g, f"{name}/m"), emit.var_handle(g, f"{name}/v")
        m = emit.read_variable(g, m_handle, shape, f"{name}/m")
        v = emit.read_variable(g, v_handle, shape, f"{name}/v")
        m = emit.add(g, emit.scale(g, m, opt.beta1), emit.scale(g, grad, 1.0 - opt.beta1), "m")
        v = emit.add(g, emit.scale(g, v, opt.beta2),
                     emit.scale(g, emit.mul(g, grad, grad), 1.0 - opt.beta2), "v")
        emit.assign_variable(g, m_handle, m)
        emit.assign_variable(g, v_handle, v)
        denominator = emit.add(g, emit.unary(g, "SQRT", v), g.const(float(opt.epsilon)))
        step = emit.mul(g, emit.div(g, m, denominator), self._step_size, "adam_step")
        emit.assign_variable(g, handle, emit.sub(g, w, step, "adam"))

"""Trainable models in the real runtime, for the ``test_training_*`` modules: an interpreter,
one train step, and the tolerance runtime gradients are held to."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

GRADIENT_RTOL = 1e-5
"""Runtime gradients (float32) against the float64 reference: the largest error, relative to
the largest gradient element of the same weight."""


def interpreter(model: bytes, xnnpack: bool = False) -> Interpreter:
    resolver = (OpResolverType.BUILTIN if xnnpack
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return Interpreter(model_content=model, experimental_op_resolver_type=resolver)


def train_once(model: bytes, x: np.ndarray, target: np.ndarray, xnnpack: bool = False
               ) -> dict[str, np.ndarray]:
    it = interpreter(model, xnnpack)
    return it.get_signature_runner("train")(x=x.astype(np.float32),
                                            y_true=target.astype(np.float32))


def assert_close_to(got: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    scale = max(float(np.abs(expected).max()), 1e-6)
    error = float(np.abs(got - expected).max())
    assert error <= rtol * scale, f"{what}: error {error:.3g}, scale {scale:.3g}"

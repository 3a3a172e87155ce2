"""Losses and their gradient with respect to the model's output, in builtin ops.

Both are means over the batch, so a learning rate means the same at any batch size:

- ``mse``: mean over all elements of (y - y_true)^2; dy = 2 (y - y_true) / elements.
- ``softmax_cross_entropy``: -sum(y_true * log_softmax(logits)) / batch over rows of
  ``y_true`` that are probability distributions (one-hot labels);
  dlogits = (softmax(logits) - y_true) / batch. When the model ends in SOFTMAX, the logits are
  that node's input and its output is the softmax the gradient needs: the node's own backward
  is then skipped (the fused form is the exact and stable one).
"""

from __future__ import annotations

import math

from joulefarm.tflite.training import emit
from joulefarm.tflite.training.writer import SubgraphWriter

LOSSES = ("mse", "softmax_cross_entropy")


def mse(g: SubgraphWriter, y: int, target: int) -> tuple[int, int]:
    """(loss, dloss/dy)."""
    diff = emit.sub(g, y, target, "mse_diff")
    elements = math.prod(g.shapes[y])
    loss = emit.reduce(g, "MEAN", emit.mul(g, diff, diff, "mse_sq"),
                       range(len(g.shapes[y])), label="mse")
    return loss, emit.scale(g, diff, 2.0 / elements, "mse_grad")


def softmax_cross_entropy(g: SubgraphWriter, logits: int, target: int,
                          probs: int | None = None) -> tuple[int, int]:
    """(loss, dloss/dlogits); ``probs`` is softmax(logits) where the forward has it."""
    if len(g.shapes[logits]) != 2:
        raise ValueError(f"softmax cross-entropy needs [batch, classes] logits, got "
                         f"{g.shapes[logits]}")
    batch = g.shapes[logits][0]
    log_probs = emit.log_softmax(g, logits)
    picked = emit.reduce(g, "SUM", emit.mul(g, target, log_probs, "ce_picked"), [0, 1],
                         label="ce_sum")
    loss = emit.scale(g, picked, -1.0 / batch, "cross_entropy")
    if probs is None:
        probs = emit.softmax(g, logits)
    grad = emit.scale(g, emit.sub(g, probs, target, "ce_diff"), 1.0 / batch, "ce_grad")
    return loss, grad

"""Running a model once in the real runtime, for tests that check a model's outputs."""

from __future__ import annotations

import numpy as np

from agent.runtimes.chain import WholeModel


def run_once(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """The model's first output for input ``x`` (one inference, the agent's runtime)."""
    whole = WholeModel(model_bytes)
    whole.set_inputs([x])
    whole.invoke()
    return whole.outputs()[0]

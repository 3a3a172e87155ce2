"""The agent's pipeline in-process: everything the controller uses of the agent on its own
machine (``joulefarm bench``, estimator collection, int8 recipes). The controller imports the
agent through this module only, so what it relies on is listed in one place.
"""

from __future__ import annotations

from agent.facts import collect_facts
from agent.measure import measure
from agent.measure_prefixes import PrefixSplit, measure_prefixes
from agent.measure_train import TrainResult, measure_train
from agent.meters.base import Meter
from agent.meters.factory import open_meter
from agent.runtimes.backend import runtime_info
from agent.runtimes.chain import WholeModel, calibration_ranges
from joulefarm.tflite.builder import RECIPES
from joulefarm.tflite.inputs import GivenShapes
from joulefarm.tflite.parse import LayerInfo


def build_recipe(name: str, seed: int = 0) -> bytes:
    """The bytes of recipe ``name`` (``joulefarm.tflite.RECIPES``); int8 recipes are calibrated
    in this machine's TFLite runtime."""
    return RECIPES[name](seed, calibrate=calibration_ranges)


def runtime_layers(model_bytes: bytes, input_shapes: GivenShapes | None = None
                   ) -> list[LayerInfo]:
    """The model's layers with the shapes this machine's runtime computes for one inference
    (``LayerInfo.file_shapes_differ`` marks where the file stores others)."""
    return WholeModel(model_bytes, input_shapes=input_shapes).run_layers()


__all__ = [
    "Meter",
    "PrefixSplit",
    "TrainResult",
    "build_recipe",
    "calibration_ranges",
    "collect_facts",
    "measure",
    "measure_prefixes",
    "measure_train",
    "open_meter",
    "runtime_info",
    "runtime_layers",
]

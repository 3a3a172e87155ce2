"""The TFLite model toolkit: build, read and split TFLite models without TensorFlow or a runtime.

- ``build_model`` / ``RECIPES``: float32 models from layer specs with seeded random weights
  (int8 recipes quantise them with ranges a runtime measures: ``variants.quantize_int8``).
- ``read_layers``: per-layer features (shapes, MACs, bytes) from the flatbuffer alone.
- ``split_model``: one single-layer sub-model per node; ``pair_model``: two data-dependent nodes.
- ``sweep``: seeded configuration sweeps of single layers and small chains.

Running models is the agent's (``agent.runtimes``): nothing here imports a TFLite runtime.
"""

from joulefarm.errors import ModelError
from joulefarm.tflite.builder import (
    RECIPES,
    Add,
    AveragePool2D,
    Concatenation,
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    LayerSpec,
    MaxPool2D,
    Mean,
    Pad,
    Reshape,
    Softmax,
    build_model,
)
from joulefarm.tflite.parse import (
    LayerInfo,
    layer_from_dict,
    layer_to_dict,
    model_summary,
    read_layers,
)
from joulefarm.tflite.split import LayerModel, pair_model, split_model

__all__ = [
    "RECIPES",
    "Add",
    "AveragePool2D",
    "Concatenation",
    "Conv2D",
    "DepthwiseConv2D",
    "Flatten",
    "FullyConnected",
    "LayerInfo",
    "LayerModel",
    "LayerSpec",
    "MaxPool2D",
    "Mean",
    "ModelError",
    "Pad",
    "Reshape",
    "Softmax",
    "build_model",
    "layer_from_dict",
    "layer_to_dict",
    "model_summary",
    "pair_model",
    "read_layers",
    "split_model",
]

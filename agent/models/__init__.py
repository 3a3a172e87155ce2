"""Model toolkit: build, read, split and chain TFLite models without TensorFlow.

- ``build_model`` / ``RECIPES``: float32 models from layer specs with seeded random weights.
- ``read_layers``: per-layer features (shapes, MACs, bytes) from the flatbuffer alone.
- ``split_model``: one single-layer sub-model per node; ``pair_model``: two data-dependent nodes.
- ``LayerChain`` / ``WholeModel``: run the split chain or the whole model in the runtime;
  ``LayerPairs``: a chain's adjacent data-dependent pairs, each in its own interpreter.
"""

from agent.models.builder import (
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
from agent.models.chain import LayerChain, LayerPairs, WholeModel, random_array
from agent.models.errors import ModelError
from agent.models.parse import (
    LayerInfo,
    layer_from_dict,
    layer_to_dict,
    model_summary,
    read_layers,
)
from agent.models.split import LayerModel, pair_model, split_model

__all__ = [
    "RECIPES",
    "Add",
    "AveragePool2D",
    "Concatenation",
    "Conv2D",
    "DepthwiseConv2D",
    "Flatten",
    "FullyConnected",
    "LayerChain",
    "LayerInfo",
    "LayerModel",
    "LayerPairs",
    "LayerSpec",
    "MaxPool2D",
    "Mean",
    "ModelError",
    "Pad",
    "Reshape",
    "Softmax",
    "WholeModel",
    "build_model",
    "layer_from_dict",
    "layer_to_dict",
    "model_summary",
    "pair_model",
    "random_array",
    "read_layers",
    "split_model",
]

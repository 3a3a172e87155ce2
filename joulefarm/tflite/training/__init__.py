"""Trainable TFLite models written without TensorFlow (see docs/training-models.md).

``trainable_model(layers, input_shape, loss=..., optimizer=..., batch_size=...)`` gives a model
with ``infer``, ``train`` and ``weights`` signatures whose weights are resource variables;
``training_info(model_bytes)`` says which layer and phase each of its ops belongs to.
"""

from joulefarm.tflite.training.model import trainable_from_model, trainable_model
from joulefarm.tflite.training.optimizers import SGD, Adam
from joulefarm.tflite.training.phases import TrainingInfo, training_info
from joulefarm.tflite.training.writer import PHASES, OpTag

__all__ = [
    "PHASES",
    "SGD",
    "Adam",
    "OpTag",
    "TrainingInfo",
    "trainable_from_model",
    "trainable_model",
    "training_info",
]

"""Models whose inputs have dynamic dimensions (-1 in ``shape_signature``), made from the model
builder by editing the built flatbuffer, as a Keras export would write them."""

from __future__ import annotations

from collections.abc import Sequence

from joulefarm.tflite.builder import (
    Conv2D,
    FullyConnected,
    Mean,
    Reshape,
    Softmax,
    build_model,
)
from joulefarm.tflite.flatbuffer import pack_model, unpack_model


def with_input_signature(model_bytes: bytes, signature: Sequence[int], *,
                         name: str | None = None, placeholder: bool = False) -> bytes:
    """``model_bytes`` with its (first) input's ``shape_signature`` set to ``signature``;
    ``name`` renames the input; ``placeholder`` also stores 1 for every dynamic dimension of
    the input's shape, as Keras exports do."""
    model = unpack_model(model_bytes)
    graph = model.subgraphs[0]
    tensor = graph.tensors[graph.inputs[0]]
    tensor.shapeSignature = [int(d) for d in signature]
    if placeholder:
        tensor.shape = [1 if d < 0 else int(d) for d in signature]
    if name is not None:
        tensor.name = name
    return pack_model(model)


def audio_model(*, placeholder: bool = True) -> bytes:
    """An audio-like model whose input ``audio`` takes any batch and any number of samples
    (``shape_signature [-1, -1]``): reshape to [1, N, 1, 1], a strided VALID convolution over
    time, mean over time, a fully connected layer, softmax.

    With ``placeholder`` (the default) the stored shapes of the input and of the tensors that
    depend on its length are placeholders of 1, as in a Keras export: the convolution cannot
    even be allocated at them, so the model runs only at a given shape."""
    model = unpack_model(build_model((1, 64), [
        Reshape((1, -1, 1, 1)), Conv2D(8, (9, 1), stride=(4, 1), padding="VALID"),
        Mean((1, 2)), FullyConnected(4), Softmax()], name="audio"))
    graph = model.subgraphs[0]
    tensors = graph.tensors
    source = tensors[graph.inputs[0]]
    source.name = "audio"
    source.shapeSignature = [-1, -1]
    if placeholder:
        source.shape = [1, 1]
        for tensor in tensors:
            # The reshape's and the convolution's outputs: [1, N, 1, C] with N dynamic.
            shape = [int(d) for d in tensor.shape]
            if tensor.buffer == 0 and len(shape) == 4 and shape[1] > 1:
                tensor.shape = [1, 1, 1, shape[3]]
                tensor.shapeSignature = [1, -1, 1, shape[3]]
    return pack_model(model)


def batch_model() -> bytes:
    """A batch of 64 features -> fc 8 -> softmax, whose batch alone is dynamic
    (``shape_signature [-1, 64]``, stored shape [1, 64])."""
    return with_input_signature(build_model((1, 64), [FullyConnected(8), Softmax()],
                                            name="batch"), [-1, 64])

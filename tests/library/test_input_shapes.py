"""The input shape rule (``joulefarm.tflite.inputs``), the setting that carries given shapes
(``MeasureSettings.input_shapes``) and its trip over the wire: no runtime needed."""

from __future__ import annotations

import pytest

from joulefarm import wire
from joulefarm.errors import InputError
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import Conv2D, FullyConnected, Mean, Softmax, build_model
from joulefarm.tflite.inputs import (
    model_inputs,
    parse_input_shape,
    resolve_input_shapes,
)
from tests.helpers.dynamic_models import audio_model, batch_model, with_input_signature

MISSING_AUDIO = (
    "model input 'audio' (position 0) has a dynamic shape: shape_signature [-1, -1] (-1: any "
    "size), and no shape was given for it. Give the shape to run it at: on the command line "
    "--input-shape audio=1,N, or in a suite file input_shapes = { audio = [1, N] } in the "
    "model's [[model]] table, where N is the size to measure at")


def test_inputs_are_read_with_their_signature() -> None:
    (audio,) = model_inputs(audio_model())
    assert (audio.position, audio.name, audio.shape, audio.signature) == (
        0, "audio", (1, 1), (-1, -1))
    assert audio.dynamic == (0, 1)
    # Without a signature in the file, the stored shape is the signature: nothing is dynamic.
    (fixed,) = model_inputs(build_model((1, 8), [Softmax()], name="f"))
    assert fixed.signature == fixed.shape == (1, 8) and fixed.dynamic == ()


def test_a_dynamic_dimension_beyond_the_batch_needs_a_given_shape() -> None:
    model = audio_model()
    with pytest.raises(InputError) as err:
        resolve_input_shapes(model)
    assert str(err.value) == MISSING_AUDIO
    plan = resolve_input_shapes(model, {"audio": [1, 16000]})
    assert plan.shapes == ((1, 16000),) and plan.given == (True,) and plan.resized
    assert plan.batch_defaulted == () and plan.by_tensor() == {plan.inputs[0].tensor: (1, 16000)}
    # By position; a batch other than 1 is a choice the user may make.
    assert resolve_input_shapes(model, [("0", (4, 8000))]).shapes == ((4, 8000),)


def test_the_message_shows_every_dynamic_dimension_and_quotes_odd_names() -> None:
    image = with_input_signature(
        build_model((1, 16, 16, 3), [Conv2D(4), Mean(), FullyConnected(2)], name="img"),
        [-1, -1, -1, 3], name="serving_default_image:0")
    with pytest.raises(InputError) as err:
        resolve_input_shapes(image)
    message = str(err.value)
    assert "'serving_default_image:0' (position 0)" in message
    assert "shape_signature [-1, -1, -1, 3]" in message
    assert "--input-shape serving_default_image:0=1,N1,N2,3" in message
    assert 'input_shapes = { "serving_default_image:0" = [1, N1, N2, 3] }' in message
    assert "N1, N2, ... are the size to measure at" in message
    plan = resolve_input_shapes(image, {"serving_default_image:0": (1, 32, 24, 3)})
    assert plan.shapes == ((1, 32, 24, 3),)


def test_a_dynamic_batch_alone_defaults_to_1() -> None:
    model = batch_model()
    plan = resolve_input_shapes(model)
    assert plan.shapes == ((1, 64),) and plan.batch_defaulted == (0,) and not plan.resized
    given = resolve_input_shapes(model, {"batch/input": (8, 64)})
    assert given.shapes == ((8, 64),) and given.batch_defaulted == () and given.resized
    # Stored batch other than 1: the rule still says 1 (and so the input is resized).
    sixteen = with_input_signature(build_model((16, 64), [Softmax()], name="b16"), [-1, 64])
    plan = resolve_input_shapes(sixteen)
    assert plan.shapes == ((1, 64),) and plan.batch_defaulted == (0,) and plan.resized


def test_a_given_shape_must_agree_with_the_signature() -> None:
    model = batch_model()
    with pytest.raises(InputError) as err:
        resolve_input_shapes(model, {"batch/input": (1, 32)})
    assert str(err.value) == (
        "model input 'batch/input' (position 0): the given shape [1, 32] contradicts the "
        "model's shape_signature [-1, 64]: dimension 1 is fixed at 64 (-1 marks the dimensions "
        "that may take any size)")
    with pytest.raises(InputError, match=r"the given shape \[1, 64, 1\] has 3 dimensions, the "
                                         r"model's shape_signature \[-1, 64\] has 2"):
        resolve_input_shapes(model, {"0": (1, 64, 1)})
    with pytest.raises(InputError, match=r"the given shape \[0, 64\] has a dimension below 1"):
        resolve_input_shapes(model, {"0": (0, 64)})
    # A fixed model takes its own shape, and nothing else.
    fixed = build_model((1, 8), [Softmax()], name="f")
    assert resolve_input_shapes(fixed, {"f/input": (1, 8)}).shapes == ((1, 8),)
    with pytest.raises(InputError, match="dimension 0 is fixed at 1"):
        resolve_input_shapes(fixed, {"f/input": (2, 8)})


def test_unknown_and_repeated_inputs_are_errors_that_list_the_inputs() -> None:
    model = audio_model()
    with pytest.raises(InputError) as err:
        resolve_input_shapes(model, {"audoi": (1, 16000)})
    assert str(err.value) == (
        "an input shape is given for 'audoi', but the model has no input of that name or "
        "position; its inputs: 'audio' (position 0) shape_signature [-1, -1]")
    with pytest.raises(InputError, match="no input of that name or position"):
        resolve_input_shapes(model, {"1": (1, 16000)})
    with pytest.raises(InputError, match=r"model input 'audio' \(position 0\): a shape is given "
                                         r"twice \('audio' and '0'\)"):
        resolve_input_shapes(model, [("audio", (1, 16000)), ("0", (1, 16000))])


def test_the_command_line_form_parses() -> None:
    assert parse_input_shape("audio=1,16000") == ("audio", (1, 16000))
    assert parse_input_shape("0=1x16000") == ("0", (1, 16000))
    assert parse_input_shape("a=b=2,3") == ("a=b", (2, 3))
    for text, problem in (("audio", "expected NAME=D0,D1"), ("=1,2", "expected NAME=D0,D1"),
                          ("audio=1,many", "integers separated by commas"),
                          ("audio=1,0", "every dimension must be >= 1")):
        with pytest.raises(InputError, match=problem):
            parse_input_shape(text)


def test_the_setting_keeps_tuples_and_crosses_the_wire() -> None:
    settings = MeasureSettings(input_shapes={"audio": [1, 16000]})
    assert settings.input_shapes == (("audio", (1, 16000)),)
    # As a job's JSON config gives it back.
    assert MeasureSettings(input_shapes=[["0", [2, 3]]]).input_shapes == (
        ("0", (2, 3)),)
    assert MeasureSettings().input_shapes == ()
    both = MeasureSettings(mode="insitu", input_shapes=(("audio", (1, 16000)), ("1", (4,))))
    request = wire.settings_to_proto("ab" * 32, both)
    assert [(x.input, list(x.dims)) for x in request.input_shapes] == [
        ("audio", [1, 16000]), ("1", [4])]
    assert wire.settings_from_proto(request) == both
    assert wire.settings_from_proto(wire.settings_to_proto("ab" * 32, MeasureSettings())
                                    ).input_shapes == ()

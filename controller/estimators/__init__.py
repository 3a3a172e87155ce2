"""Latency and energy estimators: predict a model's per-layer and total cost on a device
without running it there.

Fit side (scikit-learn, scipy, onnx, DuckDB): ``dataset`` (samples from a results database),
``features``, ``regressors`` (linear base + trees / Gaussian process, on ln target), ``models``
(per device and op, cross-hardware, correction, baselines), ``validation`` (grouped,
leave-family-out, leave-device-out few-shot), ``onnx_graphs`` and ``export``
(``joulefarm fit``), ``synthetic`` and ``collect`` (training data for tests and benchmarks).

Predict side (onnxruntime and numpy only): ``predict`` (``joulefarm predict``) with
``features``, ``combine`` and ``manifest``.

Nothing is imported here, so that importing the predict side never loads the fit side.
"""

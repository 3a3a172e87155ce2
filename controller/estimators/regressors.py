"""The regressors behind every estimator, all on ln(target):

    ln y = base(x) + residual(x)

``base`` is a non-negative linear model in *linear* space,
``c0 + c1*MACs + c2*param bytes + c3*input bytes + c4*output bytes`` (fixed per-call overhead,
compute, memory traffic), fitted for relative error. It carries the prediction where the
data run out: a tree ensemble or a Gaussian process reverts to a constant outside its training
range, but a layer three times larger than any in the sweep should cost about three times
more, not the same. The residual model learns everything else (kernel shapes, cache effects,
op-specific efficiency):

- ``TreeModel``: extremely randomised trees (nn-Meter uses a random forest per kernel type);
- ``GPModel``: a Gaussian process with an ARD Matérn ν=2.5 kernel plus a white-noise term,
  ``normalize_y`` on, as THOR fits per layer type; it also gives a standard deviation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, nnls
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern, WhiteKernel

from controller.estimators.features import GP_FEATURES, LAYER_FEATURES

BASE_FEATURES: tuple[str, ...] = ("log_macs", "log_param_bytes", "log_act_in_bytes",
                                  "log_act_out_bytes")
"""Layer features (ln(1 + x)) whose raw values the linear base combines."""
BASE_COLUMNS = np.asarray([[n for n, _, _ in LAYER_FEATURES].index(f) for f in BASE_FEATURES])
GP_COLUMNS = np.asarray([[n for n, _, _ in LAYER_FEATURES].index(f) for f in GP_FEATURES])

GP_MAX_POINTS = 256
"""A GP costs O(n^3) to fit and stores an n x n matrix in its ONNX file: larger training sets
are subsampled (seeded)."""
GP_MAX_ITER = 200
TREES = 64
TREE_MIN_SAMPLES_LEAF = 2
TREE_MAX_POINTS = 4000
"""Trees fit on at most this many rows (seeded subsample): past a few thousand configurations
of one op more rows add time, not accuracy (the ``_OTHER`` model of a 50,000-row database
would otherwise grow trees over all of them)."""


@dataclass
class LinearBase:
    """``ln(max(coef[0] + raw @ coef[1:], floor))`` with raw = exp(x[:, BASE_COLUMNS]) - 1."""

    coef: np.ndarray
    floor: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = np.expm1(x[:, BASE_COLUMNS])
        return np.log(np.maximum(self.coef[0] + raw @ self.coef[1:], self.floor))


def fit_base(x: np.ndarray, y_log: np.ndarray) -> LinearBase:
    """Non-negative least squares on relative error: min sum((c . f_i) / y_i - 1)^2, c >= 0."""
    y = np.exp(y_log)
    design = np.hstack([np.ones((len(x), 1)), np.expm1(x[:, BASE_COLUMNS])])
    scaled = design / y[:, None]
    norms = np.linalg.norm(scaled, axis=0)
    norms[norms == 0] = 1.0
    coef, _ = nnls(scaled / norms, np.ones(len(y)))
    coef = coef / norms
    floor = float(np.min(y)) * 1e-3
    if not np.any(coef > 0):  # nothing fits: a constant at the median
        coef = np.zeros(design.shape[1])
        coef[0] = float(np.median(y))
    return LinearBase(coef.astype(np.float64), floor)


@dataclass
class TreeModel:
    base: LinearBase
    trees: ExtraTreesRegressor

    def predict(self, x: np.ndarray) -> np.ndarray:
        """ln(target) for each row of ``x``."""
        return self.base.predict(x) + self.trees.predict(x)


def fit_trees(x: np.ndarray, y_log: np.ndarray, *, seed: int = 0,
              base: LinearBase | None = None, max_points: int = TREE_MAX_POINTS) -> TreeModel:
    base = base or fit_base(x, y_log)
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y_log = x[keep], y_log[keep]
    trees = ExtraTreesRegressor(n_estimators=TREES, min_samples_leaf=TREE_MIN_SAMPLES_LEAF,
                                max_features=1.0, random_state=seed, n_jobs=1)
    trees.fit(x, y_log - base.predict(x))
    return TreeModel(base, trees)


@dataclass
class GPModel:
    base: LinearBase
    columns: np.ndarray
    x_mean: np.ndarray
    x_scale: np.ndarray
    gp: GaussianProcessRegressor

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) of ln(target) for each row of ``x``."""
        z = (x[:, self.columns] - self.x_mean) / self.x_scale
        mean, std = self.gp.predict(z, return_std=True)
        return self.base.predict(x) + np.ravel(mean), np.ravel(std)

    @property
    def kernel_parts(self) -> tuple[float, np.ndarray, float]:
        """(constant, ARD length scales, white noise level) of the fitted kernel."""
        kernel = self.gp.kernel_
        return (float(kernel.k1.k1.constant_value),
                np.atleast_1d(np.asarray(kernel.k1.k2.length_scale, dtype=np.float64)),
                float(kernel.k2.noise_level))


def _optimizer(obj_func, initial_theta, bounds):  # noqa: ANN001, ANN202 - sklearn's protocol
    # sklearn's default L-BFGS-B runs to 15000 iterations and warns when it stops early; a
    # bounded run keeps fits predictable on a shared 2-core machine.
    result = minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds,
                      options={"maxiter": GP_MAX_ITER})
    return result.x, result.fun


def fit_gp(x: np.ndarray, y_log: np.ndarray, *, seed: int = 0, columns: np.ndarray = GP_COLUMNS,
           base: LinearBase | None = None, max_points: int = GP_MAX_POINTS,
           kernel: Kernel | None = None) -> GPModel:
    """A GP on the residual of ``base``. Given ``kernel`` (hyperparameters fitted before, on
    more data), only the posterior is computed: one Cholesky factorisation instead of a
    hyperparameter search, what validation folds use."""
    base = base or fit_base(x, y_log)
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y_log = x[keep], y_log[keep]
    sub = x[:, columns]
    x_mean = sub.mean(axis=0)
    x_scale = sub.std(axis=0)
    x_scale[x_scale == 0] = 1.0  # constant columns (e.g. h = w = 1 for FC) carry nothing
    z = (sub - x_mean) / x_scale
    fixed = kernel is not None
    kernel = kernel or (ConstantKernel(1.0, (1e-3, 1e2))
                        * Matern(length_scale=np.ones(len(columns)),
                                 length_scale_bounds=(5e-2, 1e3), nu=2.5)
                        + WhiteKernel(1e-2, (1e-6, 1.0)))
    gp = GaussianProcessRegressor(kernel, normalize_y=True,
                                  optimizer=None if fixed else _optimizer,
                                  n_restarts_optimizer=0, random_state=seed)
    with warnings.catch_warnings():
        # ARD drives the length scale of an irrelevant feature to its upper bound, and a
        # noise-free residual drives the noise to its lower one: expected, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(z, y_log - base.predict(x))
    return GPModel(base, np.asarray(columns), x_mean, x_scale, gp)
